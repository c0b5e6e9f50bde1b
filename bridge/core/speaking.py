"""When to show a caller as speaking in the room: the mixer's talker flag, rate-limited.

The mixer flips a caller's "talking" at every pause between words. Sent as it is, each flip
would be a presence broadcast to every occupant of the room: a flood that clients show as
status churn. So the room shows what the mixer says with two rules: at most one change per
``min_interval`` seconds per caller, and "stopped" only after ``min_interval`` of silence, so
the pauses of someone who keeps talking never show (hysteresis). Pure: the caller owns time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SpeakingStatus:
    """One caller's speaking status as the room shows it (see the module docstring)."""

    min_interval: float = 2.0
    talking: bool = False  # what the mixer says now
    shown: bool = False  # what the room was last told
    last_shown: float | None = None  # when the room was last told
    changed_at: float = 0.0  # when the mixer last changed its mind

    def set(self, now: float, talking: bool) -> None:
        """The mixer's flag at ``now``."""
        if talking != self.talking:
            self.talking, self.changed_at = talking, now

    def _ready_at(self) -> float:
        ready = self.last_shown + self.min_interval if self.last_shown is not None else 0.0
        if not self.talking:  # a stop shows once the silence has lasted
            ready = max(ready, self.changed_at + self.min_interval)
        return ready

    def due(self, now: float) -> bool | None:
        """The status to publish at ``now`` (and remember as shown), or None: nothing to
        change, or not yet (ask again at :meth:`next_check`)."""
        if self.talking == self.shown or now < self._ready_at():
            return None
        self.shown, self.last_shown = self.talking, now
        return self.shown

    def next_check(self, now: float) -> float | None:
        """Seconds from ``now`` after which :meth:`due` may have something, or None."""
        if self.talking == self.shown:
            return None
        return max(0.0, self._ready_at() - now)


__all__ = ["SpeakingStatus"]
