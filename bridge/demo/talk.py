"""Who is talking, told in a few lines instead of one per breath (pure, no I/O).

The mixer's talker detection flips at every pause; printed as it is, two callers taking
turns fill a screen a minute with "started/stopped talking". Instead: a line when someone
starts talking after a quiet minute (or for the first time), and once a minute the talk
time of everyone who spoke in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

QUIET_S = 60.0
SUMMARY_S = 60.0


@dataclass
class TalkReport:
    """Feed it the set of talkers at each sample; it returns the lines worth printing."""

    quiet_s: float = QUIET_S  # silence after which a new start is news again
    summary_s: float = SUMMARY_S  # one talk-time line per this many seconds
    _talking: set[str] = field(default_factory=set)
    _last_heard: dict[str, float] = field(default_factory=dict)
    _window: dict[str, float] = field(default_factory=dict)
    _window_start: float | None = None
    _last_sample: float | None = None

    def update(
        self, now: float, talking: Iterable[str], describe: Callable[[str], str] | None = None
    ) -> list[str]:
        """Lines for this sample; ``describe(name)`` adds detail to a start line."""
        talking = set(talking)
        lines: list[str] = []
        if self._window_start is None:
            self._window_start = now
        if self._last_sample is not None:
            step = now - self._last_sample
            for name in self._talking:
                self._window[name] = self._window.get(name, 0.0) + step
        for name in sorted(talking - self._talking):
            last = self._last_heard.get(name)
            if last is None or now - last >= self.quiet_s:
                detail = describe(name) if describe is not None else ""
                lines.append(f"talking: {name} started talking" + (f" ({detail})" * bool(detail)))
        for name in talking | self._talking:
            self._last_heard[name] = now
        self._talking = talking
        self._last_sample = now
        if now - self._window_start >= self.summary_s:
            spoken = {n: s for n, s in self._window.items() if s >= 0.5}
            if spoken:
                parts = ", ".join(
                    f"{name} {seconds:.0f} s"
                    for name, seconds in sorted(spoken.items(), key=lambda kv: (-kv[1], kv[0]))
                )
                lines.append(f"talk time in the last {self.summary_s:.0f} s: {parts}")
            self._window = {}
            self._window_start = now
        return lines
