"""The mixer in its own process, started and watched by the supervisor.

Why a process: a mixer thread inside the supervisor shares its GIL with XMPP parsing and
Redis work, and those stalls (up to 80 ms measured) hit every leg at once. In its own
process the 20 ms clock thread (SCHED_FIFO when permitted) competes for the GIL only with
two small threads of its own: one reads commands, one sends reports.

Who owns what:

* The **supervisor** (:class:`MixerProcess`) creates and owns the shared-memory segment
  (``MixerRings`` with ``create=True``, never ticked), chooses each leg's slot and bumps its
  generation, and keeps a :class:`~mixer.control.LegTable` of every leg's mute/deaf/gain.
  Workers get their ``LegAttachment`` from it at once, without a round trip to the mixer.
* The **mixer process** (:func:`mixer_main`) attaches to that segment (``create=False``:
  ``resource_tracker.unregister``, never unlinks), ticks it and obeys commands from a
  ``multiprocessing`` pipe; talker events and periodic status go back on the same pipe
  from a sender thread, so a slow reader never delays a tick.

Failure behaviour:

* **The mixer process dies** (crash, SIGKILL): the watcher thread respawns it after a short
  back-off and replays the table. The segment, its epoch and every worker's port stay
  valid, so workers notice nothing but a gap (their ports repeat the last frame once, then
  play silence) and audio resumes at the new process's first ticks. Legs that were talking
  get a synthetic ``talking=False`` so that no "talking" status stays stuck.
* **The mixer process hangs** (stopped, deadlocked): no tick in the segment's heartbeat for
  ``hang_timeout_s`` (3 s) → the watcher SIGKILLs it and the rule above applies.
* **The supervisor dies**: the pipe reaches EOF and the mixer process goes on ticking for
  ``orphan_grace_s`` (the SIP workers keep their calls as long), so callers keep hearing
  each other while the supervisor is restarted. It then stops its clock, marks the segment
  closed, unlinks it and exits 0; SIGTERM (what a returning supervisor sends, see
  ``bridge.sip.orphans``) ends the grace at once. The unlink is the mixer's job then: the
  attachers' ``resource_tracker.unregister`` calls also cancel the owner's registration in
  the tracker the process tree shares. A returning supervisor ends the orphans cleanly and
  starts from scratch (callers redial); nothing is re-attached.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from mixer.clock import ClockStats
from mixer.control import (
    Attach,
    Command,
    Detach,
    Events,
    LegTable,
    Ready,
    Refused,
    Report,
    SetDeaf,
    SetGain,
    SetMute,
    Status,
    Stop,
    apply,
)
from mixer.engine import ConferenceKey, MixerEvent, TalkerEvent
from mixer.node import MixerNode
from mixer.rings import (
    CUSHION_HOLD_TICKS,
    LegAttachment,
    MixerRings,
    RingCounters,
    discard_segment,
)

log = logging.getLogger(__name__)

EventSink = Callable[[Sequence[MixerEvent]], object]
MAX_DURATIONS = 10_000  # tick durations kept between two tick_durations() calls


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    """Everything the mixer process needs to attach and tick (picklable)."""

    segment: str
    capacity: int
    depth: int = 8
    reserve: int = 1
    hold_ticks: int = CUSHION_HOLD_TICKS
    realtime: bool = True
    phase_s: float | None = None
    status_interval_s: float = 0.25
    log_setup: Callable[[], object] | None = None
    """Picklable callable run first in the process (the bridge passes its log configuration,
    so that the mixer's stdlib log lines come out like every other process's)."""
    orphan_grace_s: float = 0.0
    """How long the mixer goes on ticking once its supervisor is gone (0: it stops at once)."""


def mixer_main(conn: Connection, config: ProcessConfig) -> None:
    """Entry point of the mixer process: tick until :class:`Stop` or the supervisor is gone."""
    if config.log_setup is not None:
        config.log_setup()
    sys.setswitchinterval(0.0005)  # the clock thread waits at most this long for the GIL
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the supervisor's to handle
    terminated = threading.Event()  # SIGTERM: stop cleanly (an orphan's grace ends at once)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: terminated.set())
    reports: queue.SimpleQueue[Report | None] = queue.SimpleQueue()
    node = MixerNode(
        config.segment,
        config.capacity,
        depth=config.depth,
        reserve=config.reserve,
        hold_ticks=config.hold_ticks,
        on_events=lambda events: reports.put(Events(tuple(events))),
        attach=True,
    )
    sender = threading.Thread(
        target=_send_reports,
        args=(conn, reports, node, config.status_interval_s),
        name="mixer-reports",
        daemon=True,
    )
    orphaned = False
    try:
        node.start(realtime=config.realtime, phase_s=config.phase_s)
        reports.put(Ready(os.getpid(), node.rings.epoch, node.realtime_wanted()))
        sender.start()
        while True:
            try:
                command = conn.recv()
            except (EOFError, OSError):
                orphaned = True
                if config.orphan_grace_s > 0 and not terminated.is_set():
                    log.warning("mixer: supervisor gone, mixing on for up to %.0f s "
                                "(SIGTERM ends it)", config.orphan_grace_s)  # fmt: skip
                    terminated.wait(config.orphan_grace_s)
                log.warning("mixer: supervisor gone, the mixer process ends")
                break
            if isinstance(command, Stop):
                break
            try:
                apply(node, command)
            except Exception as exc:
                reports.put(Refused(command, f"{type(exc).__name__}: {exc}"))
    finally:
        node.stop()
        reports.put(None)
        if sender.is_alive():
            sender.join(2.0)
        node.close()  # unmaps only: the supervisor owns the segment ...
        if orphaned:
            discard_segment(config.segment)  # ... unless it died: nobody else will unlink it


def _send_reports(
    conn: Connection,
    reports: queue.SimpleQueue[Report | None],
    node: MixerNode,
    interval_s: float,
) -> None:
    """Events as they come, a status every ``interval_s`` even while events keep coming."""
    next_status = time.monotonic() + interval_s
    while True:
        wait = next_status - time.monotonic()
        item: Report | None
        if wait <= 0:
            item = Status(node.clock_stats(), tuple(node.tick_durations()), node.levels())
            next_status = time.monotonic() + interval_s
        else:
            try:
                item = reports.get(timeout=wait)
            except queue.Empty:
                continue
        if item is None:
            return
        try:
            conn.send(item)
        except (OSError, ValueError):
            return


class MixerProcess:
    """Supervisor-side handle of the mixer process; same control API as ``MixerNode``.

    Thread-safe. ``on_events`` runs on the watcher thread with talker events.
    """

    def __init__(
        self,
        segment: str,
        capacity: int = 256,
        *,
        depth: int = 8,
        reserve: int = 1,
        hold_ticks: int = CUSHION_HOLD_TICKS,
        on_events: EventSink | None = None,
        status_interval_s: float = 0.25,
        log_setup: Callable[[], object] | None = None,
        hang_timeout_s: float = 3.0,
        orphan_grace_s: float = 0.0,
    ) -> None:
        self.rings = MixerRings(
            segment, capacity, depth=depth, reserve=reserve, hold_ticks=hold_ticks
        )
        self._config = ProcessConfig(
            segment,
            capacity,
            depth,
            reserve,
            hold_ticks,
            status_interval_s=status_interval_s,
            log_setup=log_setup,
            orphan_grace_s=orphan_grace_s,
        )
        self._on_events = on_events
        self._table = LegTable()
        self._free: deque[int] = deque(range(capacity))
        self._conf_ids: dict[ConferenceKey, int] = {}
        self._conf_legs: dict[ConferenceKey, int] = {}
        self._talking: dict[int, ConferenceKey] = {}
        self._lock = threading.RLock()
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._spawned_at = 0.0
        self._failures = 0
        self._ready = threading.Event()
        self._ready_at = 0.0
        self._hang_timeout_s = hang_timeout_s
        self._closing = threading.Event()
        self._watcher: threading.Thread | None = None
        self._clock: ClockStats | None = None
        self._durations: list[float] = []
        self._levels: dict[int, tuple[float, float]] = {}
        self._warned_rt = False
        self.realtime_threads: tuple[tuple[int, int], ...] = ()
        """(thread id, priority) this supervisor set to SCHED_FIFO in the current mixer
        process (it could not do it itself)."""
        self.restarts = 0
        """How many times the mixer process was respawned after dying."""

    @property
    def segment(self) -> str:
        """Name of the shared-memory segment workers attach to."""
        return self.rings.name

    @property
    def pid(self) -> int:
        """Pid of the current mixer process (0 before start)."""
        proc = self._proc
        return (proc.pid or 0) if proc is not None else 0

    # ------------------------------------------------------------------ lifecycle
    def start(
        self, *, realtime: bool = True, phase_s: float | None = None, timeout: float = 30.0
    ) -> None:
        """Spawn the mixer process and wait until it ticks (RuntimeError otherwise)."""
        if self._watcher is not None:
            raise RuntimeError("already started")
        self._config = replace(self._config, realtime=realtime, phase_s=phase_s)
        with self._lock:
            self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="mixer-watch", daemon=True)
        self._watcher.start()
        if not self._ready.wait(timeout):
            self.close()
            raise RuntimeError("the mixer process did not start in time")

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the current mixer process reported that it ticks."""
        return self._ready.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the mixer process, as a crash would (tests and chaos drills)."""
        pid = self.pid
        if pid:
            self._ready.clear()
            os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        """Stop the mixer process, then mark the segment closed and unlink it."""
        with self._lock:
            if self._closing.is_set():
                return
            self._closing.set()
            conn, proc = self._conn, self._proc
            if conn is not None:
                with contextlib.suppress(OSError, ValueError):
                    conn.send(Stop())
        # Wait for the sentinel, not join(): the watcher thread reaps the process too, and
        # two threads in waitpid() race (the loser gets ECHILD, its Popen still says "alive"
        # and it would SIGKILL a pid that is already reaped: the "did not stop: killing it"
        # seen at every pool.stop()). A sentinel not ready means the pid is still ours.
        if proc is not None and not wait([proc.sentinel], 5.0):
            log.warning("mixer process did not stop: killing it")
            proc.kill()
            wait([proc.sentinel], 2.0)
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(5.0)
        if proc is not None:
            proc.join(1.0)  # the watcher has ended: nobody else reaps now
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self.rings.close()

    def __enter__(self) -> MixerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ control
    def add_leg(
        self, conference: Hashable, rate: int, gain: float = 1.0, *, muted: bool = False
    ) -> LegAttachment:
        """Reserve a slot for a new leg; give the returned attachment to its worker."""
        with self._lock:
            if not self._free:
                raise RuntimeError(f"mixer is full ({self._config.capacity} legs)")
            slot = self._free[0]
            command = Attach(slot, conference, rate, gain, muted)
            self._table.record(command)  # validates before anything is taken
            self._free.popleft()
            conf_id = self._conf_ids.setdefault(conference, len(self._conf_ids) + 1)
            self._conf_legs[conference] = self._conf_legs.get(conference, 0) + 1
            attachment = self.rings.assign(slot, conf_id, rate)
            self._send(command)
            return attachment

    def remove_leg(self, leg: int) -> None:
        """Remove a leg (by slot; KeyError if unknown); its worker's port goes stale at once."""
        with self._lock:
            attached = self._table.get(leg)
            self._table.record(Detach(leg))
            self.rings.release(leg)
            self._free.append(leg)
            self._talking.pop(leg, None)
            if attached is not None:
                left = self._conf_legs.get(attached.conference, 1) - 1
                if left <= 0:
                    self._conf_legs.pop(attached.conference, None)
                    self._conf_ids.pop(attached.conference, None)
                else:
                    self._conf_legs[attached.conference] = left
            self._send(Detach(leg))

    def set_mute(self, leg: int, muted: bool) -> None:
        """Mute or unmute what a leg says (it keeps hearing the others)."""
        self._command(SetMute(leg, muted))

    def set_deaf(self, leg: int, deaf: bool) -> None:
        """Give a leg silence instead of its mix (it is still heard unless muted)."""
        self._command(SetDeaf(leg, deaf))

    def set_gain(self, leg: int, gain: float) -> None:
        """Set the linear gain applied to a leg's voice."""
        self._command(SetGain(leg, gain))

    # ------------------------------------------------------------------ queries
    def counters(self, leg: int) -> RingCounters:
        """Under-run / drop / torn counters of a leg, both directions (read from the segment)."""
        return self.rings.counters(leg)

    def clock_stats(self) -> ClockStats | None:
        """The mixer clock's counters from its latest status (per process incarnation)."""
        return self._clock

    def tick_durations(self) -> list[float]:
        """How long each tick took (s) since the last call (for a histogram)."""
        with self._lock:
            taken, self._durations = self._durations, []
            return taken

    def levels(self) -> dict[int, tuple[float, float]]:
        """Per slot: (spoken, in-the-mix) smoothed power from the latest status."""
        return dict(self._levels)

    # ------------------------------------------------------------------ internals
    def _command(self, command: Command) -> None:
        with self._lock:
            self._table.record(command)
            self._send(command)

    def _send(self, command: Command) -> None:
        conn = self._conn
        if conn is None:
            return
        # a failure means the process is gone: the watcher respawns it and replays the table
        with contextlib.suppress(OSError, ValueError):
            conn.send(command)

    def _spawn(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=mixer_main, args=(child, self._config), name="sipmuc-mixer", daemon=True
        )
        self._ready.clear()
        proc.start()
        child.close()
        old = self._conn
        self._proc, self._conn, self._spawned_at = proc, parent, time.monotonic()
        if old is not None:
            old.close()
        for command in self._table.replay():
            self._send(command)

    def _watch(self) -> None:
        while True:
            with self._lock:
                conn, proc = self._conn, self._proc
            if conn is None or proc is None:
                return
            ready = wait([conn, proc.sentinel], timeout=0.5)
            if conn in ready or proc.sentinel in ready:
                self._drain(conn)
            if proc.sentinel in ready:
                proc.join(1.0)
                if self._closing.is_set():
                    return
                try:
                    self._respawn(proc.exitcode)
                except Exception:  # e.g. spawn failed: the dead sentinel brings us back here
                    log.exception("mixer process could not be restarted")
            elif self._closing.is_set() and not proc.is_alive():
                return
            elif self._hung():
                log.warning(
                    "mixer process %s has not ticked for %.1f s: killing it",
                    proc.pid, self.rings.heartbeat_age_s(),
                )  # fmt: skip
                proc.kill()  # the sentinel path above restarts it

    def _hung(self) -> bool:
        """Alive, reported ready a while ago, yet no tick for ``hang_timeout_s`` (stopped,
        deadlocked, starved): the heartbeat in the segment's header is the tick's own."""
        if not self._ready.is_set() or self._closing.is_set():
            return False
        since_ready = time.monotonic() - self._ready_at
        limit = self._hang_timeout_s
        return since_ready > limit and self.rings.heartbeat_age_s() > limit

    def _drain(self, conn: Connection) -> None:
        while True:
            try:
                if not conn.poll():
                    return
                report = conn.recv()
            except (EOFError, OSError):
                return
            try:
                self._on_report(report)
            except Exception:
                log.exception("mixer: handling a report failed")

    def _on_report(self, report: Report) -> None:
        if isinstance(report, Events):
            with self._lock:
                for ev in report.events:
                    if isinstance(ev, TalkerEvent):
                        if ev.talking and ev.leg in self._table:
                            self._talking[ev.leg] = ev.conference
                        else:
                            self._talking.pop(ev.leg, None)
            if self._on_events is not None:
                self._on_events(report.events)
        elif isinstance(report, Status):
            self._clock = report.clock
            self._levels = report.levels
            with self._lock:
                if len(self._durations) < MAX_DURATIONS:
                    self._durations.extend(report.durations)
            clock = report.clock
            settled = time.monotonic() - self._ready_at > 1.0  # a grant may be in flight
            if clock is not None and clock.ticks and not clock.realtime and settled and (
                not self._warned_rt
            ):
                self._warned_rt = True
                log.warning(
                    "mixer process runs at normal priority (SCHED_FIFO refused: grant "
                    "CAP_SYS_NICE); expect late ticks on busy cores"
                )
        elif isinstance(report, Ready):
            log.info("mixer process %d ticks (epoch %x)", report.pid, report.epoch)
            self._grant_realtime(report.realtime_threads)
            self._ready_at = time.monotonic()
            self._ready.set()
        elif isinstance(report, Refused):
            log.warning("mixer refused %r: %s", report.command, report.error)

    def _grant_realtime(self, threads: tuple[tuple[int, int], ...]) -> None:
        """Set the SCHED_FIFO priorities the mixer process could not set itself: in the
        image it runs without any capability, the supervisor keeps CAP_SYS_NICE for this
        (bridge.privileges), as for the SIP workers' clocks."""
        granted = []
        for tid, priority in threads:
            try:
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
            except (AttributeError, OSError) as exc:
                log.warning(
                    "mixer clock thread %d: SCHED_FIFO %d refused to the supervisor too "
                    "(%s): it ticks at normal priority", tid, priority, exc,
                )  # fmt: skip
            else:
                granted.append((tid, priority))
                self._warned_rt = False  # a later refusal (respawn) is worth a warning again
                log.info(
                    "mixer clock thread %d set to SCHED_FIFO %d by the supervisor", tid, priority
                )
        self.realtime_threads = tuple(granted)

    def _respawn(self, exitcode: int | None) -> None:
        lived = time.monotonic() - self._spawned_at
        self._failures = self._failures + 1 if lived < 5.0 else 0
        delay = min(5.0, 0.1 * 2**self._failures)
        log.warning(
            "mixer process died (exit code %s) after %.1f s: restarting in %.1f s",
            exitcode, lived, delay,
        )  # fmt: skip
        with self._lock:
            stopped = [TalkerEvent(leg, conf, False) for leg, conf in self._talking.items()]
            self._talking.clear()
        if stopped and self._on_events is not None:
            self._on_events(stopped)  # the new process starts with nobody talking
        if self._closing.wait(delay):
            return
        with self._lock:
            if self._closing.is_set():
                return
            self._spawn()
            self.restarts += 1
