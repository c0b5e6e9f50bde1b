"""The mixer's control protocol: the supervisor's leg table (pure) and commands applied to
a mixer that ticks a segment another owner created (the mixer process's side, in-process)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from mixer.control import Attach, Detach, LegTable, SetDeaf, SetGain, SetMute, Stop, apply
from mixer.node import MixerNode
from mixer.rings import LegPort, MixerRings, StaleAttachmentError


def test_table_replays_every_leg_as_it_is_now() -> None:
    table = LegTable()
    table.record(Attach(3, "room", 8000))
    table.record(Attach(5, "room", 16000, gain=0.5))
    table.record(SetMute(3, True))
    table.record(SetDeaf(5, True))
    table.record(SetGain(5, 2.0))
    table.record(Attach(7, "other", 48000))
    table.record(Detach(7))
    table.record(Stop())
    assert table.replay() == [
        Attach(3, "room", 8000, muted=True),
        Attach(5, "room", 16000, gain=2.0, deaf=True),
    ]
    assert 3 in table and 7 not in table and len(table) == 2


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (Attach(1, "room", 11025), ValueError),  # unsupported rate
        (Attach(1, "room", 8000, gain=float("nan")), ValueError),
        (Attach(1, "room", 8000, gain=-1.0), ValueError),
        (Attach(0, "room", 8000), ValueError),  # slot already attached
        (SetMute(9, True), KeyError),  # unknown leg
        (Detach(9), KeyError),
        (SetGain(0, float("inf")), ValueError),
    ],
)
def test_bad_commands_are_refused_and_change_nothing(command: object, error: type) -> None:
    table = LegTable()
    table.record(Attach(0, "room", 8000))
    before = table.replay()
    with pytest.raises(error):
        table.record(command)  # type: ignore[arg-type]
    assert table.replay() == before


@pytest.fixture
def owned() -> Iterator[tuple[MixerRings, MixerNode]]:
    """A segment owner (the supervisor's role) and a mixer attached to it."""
    name = f"mixctl-{uuid.uuid4().hex[:10]}"
    owner = MixerRings(name, 8, depth=8, reserve=0)
    node = MixerNode(name, 8, depth=8, reserve=0, attach=True)
    try:
        yield owner, node
    finally:
        node.close()
        owner.close()


def test_attached_mixer_obeys_commands_and_never_unlinks(
    owned: tuple[MixerRings, MixerNode],
) -> None:
    owner, node = owned
    atts = [owner.assign(slot, 1, 8000) for slot in (2, 6)]
    ports = [LegPort(a, reserve=0) for a in atts]
    try:
        for att in atts:
            apply(node, Attach(att.slot, "room", 8000))

        def tick(a: int, b: int) -> tuple[int, int]:
            ports[0].write_received(np.full(160, a, np.int16))
            ports[1].write_received(np.full(160, b, np.int16))
            node.tick()
            heard = [p.read_mixed() for p in ports]
            return tuple(0 if h is None else int(h[0]) for h in heard)  # type: ignore[return-value]

        assert tick(100, 7) == (7, 100)  # mix-minus through the owner's segment
        apply(node, SetMute(2, True))
        assert tick(100, 7) == (7, 0)
        apply(node, SetGain(6, 2.0))
        assert tick(100, 7) == (14, 0)
        apply(node, SetDeaf(6, True))
        assert tick(100, 7) == (14, 0)
        apply(node, SetDeaf(2, True))
        assert tick(100, 7) == (0, 0)
        apply(node, Detach(6))
        assert node.mixer.conference_legs("room") == [2]
        with pytest.raises(ValueError):
            apply(node, Attach(2, "room", 8000))  # slot 2 is taken in the engine
        with pytest.raises(ValueError):
            apply(node, Stop())
    finally:
        for p in ports:
            p.close()
    # the attached side's close() leaves the owner's segment alone (and valid for workers)
    node.close()
    with LegPort(owner.assign(4, 1, 8000)) as port:
        assert port.valid


def test_attaching_to_a_segment_of_another_shape_is_refused() -> None:
    name = f"mixctl-{uuid.uuid4().hex[:10]}"
    owner = MixerRings(name, 8, depth=8)
    try:
        with pytest.raises(StaleAttachmentError):
            MixerNode(name, 16, depth=8, attach=True)
    finally:
        owner.close()
