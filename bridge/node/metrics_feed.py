"""Feeds the node's Prometheus metrics (bridge.metrics) from what the supervisor sees.

The workers are separate processes without a registry of their own, so everything is
counted here: legs from the pool's events, actions from the mirror engine's outcomes, pool
and mixer state by sampling every few seconds.
"""

from __future__ import annotations

from collections.abc import Iterable

from bridge import metrics
from bridge.core.admission import PeerSlots
from bridge.core.events import HangupLeg, MuteLeg, PlayTone, SendSipMessage
from bridge.core.mirror_events import (
    Action,
    BanJid,
    JoinPuppet,
    LeavePuppet,
    SendGroupchat,
    SetConferenceMediaStatus,
    SetConferenceRoles,
    SetConferenceSubject,
    SetOccupantRole,
    SetRoomSubject,
    ShowOccupantInCall,
    side_of,
)
from bridge.sip.protocol import WorkerStats
from mixer.clock import ClockStats

_WORKER_COUNTERS = ("clock_late", "clock_skipped", "frame_errors", "jb_lost", "jb_discard",
                    "jb_empty")  # fmt: skip


def leg_end_reason(reason: str) -> metrics.LegEndReason:
    """The closed label set of ``sipmuc_legs_ended_total`` for a LegLeft reason."""
    text = reason.lower()
    if "ban" in text:
        return "banned"
    if "kick" in text:
        return "kicked"
    if "worker" in text:
        return "worker_lost"
    if "error" in text or "timeout" in text:
        return "error"
    if "shutdown" in text or "conference" in text or "unlink" in text or "moved" in text:
        return "conference_ended"
    return "hangup"


def mirror_kind(action: Action) -> metrics.MirrorKind | None:
    """What a policy action did, for ``sipmuc_mirrored_actions_total`` (None: not mirroring)."""
    if isinstance(action, MuteLeg):
        return "mute" if action.muted else "unmute"
    if isinstance(action, SetOccupantRole):
        return "mute" if action.role == "visitor" else "role"
    if isinstance(action, HangupLeg):
        return "ban" if "ban" in action.reason.lower() else "kick"
    if isinstance(action, BanJid):
        return "ban"
    if isinstance(action, JoinPuppet | ShowOccupantInCall):
        return "join"
    if isinstance(action, LeavePuppet):
        return "leave"
    if isinstance(action, SetConferenceRoles):
        return "role"
    if isinstance(action, SetRoomSubject | SetConferenceSubject):
        return "subject"
    if isinstance(action, SendGroupchat | SendSipMessage):
        return "message"
    if isinstance(action, PlayTone | SetConferenceMediaStatus):
        return None  # feedback and derived views, not a mirrored change
    return None


def count_actions(actions: Iterable[Action]) -> None:
    for action in actions:
        kind = mirror_kind(action)
        if kind is not None:
            direction: metrics.Direction = (
                "muc_to_sip" if side_of(action) == "sip" else "sip_to_muc"
            )
            metrics.MIRRORED_ACTIONS.labels(kind=kind, direction=direction).inc()


def legs_changed(rooms: dict[str, int]) -> None:
    """``rooms``: room → legs on this node (rooms with 0 legs drop their series)."""
    metrics.LEGS_ACTIVE.set(sum(rooms.values()))
    for room, count in rooms.items():
        metrics.set_room_legs(room, count)


class Sampler:
    """Pool and mixer gauges/counters from periodic snapshots (counters advance by deltas)."""

    def __init__(self) -> None:
        self._late = 0
        self._workers: dict[int, WorkerStats] = {}

    def sample(
        self,
        slots: list[PeerSlots],
        clock: ClockStats | None,
        online: bool,
        tick_durations: Iterable[float] = (),
        worker_stats: dict[int, WorkerStats] | None = None,
    ) -> None:
        alive = [peer for peer in slots if peer.alive]
        if worker_stats is not None:
            self._sample_workers(worker_stats, {peer.worker for peer in alive})
        metrics.WORKERS_UP.set(len(alive))
        metrics.WORKER_SLOTS.labels(state="busy").set(sum(p.busy for p in alive))
        metrics.WORKER_SLOTS.labels(state="free").set(sum(p.free for p in alive))
        metrics.XMPP_CONNECTED.set(1 if online else 0)
        for seconds in tick_durations:
            metrics.MIXER_TICK_SECONDS.observe(seconds)
        if clock is not None:
            late = clock.late + clock.skipped
            if late > self._late:
                metrics.MIXER_LATE_FRAMES.labels(cause="tick_overrun").inc(late - self._late)
            self._late = late
            metrics.REALTIME.labels(component="mixer").set(1 if clock.realtime else 0)

    def _sample_workers(self, stats: dict[int, WorkerStats], alive: set[int]) -> None:
        """Cumulative worker counters → Prometheus counters. A restarted worker starts from
        zero again: a reading below the previous one is counted whole."""
        for worker, now in stats.items():
            before = self._workers.get(worker)
            for name in _WORKER_COUNTERS:
                value = int(getattr(now, name))
                old = int(getattr(before, name)) if before is not None else 0
                delta = value - old if value >= old else value
                if delta > 0:
                    _WORKER_COUNTER_METRIC[name](delta)
            self._workers[worker] = now
        live = [stats[w] for w in alive if w in stats]
        metrics.WORKER_CLOCK_MAX_LATENESS.set(
            max((s.clock_max_lateness_s for s in live), default=0.0)
        )
        calls = sum(s.calls for s in live)
        delay_ms = sum(s.jb_avg_delay_ms * s.calls for s in live) / calls if calls else 0.0
        metrics.JITTER_DELAY.set(delay_ms / 1000)
        if live:
            granted = all(s.clock_realtime for s in live)
            metrics.REALTIME.labels(component="workers").set(1 if granted else 0)


_WORKER_COUNTER_METRIC = {
    "clock_late": metrics.WORKER_CLOCK_LATE_TICKS.inc,
    "clock_skipped": metrics.WORKER_CLOCK_SKIPPED_TICKS.inc,
    "frame_errors": metrics.WORKER_FRAME_ERRORS.inc,
    "jb_lost": metrics.JITTER_FRAMES.labels(event="lost").inc,
    "jb_discard": metrics.JITTER_FRAMES.labels(event="discarded").inc,
    "jb_empty": metrics.JITTER_FRAMES.labels(event="empty").inc,
}
