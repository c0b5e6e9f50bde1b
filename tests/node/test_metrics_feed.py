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
