"""Shared-memory rings: round trips, policies, counters, stale attachments, dying processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import pytest

from mixer.node import MixerNode
from mixer.rings import C_IN_W, C_OUT_W, LegPort, StaleAttachmentError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def node() -> Iterator[MixerNode]:
    with MixerNode(f"mixtest-{uuid.uuid4().hex[:10]}", 8, depth=8, reserve=1) as n:
        yield n


def frame(value: int, size: int = 320) -> np.ndarray:
    return np.full(size, value, dtype=np.int16)


def test_round_trip_mix_minus_through_shared_memory(node: MixerNode) -> None:
    atts = [node.add_leg("room", 16000) for _ in range(3)]
    ports = [LegPort(a) for a in atts]
    try:
        heard: list[list[int | None]] = [[] for _ in ports]
        for t in range(12):
            for i, p in enumerate(ports):
                assert p.write_received(frame(100 * (i + 1) + t))
            node.tick()
            for i, p in enumerate(ports):
                mix = p.read_mixed()
                heard[i].append(None if mix is None else int(mix[0]))
        for i in range(3):
            others = sum(100 * (j + 1) for j in range(3) if j != i)
            # steady state: what the others said two ticks ago (one frame cushion each side)
            assert heard[i][3:] == [others + 2 * (t - 2) for t in range(3, 12)]
        c = node.counters(atts[0].slot)
        assert (c.in_underruns, c.in_torn, c.in_dropped) == (0, 0, 0)
        assert (c.out_underruns, c.out_torn, c.out_dropped) == (0, 0, 0)
        assert c.in_frames == 12 and c.out_frames == 12
    finally:
        for p in ports:
            p.close()


def test_exact_values_with_cushion(node: MixerNode) -> None:
    a, b = node.add_leg("room", 8000), node.add_leg("room", 8000)
    pa, pb = LegPort(a), LegPort(b)
    try:
        pb.write_received(frame(7, 160))
        node.tick()  # one frame is not a cushion yet (reserve=1): b is mixed as silence
        assert pa.read_mixed() is None  # the worker side primes too
        pb.write_received(frame(8, 160))
        node.tick()  # cushion filled: consumes 7, keeps 8 in reserve
        pb.write_received(frame(9, 160))
        node.tick()  # consumes 8
        heard = []
        for _ in range(5):
            mix = pa.read_mixed()
            heard.append(None if mix is None else int(mix[0]))
        assert heard == [0, 7, 8, 8, None]  # in order, then repeat once, then silence
        assert pb.read_mixed() is not None  # b hears a (silent), not itself
    finally:
        pa.close()
        pb.close()


def test_read_policy_repeats_last_frame_once_then_silence(node: MixerNode) -> None:
    a, b = node.add_leg("room", 16000), node.add_leg("room", 16000)
    pa, pb = LegPort(a), LegPort(b)
    try:
        for v in (1, 2, 3, 4):
            pb.write_received(frame(v))
            node.tick()
        fresh = [pa.read_mixed() for _ in range(2)]
        values = [int(f[0]) for f in fresh if f is not None]
        assert len(values) == 2
        repeated = pa.read_mixed()  # nothing new: repeat once
        assert repeated is not None and int(repeated[0]) == values[-1]
        assert pa.read_mixed() is None  # then silence
        c = pa.counters()
        assert c.out_underruns == 1 and c.out_repeats == 1
    finally:
        pa.close()
        pb.close()


def test_input_underrun_is_counted_and_mixed_as_silence(node: MixerNode) -> None:
    a, b = node.add_leg("room", 16000), node.add_leg("room", 16000)
    pa, pb = LegPort(a), LegPort(b)
    try:
        values = []
        for v in (5, 6, 7, None, None):  # b stops sending after three frames
            if v is not None:
                pb.write_received(frame(v))
            node.tick()
            mix = pa.read_mixed()
            values.append(None if mix is None else int(mix[0]))
        mix = pa.read_mixed()
        values.append(None if mix is None else int(mix[0]))
        # two frames of cushion (one per side), then b's frames in order, then silence
        assert values == [None, 0, 5, 6, 7, 0]
        assert node.counters(b.slot).in_underruns == 1
        assert pa.counters().out_underruns == 0
    finally:
        pa.close()
        pb.close()


def test_backlog_is_trimmed_to_bound_latency(node: MixerNode) -> None:
    a, b = node.add_leg("room", 16000), node.add_leg("room", 16000)
    pa, pb = LegPort(a), LegPort(b)
    try:
        for v in range(20):  # a burst: the writer ran ahead of the mixer by 20 frames
            pb.write_received(frame(v))
        node.tick()
        c = node.counters(b.slot)
        assert c.in_dropped == 20 - 3  # keeps reserve + 2 frames at most
        assert c.in_torn == 0
    finally:
        pa.close()
        pb.close()


def test_standing_input_backlog_shrinks_on_a_quiet_frame_only() -> None:
    with MixerNode(f"mixtest-{uuid.uuid4().hex[:10]}", 8, depth=8, reserve=0) as n:
        a, b = n.add_leg("room", 16000), n.add_leg("room", 16000)
        pa, pb = LegPort(a, reserve=0), LegPort(b, reserve=0)
        try:
            pb.write_received(frame(1000))  # the worker was late once: two frames queued
            pb.write_received(frame(1001))
            heard = []
            for v in (1002, 1003, 5, 1004):  # loud, loud, quiet, loud
                n.tick()
                mix = pa.read_mixed()
                heard.append(None if mix is None else int(mix[0]))
                pb.write_received(frame(v))
            for _ in range(2):
                n.tick()
                mix = pa.read_mixed()
                heard.append(None if mix is None else int(mix[0]))
            # loud frames keep their place (one frame late); the quiet one is skipped unheard,
            # so 1004 is mixed at the tick right after it was written; then b falls silent
            assert heard == [1000, 1001, 1002, 1003, 1004, 0]
            assert n.rings.trimmed == 1
            c = n.counters(b.slot)
            assert (c.in_dropped, c.in_underruns) == (0, 1)  # the last tick: b sent nothing
        finally:
            pa.close()
            pb.close()


HOLD = 6  # adaptive cushion of these tests, in ticks


def test_an_input_underrun_keeps_its_backlog_as_a_cushion_for_a_while() -> None:
    """After b's worker was late once, the frame it delivered late stays queued (20 ms of
    cushion) through pauses for CUSHION_HOLD_TICKS ticks, so its next late tick costs
    nothing; after the hold the quiet-frame trim gives the 20 ms back."""
    hold = HOLD
    with MixerNode(f"mixtest-{uuid.uuid4().hex[:10]}", 8, depth=8, reserve=0,
                   hold_ticks=hold) as n:  # fmt: skip
        a, b = n.add_leg("room", 16000), n.add_leg("room", 16000)
        pa, pb = LegPort(a, reserve=0, hold_ticks=hold), LegPort(b, reserve=0, hold_ticks=hold)
        # frames b's worker delivers after each tick: late at tick 2 (its frame 1001 comes
        # with the next one), late again at tick 6 (1004 comes with 7); quiet frames < 10
        writes = [[1000], [], [1001, 1002], [5], [1003], [6], [], [1004, 7], [1005], [8],
                  [1006], [9], [1007]]  # fmt: skip
        heard = []
        try:
            pb.write_received(frame(1000))
            for after in writes[1:]:
                n.tick()
                mix = pa.read_mixed()
                heard.append(None if mix is None else int(mix[0]))
                for v in after:
                    pb.write_received(frame(v))
            # tick 2 under-runs (silence); from then on b is one tick late and nothing is
            # trimmed while held (ticks 3-8): the late tick 6 costs nothing. Then the first
            # quiet frame after the hold (7) is skipped and b is back on time.
            assert heard == [1000, 0, 1001, 1002, 5, 1003, 6, 1004, 1005, 8, 1006, 9]
            c = n.counters(b.slot)
            assert (c.in_underruns, c.in_dropped) == (1, 0)
            assert n.rings.trimmed == 1
        finally:
            pa.close()
            pb.close()


def test_an_output_underrun_keeps_its_backlog_as_a_cushion_for_a_while() -> None:
    """The worker side of the adaptive cushion: the mixer was late for a's worker once."""
    hold = HOLD
    with MixerNode(f"mixtest-{uuid.uuid4().hex[:10]}", 8, depth=8, reserve=0,
                   hold_ticks=hold) as n:  # fmt: skip
        a, b = n.add_leg("room", 16000), n.add_leg("room", 16000)
        pa, pb = LegPort(a, reserve=0, hold_ticks=hold), LegPort(b, reserve=0, hold_ticks=hold)
        heard = []

        def read() -> None:
            mix = pa.read_mixed()
            heard.append(None if mix is None else int(mix[0]))

        try:
            pb.write_received(frame(1000))
            n.tick()
            read()
            read()  # the mixer is late: an under-run (the last frame is repeated once)
            for v in (1001, 1002, 5, 1003, 6, 1004, 7, 1005, 8, 1006):
                if v == 1004:
                    read()  # the mixer is late again: the cushion plays
                pb.write_received(frame(v))
                n.tick()
                if v not in (1001, 1004):  # 1001: the late mix
                    read()
            # a hears 1001 one tick late and stays so through the hold (reads 3-7), so the
            # second late mix costs nothing; after the hold the quiet mix 7 is skipped
            assert heard == [1000, 1000, 1001, 1002, 5, 1003, 6, 1004, 1005, 8, 1006]
            c = pa.counters()
            assert (c.out_underruns, c.out_repeats, c.out_dropped) == (1, 1, 0)
            assert pa.trimmed == 1
        finally:
            pa.close()
            pb.close()


def test_standing_output_backlog_shrinks_on_a_quiet_frame_only() -> None:
    with MixerNode(f"mixtest-{uuid.uuid4().hex[:10]}", 8, depth=8, reserve=0) as n:
        a, b = n.add_leg("room", 16000), n.add_leg("room", 16000)
        pa, pb = LegPort(a, reserve=0), LegPort(b, reserve=0)
        try:
            for v in (1000, 1001):  # the mixer ran twice before a's worker read once
                pb.write_received(frame(v))
                n.tick()
            heard = []
            for v in (1002, 6, 1003, 1004):
                mix = pa.read_mixed()
                heard.append(None if mix is None else int(mix[0]))
                pb.write_received(frame(v))
                n.tick()
            mix = pa.read_mixed()
            heard.append(None if mix is None else int(mix[0]))
            assert heard == [1000, 1001, 1002, 1003, 1004]  # the quiet mix (6) was skipped
            assert pa.trimmed == 1
            assert pa.counters().out_dropped == 0
        finally:
            pa.close()
            pb.close()


def test_torn_read_is_detected(node: MixerNode) -> None:
    node.add_leg("room", 16000)
    b = node.add_leg("room", 16000)
    pb = LegPort(b)
    try:
        pb.write_received(frame(1))
        pb.write_received(frame(2))
        node.rings.begin_tick()
        node.mixer.load(node.rings.source)
        # the writer laps the reader while the mixer was copying
        for v in range(8):
            pb.write_received(frame(100 + v))
        torn = node.rings.torn_after_read()
        assert node.mixer.active_slots[torn].tolist() == [b.slot]
        assert node.counters(b.slot).in_torn == 1
    finally:
        pb.close()


def test_stale_port_after_remove_and_reassign(node: MixerNode) -> None:
    a = node.add_leg("room", 16000)
    port = LegPort(a)
    try:
        node.remove_leg(a.slot)
        assert not port.valid
        before = int(node.rings._seg.ctrl[a.slot, C_IN_W])
        assert port.write_received(frame(1)) is False
        assert int(node.rings._seg.ctrl[a.slot, C_IN_W]) == before
        assert port.read_mixed() is None
        with pytest.raises(StaleAttachmentError):
            LegPort(a)
        again = node.add_leg("other", 16000)
        new_port = LegPort(again)
        assert new_port.valid and not port.valid
        new_port.close()
    finally:
        port.close()


def test_epoch_mismatch_and_closed_segment(node: MixerNode) -> None:
    a = node.add_leg("room", 16000)
    forged = type(a)(a.segment, a.slot, a.generation, a.epoch + 1, a.rate)
    with pytest.raises(StaleAttachmentError):
        LegPort(forged)
    port = LegPort(a)
    node.tick()
    assert port.mixer_alive()
    node.rings._seg.header[7] -= 10**10  # heartbeat 10 s old
    assert not port.mixer_alive()
    port.close()


def test_frame_shape_is_checked(node: MixerNode) -> None:
    port = LegPort(node.add_leg("room", 8000))
    try:
        with pytest.raises(ValueError):
            port.write_received(frame(0, 320))
    finally:
        port.close()


WORKER = textwrap.dedent(
    """
    import sys, time, numpy as np
    from mixer.rings import LegAttachment, LegPort
    att = LegAttachment(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), 16000)
    port = LegPort(att)
    print("attached", flush=True)
    value = int(sys.argv[5])
    while True:
        port.write_received(np.full(320, value, np.int16))
        time.sleep(0.002)
    """
)


def spawn_worker(att: object, value: int) -> subprocess.Popen[str]:
    args = [att.segment, str(att.slot), str(att.generation), str(att.epoch), str(value)]  # type: ignore[attr-defined]
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "attached"
    return proc


def test_attached_process_exit_does_not_unlink_segment(node: MixerNode) -> None:
    a = node.add_leg("room", 16000)
    proc = spawn_worker(a, 3)
    proc.terminate()
    proc.wait(10)
    shm = shared_memory.SharedMemory(name=node.segment)  # still there
    from multiprocessing import resource_tracker

    resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    shm.close()


def test_killed_worker_leaves_others_intact(node: MixerNode) -> None:
    a, b = node.add_leg("room", 16000), node.add_leg("room", 16000)
    victim = spawn_worker(a, 1000)
    port_b = LegPort(b)
    try:
        ticks = 0
        # until the victim has published a few frames (on a busy box it may start slowly)
        while ticks < 30 or int(node.rings._seg.ctrl[a.slot, C_IN_W]) < 5:
            port_b.write_received(frame(1))
            node.tick()
            ticks += 1
            assert ticks < 100_000, "the victim process never wrote"
            if ticks >= 30:
                time.sleep(0.002)
        os.kill(victim.pid, signal.SIGKILL)  # may die in the middle of a frame copy
        victim.wait(10)
        node.tick()
        w_at_death = int(node.rings._seg.ctrl[a.slot, C_IN_W])
        for _ in range(10):
            port_b.write_received(frame(1))
            node.tick()
        counters_a = node.counters(a.slot)
        assert counters_a.in_torn == 0
        assert counters_a.in_underruns >= 1  # the dead leg simply goes silent
        assert int(node.rings._seg.ctrl[a.slot, C_IN_W]) == w_at_death
        # b keeps hearing nothing but silence from the dead leg, never garbage
        heard = port_b.read_mixed()
        assert heard is None or set(np.unique(heard).tolist()) <= {0, 1000}
        # the supervisor removes the dead leg; its slot is reusable at once
        node.remove_leg(a.slot)
        c = node.add_leg("room", 16000)
        port_c = LegPort(c)
        assert port_c.write_received(frame(5))
        assert int(node.rings._seg.ctrl[b.slot, C_OUT_W]) > 0
        port_c.close()
    finally:
        port_b.close()
        if victim.poll() is None:
            victim.kill()


def test_raw_address_path_matches_the_array_path(node: MixerNode) -> None:
    """The worker's per-frame path (write_from / read_mixed_address: memmove, no numpy
    call) writes and reads the same frames, repeat-once and silence included."""
    import ctypes

    a, b = node.add_leg("room", 8000), node.add_leg("room", 8000)
    pa, pb = LegPort(a), LegPort(b)
    try:
        heard: list[int | None] = []
        for v in (1, 2, 3, 4):
            src = frame(v, 160)
            assert pb.write_from(src.ctypes.data)
            node.tick()
            addr = pa.read_mixed_address()
            if addr:
                got = np.frombuffer(ctypes.string_at(addr, 320), np.int16)
                assert np.array_equal(got, pa.last)
                heard.append(int(got[0]))
            else:
                heard.append(None)
        assert heard[-2:] == [1, 2]  # a frame of cushion on each side (reserve=1)
        tail = []  # no more ticks: the cushion's frame, that frame repeated once, silence
        while (addr := pa.read_mixed_address()) and len(tail) < 5:
            tail.append(int(np.frombuffer(ctypes.string_at(addr, 2), np.int16)[0]))
        assert tail == [3, 3]
        assert pa.read_mixed_address() == 0
        node.remove_leg(b.slot)
        assert not pb.write_from(frame(9, 160).ctypes.data)  # stale: nothing written
    finally:
        pa.close()
        pb.close()
