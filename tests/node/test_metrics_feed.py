"""The supervisor's metric labels come from closed sets, whatever the event says."""

from __future__ import annotations

from bridge import metrics
from bridge.core.events import HangupLeg, MuteLeg, PlayTone
from bridge.core.mirror_events import BanJid, JoinPuppet, SetOccupantRole
from bridge.node.metrics_feed import leg_end_reason, mirror_kind


def test_leg_end_reasons_map_onto_the_closed_label_set() -> None:
    for reason in (
        "bye",
        "",
        "kicked from the chat room",
        "banned from the chat room: spam",
        "worker-died",
        "timeout",
        "shutdown",
        "conference moved to another node",
    ):
        assert leg_end_reason(reason) in metrics.LEG_END_REASONS
    assert leg_end_reason("kicked from the chat room") == "kicked"
    assert leg_end_reason("banned from the chat room") == "banned"
    assert leg_end_reason("worker-died") == "worker_lost"
    assert leg_end_reason("bye") == "hangup"


def test_actions_are_counted_by_what_they_mirror() -> None:
    assert mirror_kind(MuteLeg("w0.0.1", True)) == "mute"
    assert mirror_kind(MuteLeg("w0.0.1", False)) == "unmute"
    assert mirror_kind(SetOccupantRole("p@bridge", "visitor")) == "mute"
    assert mirror_kind(HangupLeg("w0.0.1", "banned from the conference")) == "ban"
    assert mirror_kind(HangupLeg("w0.0.1", "kicked")) == "kick"
    assert mirror_kind(BanJid("p@bridge")) == "ban"
    assert mirror_kind(JoinPuppet("w0.0.1", "p@bridge", "Carl")) == "join"
    assert mirror_kind(PlayTone("w0.0.1", "muted")) is None


def test_worker_media_counters_become_prometheus_counters() -> None:
    """Workers report cumulative counters every few seconds; a restarted worker starts from
    zero again, and that restart must not make a counter go down or be lost."""
    from bridge.core.admission import PeerSlots
    from bridge.node.metrics_feed import Sampler
    from bridge.sip.protocol import WorkerStats

    def stats(worker: int, late: int, lost: int, *, realtime: bool = True) -> WorkerStats:
        return WorkerStats(worker, 1000, late, 0, 0.004 * worker, realtime, 0, 2, lost, 1, 3, 40.0)

    def value(metric: object, **labels: str) -> float:
        child = metric.labels(**labels) if labels else metric  # type: ignore[attr-defined]
        return float(child._value.get())

    slots = [PeerSlots(0, "127.0.0.1", 5060, 4, 1), PeerSlots(1, "127.0.0.1", 5062, 4, 1)]
    late0 = value(metrics.WORKER_CLOCK_LATE_TICKS)
    lost0 = value(metrics.JITTER_FRAMES, event="lost")
    sampler = Sampler()
    sampler.sample(slots, None, True, (), {0: stats(0, 5, 10), 1: stats(1, 1, 2)})
    sampler.sample(slots, None, True, (), {0: stats(0, 7, 15), 1: stats(1, 1, 2)})
    sampler.sample(slots, None, True, (), {0: stats(0, 2, 4), 1: stats(1, 1, 2)})  # restarted
    assert value(metrics.WORKER_CLOCK_LATE_TICKS) - late0 == 7 + 1 + 2
    assert value(metrics.JITTER_FRAMES, event="lost") - lost0 == 15 + 2 + 4
    assert value(metrics.WORKER_CLOCK_MAX_LATENESS) == 0.004
    assert value(metrics.JITTER_DELAY) == 0.040
    assert value(metrics.REALTIME, component="workers") == 1
    sampler.sample(slots, None, True, (), {0: stats(0, 2, 4), 1: stats(1, 1, 2, realtime=False)})
    assert value(metrics.REALTIME, component="workers") == 0  # one worker without SCHED_FIFO
