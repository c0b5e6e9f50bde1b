"""The mixer in its own process: mixing through the supervisor's segment, commands, talker
events, a killed mixer restarted with the same worker ports, and the supervisor's death."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from multiprocessing import Pipe
from pathlib import Path

import numpy as np
import psutil
import pytest

from mixer.control import Events, Report, Status
from mixer.engine import MixerEvent, TalkerEvent
from mixer.node import MixerNode
from mixer.rings import LegAttachment, LegPort
from mixer.service import MixerProcess, _send_reports

ROOT = Path(__file__).resolve().parents[2]
RATE, F = 8000, 160


class Caller:
    """Two ports paced at 20 ms by a thread, as a worker's media clock would drive them."""

    def __init__(self, mixer: MixerProcess | None, *attachments: LegAttachment) -> None:
        if mixer is not None:
            attachments = tuple(mixer.add_leg("room", RATE) for _ in range(2))
        self.ports = [LegPort(a, reserve=0) for a in attachments]
        self.speaking = False  # port 0 says a 300 Hz tone when True, port 1 is silent
        self.heard: list[list[int]] = [[], []]  # peak of each frame each port hears
        self._stop = threading.Event()
        t = np.arange(F) / RATE
        self._tone = (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)  # 15 periods/frame
        self._silence = np.zeros(F, np.int16)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            self.ports[0].write_received(self._tone if self.speaking else self._silence)
            self.ports[1].write_received(self._silence)
            for i, port in enumerate(self.ports):
                mix = port.read_mixed()
                self.heard[i].append(0 if mix is None else int(np.abs(mix).max()))
            next_t += 0.02
            time.sleep(max(0.0, next_t - time.monotonic()))

    def recent(self, i: int, frames: int = 10) -> int:
        return max(self.heard[i][-frames:], default=0)

    def until(self, cond: object, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise AssertionError(f"not reached in {timeout}s: heard {self.heard[1][-20:]}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for p in self.ports:
            p.close()


@pytest.fixture
def events() -> list[MixerEvent]:
    return []


@pytest.fixture
def mixer(events: list[MixerEvent]) -> Iterator[MixerProcess]:
    def sink(evs: Sequence[MixerEvent]) -> None:
        events.extend(evs)

    proc = MixerProcess(
        f"mixsvc-{uuid.uuid4().hex[:10]}", 8, reserve=0, on_events=sink, status_interval_s=0.1
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.close()


def talking(events: list[MixerEvent], slot: int) -> bool | None:
    state = None
    for ev in events:
        if isinstance(ev, TalkerEvent) and ev.leg == slot:
            state = ev.talking
    return state


def test_mixer_process_mixes_obeys_and_survives_being_killed(
    mixer: MixerProcess, events: list[MixerEvent]
) -> None:
    assert mixer.pid and mixer.pid != os.getpid()
    caller = Caller(mixer)
    a, b = (p.attachment.slot for p in caller.ports)
    try:
        # silence first: the talker detector takes a sound present from the start for noise
        time.sleep(0.5)
        caller.speaking = True
        caller.until(lambda: caller.recent(1) > 4000)  # B hears A through the process
        assert caller.recent(0) == 0  # A never hears itself
        caller.until(lambda: talking(events, a) is True)  # talker event crossed the pipe
        assert talking(events, b) is None
        stats = mixer.clock_stats()
        assert stats is not None and stats.ticks > 0
        # levels come with the periodic status, which may predate the talker event
        caller.until(lambda: mixer.levels().get(a, (0.0,))[0] > mixer.levels().get(b, (0.0,))[0])

        mixer.set_mute(a, True)
        caller.until(lambda: caller.recent(1) == 0)  # a muted leg is silent
        caller.until(lambda: talking(events, a) is False)
        mixer.set_mute(a, False)
        caller.until(lambda: caller.recent(1) > 4000)
        caller.until(lambda: talking(events, a) is True)

        # -------- the mixer process dies: the watcher respawns it, the ports stay valid
        old_pid = mixer.pid
        mixer.kill()
        caller.until(lambda: caller.recent(1, 5) == 0)  # the gap: silence, not garbage
        assert talking(events, a) is False  # no "talking" status left stuck
        assert mixer.wait_ready(10)
        assert mixer.pid != old_pid and mixer.restarts == 1
        caller.until(lambda: caller.recent(1) > 4000)  # audio restored, same LegPorts
        assert caller.recent(0) == 0
        assert all(p.valid for p in caller.ports)
        # a fresh talker detector takes a tone that was there from its start for noise:
        # a pause, then speech again
        caller.speaking = False
        time.sleep(1.0)
        caller.speaking = True
        caller.until(lambda: talking(events, a) is True)
        # the replayed table carries the current mute state into the new process
        mixer.set_mute(a, True)
        caller.until(lambda: caller.recent(1) == 0)
        mixer.kill()
        assert mixer.wait_ready(10)
        time.sleep(0.5)
        assert caller.recent(1, 20) == 0, "a replayed leg lost its mute"
    finally:
        caller.close()
    mixer.remove_leg(a)
    with pytest.raises(KeyError):
        mixer.remove_leg(a)


def test_a_hung_mixer_process_is_killed_and_replaced(events: list[MixerEvent]) -> None:
    with MixerProcess(f"mixsvc-{uuid.uuid4().hex[:10]}", 8, hang_timeout_s=1.0) as mixer:
        mixer.start()
        time.sleep(1.2)  # past the grace period after Ready
        old_pid = mixer.pid
        os.kill(old_pid, signal.SIGSTOP)  # alive, but no tick any more
        deadline = time.monotonic() + 15
        while mixer.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert mixer.restarts == 1 and mixer.pid != old_pid
        assert mixer.wait_ready(10)
        assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie"


def test_bad_input_is_refused_before_anything_is_sent(mixer: MixerProcess) -> None:
    with pytest.raises(ValueError):
        mixer.add_leg("room", 11025)
    with pytest.raises(KeyError):
        mixer.set_mute(5, True)
    atts = [mixer.add_leg("room", RATE) for _ in range(8)]
    assert sorted(a.slot for a in atts) == list(range(8))  # the refused add took no slot
    with pytest.raises(RuntimeError, match="full"):
        mixer.add_leg("room", RATE)


def assert_segment_freed(name: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while Path(f"/dev/shm/{name}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/dev/shm/{name}").exists(), "the segment was left behind"


def test_without_a_grace_supervisor_death_ends_the_mixer_and_frees_the_segment() -> None:
    """``orphan_grace_s`` 0 (the class default; the bridge sets ``workers.orphan_grace``):
    the mixer ends with its supervisor."""
    name = f"mixsvc-{uuid.uuid4().hex[:10]}"
    script = textwrap.dedent(f"""
        import time
        from mixer.service import MixerProcess
        m = MixerProcess({name!r}, 8)
        m.start()
        m.add_leg("room", 8000)
        print(m.pid, flush=True)
        time.sleep(120)
    """)
    sup = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert sup.stdout is not None
        mixer_pid = int(sup.stdout.readline())
        child = psutil.Process(mixer_pid)
        assert child.ppid() == sup.pid
        assert Path(f"/dev/shm/{name}").exists()
        sup.send_signal(signal.SIGKILL)
        sup.wait()
        _, alive = psutil.wait_procs([child], timeout=10)
        assert not alive, "the mixer process outlived its supervisor"
        assert_segment_freed(name)
    finally:
        if sup.poll() is None:
            sup.kill()


def test_after_the_supervisor_dies_callers_hear_each_other_until_sigterm() -> None:
    """With ``orphan_grace_s`` the mixer goes on mixing for the workers (which keep their
    calls as long) until a returning supervisor sends SIGTERM, then frees the segment."""
    name = f"mixsvc-{uuid.uuid4().hex[:10]}"
    script = textwrap.dedent(f"""
        import time
        from mixer.service import MixerProcess
        m = MixerProcess({name!r}, 8, reserve=0, orphan_grace_s=60)
        m.start()
        legs = [m.add_leg("room", {RATE}) for _ in range(2)]
        print(m.pid, *(f"{{a.slot}},{{a.generation}},{{a.epoch}}" for a in legs), flush=True)
        time.sleep(120)
    """)
    sup = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    caller = None
    try:
        assert sup.stdout is not None
        pid, *legs = sup.stdout.readline().split()
        mixer = psutil.Process(int(pid))
        caller = Caller(None, *(LegAttachment(name, *map(int, leg.split(",")), RATE)
                                for leg in legs))  # fmt: skip
        caller.speaking = True
        caller.until(lambda: caller.recent(1) > 4000)  # B hears A
        sup.send_signal(signal.SIGKILL)
        sup.wait()
        time.sleep(1.5)  # a supervisor being restarted
        assert mixer.is_running()
        assert caller.recent(1, 50) > 4000 and min(caller.heard[1][-50:]) > 4000, (
            "the mix stopped with the supervisor"
        )
        mixer.send_signal(signal.SIGTERM)  # what the returning supervisor does
        _, alive = psutil.wait_procs([mixer], timeout=5)
        assert not alive, "SIGTERM did not end the orphaned mixer"
        assert_segment_freed(name)
    finally:
        if caller is not None:
            caller.close()
        if sup.poll() is None:
            sup.kill()


def _fifo_threads(pid: int) -> dict[int, int]:
    """Thread id → SCHED_FIFO priority of every real-time thread of ``pid``."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            if os.sched_getscheduler(int(name)) == os.SCHED_FIFO:
                out[int(name)] = os.sched_getparam(int(name)).sched_priority
    return out


def test_supervisor_sets_sched_fifo_for_a_mixer_process_without_the_capability() -> None:
    """The mixer process has no CAP_SYS_NICE (as in the image): its tick thread's own
    request is refused, its Ready report names the thread, and the supervisor (this test
    process, which has the capability) sets SCHED_FIFO 10 on it; the clock stats say so."""
    from bridge.privileges import capabilities
    from tests.mixer.nocap import drop_sys_nice

    if not capabilities().sys_nice:
        pytest.skip("needs CAP_SYS_NICE in the test process (the supervisor's side)")
    with MixerProcess(
        f"mixsvc-{uuid.uuid4().hex[:10]}", 8, status_interval_s=0.1, log_setup=drop_sys_nice
    ) as mixer:
        mixer.start()
        assert not capabilities(mixer.pid).sys_nice
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not _fifo_threads(mixer.pid):
            time.sleep(0.05)
        fifo = _fifo_threads(mixer.pid)
        assert list(fifo.values()) == [10], f"real-time threads of the mixer: {fifo}"
        assert [tid for tid, _ in mixer.realtime_threads] == list(fifo)  # the tick thread
        while time.monotonic() < deadline:
            stats = mixer.clock_stats()
            if stats is not None and stats.realtime and stats.ticks:
                break
            time.sleep(0.05)
        stats = mixer.clock_stats()
        assert stats is not None and stats.realtime, stats


def test_a_mixer_that_stops_is_not_killed(caplog: pytest.LogCaptureFixture) -> None:
    """close() used to join() the process while the watcher thread joined it too: the loser
    of the two waitpid() calls saw it "alive" and SIGKILLed an already reaped pid ("did
    not stop: killing it" at every pool.stop())."""
    for _ in range(4):
        mixer = MixerProcess(f"mixsvc-{uuid.uuid4().hex[:10]}", 8, status_interval_s=0.05)
        mixer.start()
        time.sleep(0.3)
        mixer.close()
        assert mixer._proc is not None and mixer._proc.exitcode == 0
    assert not [r for r in caplog.records if "killing" in r.getMessage()]


def test_status_keeps_its_pace_while_events_keep_coming() -> None:
    """A stream of talker events must not starve the periodic status (levels, clock)."""
    node = MixerNode(f"mixrep-{uuid.uuid4().hex[:10]}", 2)
    reports: queue.SimpleQueue[Report | None] = queue.SimpleQueue()
    for _ in range(5000):  # a backlog longer than one status interval takes to send
        reports.put(Events(()))
    reports.put(None)
    parent, child = Pipe(duplex=False)
    sender = threading.Thread(target=_send_reports, args=(child, reports, node, 0.001), daemon=True)
    sender.start()
    kinds: list[str] = []
    try:
        while kinds.count("events") < 5000:
            kinds.append("status" if isinstance(parent.recv(), Status) else "events")
    finally:
        sender.join(5)
        node.close()
    assert "status" in kinds[: kinds.index("events") + 4000], "the status waited for the backlog"
