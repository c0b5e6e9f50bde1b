"""One node's mixer service: engine + shared-memory rings + tick clock, thread-safe control.

The supervisor (or a dedicated mixer process) owns a :class:`MixerNode`. For every call
it does ``att = node.add_leg(room, rate)`` and sends ``att`` (a small picklable
:class:`~mixer.rings.LegAttachment`) to the SIP worker that carries the call, which opens
``LegPort(att)``. Control calls (add/remove/mute/gain) may come from any thread; they
take the same lock as the tick, which holds it for well under a millisecond. Events are
delivered to ``on_events`` on the clock thread: hand them to your event loop with
something thread-safe such as ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from mixer.clock import ClockStats, TickClock
from mixer.engine import ConferenceKey, Mixer, MixerEvent
from mixer.rings import CUSHION_HOLD_TICKS, LegAttachment, MixerRings, RingCounters
from mixer.talker import TalkerConfig

EventSink = Callable[[Sequence[MixerEvent]], object]


class MixerNode:
    """All conferences of a node mixed from and into one shared-memory segment."""

    def __init__(
        self,
        segment: str,
        capacity: int = 256,
        *,
        depth: int = 8,
        reserve: int = 1,
        hold_ticks: int = CUSHION_HOLD_TICKS,
        max_internal_rate: int = 48000,
        talker: TalkerConfig | None = None,
        on_events: EventSink | None = None,
        attach: bool = False,
    ) -> None:
        """``attach=True``: tick a segment another process owns (``mixer.service``); legs
        then come in with :meth:`adopt_leg` / :meth:`drop_leg`, slots chosen by the owner."""
        self.mixer = Mixer(capacity, max_internal_rate=max_internal_rate, talker=talker)
        self.rings = MixerRings(
            segment,
            capacity,
            depth=depth,
            reserve=reserve,
            hold_ticks=hold_ticks,
            create=not attach,
        )
        self._on_events = on_events
        self._lock = threading.Lock()
        self._conf_ids: dict[ConferenceKey, int] = {}
        self._clock: TickClock | None = None

    @property
    def segment(self) -> str:
        """Name of the shared-memory segment workers attach to."""
        return self.rings.name

    def add_leg(
        self, conference: ConferenceKey, rate: int, gain: float = 1.0, *, muted: bool = False
    ) -> LegAttachment:
        """Add a leg and reserve its rings; give the returned attachment to its worker."""
        with self._lock:
            slot = self.mixer.add_leg(conference, rate, gain, muted=muted)
            conf_id = self._conf_ids.setdefault(conference, len(self._conf_ids) + 1)
            attachment = self.rings.assign(slot, conf_id, rate)
            self.rings.arrange(self.mixer.active_slots)
            return attachment

    def remove_leg(self, leg: int) -> None:
        """Remove a leg (by slot); its worker's port goes stale immediately."""
        with self._lock:
            conference = self.mixer.leg_conference(leg)
            self.mixer.remove_leg(leg)
            self.rings.release(leg)
            self.rings.arrange(self.mixer.active_slots)
            if not self.mixer.conference_legs(conference):
                self._conf_ids.pop(conference, None)

    def adopt_leg(
        self,
        slot: int,
        conference: ConferenceKey,
        rate: int,
        gain: float = 1.0,
        *,
        muted: bool = False,
        deaf: bool = False,
    ) -> None:
        """Mix a leg whose slot the segment's owner assigned (its worker may already write)."""
        with self._lock:
            self.mixer.add_leg(conference, rate, gain, muted=muted, slot=slot)
            if deaf:
                self.mixer.set_deaf(slot, True)
            self.rings.adopt(slot)
            self.rings.arrange(self.mixer.active_slots)

    def drop_leg(self, leg: int) -> None:
        """Stop mixing a leg; the owner releases its slot (see :meth:`adopt_leg`)."""
        with self._lock:
            self.mixer.remove_leg(leg)
            self.rings.arrange(self.mixer.active_slots)

    def set_mute(self, leg: int, muted: bool) -> None:
        """Mute or unmute what a leg says (it keeps hearing the others)."""
        with self._lock:
            self.mixer.set_mute(leg, muted)

    def set_deaf(self, leg: int, deaf: bool) -> None:
        """Give a leg silence instead of its mix (it is still heard unless muted)."""
        with self._lock:
            self.mixer.set_deaf(leg, deaf)

    def set_gain(self, leg: int, gain: float) -> None:
        """Set the linear gain applied to a leg's voice."""
        with self._lock:
            self.mixer.set_gain(leg, gain)

    def dominant_speaker(self, conference: ConferenceKey) -> int | None:
        """The conference's current dominant talker (slot), if anyone talks."""
        with self._lock:
            return self.mixer.dominant_speaker(conference)

    def levels(self) -> dict[int, tuple[float, float]]:
        """Per slot: (spoken, in-the-mix) smoothed power, full scale = 1.0 (see Mixer.levels)."""
        with self._lock:
            return self.mixer.levels()

    def counters(self, leg: int) -> RingCounters:
        """Under-run / drop / torn counters of a leg, both directions."""
        return self.rings.counters(leg)

    def tick(self) -> list[MixerEvent]:
        """Read every leg's input ring, mix, write every output ring (one 20 ms frame)."""
        with self._lock:
            self.rings.begin_tick()
            self.mixer.load(self.rings.source)
            torn = self.rings.torn_after_read()
            if len(torn):
                self.mixer.discard(self.mixer.active_slots[torn])
            events = self.mixer.mix(self.rings.sink)
            self.rings.publish()
        if events and self._on_events is not None:
            self._on_events(events)
        return events

    def start(self, *, realtime: bool = True, phase_s: float | None = None) -> None:
        """Start the 20 ms clock thread (SCHED_FIFO when permitted).

        ``phase_s``: tick at ``k·20 ms + phase_s`` of CLOCK_MONOTONIC, the grid that
        aligned SIP workers tick on at phase 0 (see :class:`~mixer.clock.TickClock`).
        """
        if self._clock is not None:
            raise RuntimeError("already started")
        self._clock = TickClock(self.tick, realtime=realtime, phase_s=phase_s)
        self._clock.start()

    def stop(self) -> None:
        """Stop the clock thread (the segment stays until :meth:`close`)."""
        if self._clock is not None:
            self._clock.stop()

    def realtime_wanted(self) -> tuple[tuple[int, int], ...]:
        """(thread id, SCHED_FIFO priority) of the clock thread when it could not set it
        itself (see :meth:`~mixer.clock.TickClock.realtime_wanted`)."""
        return self._clock.realtime_wanted() if self._clock else ()

    def clock_stats(self) -> ClockStats | None:
        """Late/skipped tick counters of the clock, if it was started."""
        return self._clock.stats() if self._clock else None

    def tick_durations(self) -> list[float]:
        """How long each tick took (s) since the last call (for a histogram)."""
        return self._clock.take_durations() if self._clock else []

    def close(self) -> None:
        """Stop ticking, tell attached workers the segment is closed, unlink it."""
        self.stop()
        with self._lock:
            self.rings.close()

    def __enter__(self) -> MixerNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
