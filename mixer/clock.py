"""The mixer's 20 ms tick thread: absolute deadlines, late-tick counting, SCHED_FIFO if allowed.

Deadlines are absolute (``start + k·period``) so sleep jitter never accumulates into drift.
A tick that starts more than ``late_after_s`` after its deadline counts as *late*; when the
thread falls more than ``max_catch_up`` periods behind, the missed ticks are *skipped*
(counted) instead of run back to back, because the rings' cushion can absorb a short burst
but not an unbounded one. Real-time priority is requested when the process may have it
(root or CAP_SYS_NICE); otherwise the clock runs at normal priority and says so once in
the log, since p99 wake-up lateness then grows to several ms on busy cores (DESIGN §5).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from mixer.frames import TICK_SECONDS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClockStats:
    """Counters of a running or stopped clock."""

    ticks: int
    late: int
    skipped: int
    errors: int
    max_lateness_s: float
    realtime: bool


def try_realtime(priority: int) -> bool:
    """Put the calling thread under SCHED_FIFO; False (logged) when not permitted."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, OSError) as exc:  # PermissionError, or not Linux
        log.warning("mixer clock runs without real-time priority (SCHED_FIFO refused: %s)", exc)
        return False
    log.info("mixer clock runs under SCHED_FIFO priority %d", priority)
    return True


def is_fifo(tid: int) -> bool:
    """Whether thread ``tid`` (0 = the caller) runs under SCHED_FIFO now (another process
    may have set it: the supervisor grants what the mixer process may not take itself)."""
    try:
        return os.sched_getscheduler(tid) == os.SCHED_FIFO
    except (AttributeError, OSError):
        return False


def grid_deadline(now: float, period: float, phase: float) -> float:
    """The first instant ``k·period + phase`` of CLOCK_MONOTONIC strictly after ``now``.

    CLOCK_MONOTONIC is one clock for all processes of a machine: threads of different
    processes that tick on the same grid keep a fixed phase between them, with no drift,
    so a frame written at one's tick is read at the other's after a known delay.
    """
    k = (now - phase) // period + 1
    return float(k * period + phase)


DURATIONS_KEPT = 1000  # 20 s of ticks: more than a metrics scrape interval


class TickClock:
    """Calls ``on_tick`` every ``period_s`` on its own thread until :meth:`stop`.

    ``phase_s=None`` starts one period from now (arbitrary phase); a number ticks at
    ``k·period_s + phase_s`` of CLOCK_MONOTONIC (see :func:`grid_deadline`).
    """

    def __init__(
        self,
        on_tick: Callable[[], object],
        *,
        period_s: float = TICK_SECONDS,
        realtime: bool = True,
        priority: int = 10,
        late_after_s: float | None = None,
        max_catch_up: int = 2,
        name: str = "mixer-clock",
        phase_s: float | None = None,
    ) -> None:
        self._on_tick = on_tick
        self.period_s = period_s
        self._want_realtime = realtime
        self._priority = priority
        self._late_after = period_s / 4 if late_after_s is None else late_after_s
        self._max_catch_up = max_catch_up
        self._phase = phase_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._ticks = self._late = self._skipped = self._errors = 0
        self._max_late = 0.0
        self._realtime = False
        self._rt_tried = threading.Event()
        #: how long each recent tick took (s), for a metrics histogram; bounded
        self._durations: deque[float] = deque(maxlen=DURATIONS_KEPT)

    def start(self) -> None:
        """Start ticking; the first tick is one period from now."""
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop after the current tick and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the tick thread is alive."""
        return self._thread.is_alive()

    @property
    def thread_id(self) -> int:
        """Native id of the tick thread (0 before :meth:`start`)."""
        return self._thread.native_id or 0

    def realtime_wanted(self, timeout: float = 2.0) -> tuple[tuple[int, int], ...]:
        """``((thread id, priority),)`` when SCHED_FIFO was wanted but refused to the tick
        thread itself (a process without CAP_SYS_NICE), so that a process that has the
        capability can set it; ``()`` otherwise. Waits for the thread's own attempt."""
        if not self._want_realtime or not self._rt_tried.wait(timeout) or self._realtime:
            return ()
        return ((self.thread_id, self._priority),)

    def stats(self) -> ClockStats:
        """Snapshot of the counters (safe from any thread). ``realtime`` is the thread's
        scheduling policy now, whoever set it."""
        realtime = self._realtime or (self._thread.is_alive() and is_fifo(self.thread_id))
        return ClockStats(
            self._ticks, self._late, self._skipped, self._errors, self._max_late, realtime
        )

    def take_durations(self) -> list[float]:
        """The tick durations (seconds) recorded since the last call, oldest first."""
        taken: list[float] = []
        while self._durations:
            taken.append(self._durations.popleft())  # deque ops are atomic under the GIL
        return taken

    def _run(self) -> None:
        if self._want_realtime:
            self._realtime = try_realtime(self._priority)
        self._rt_tried.set()
        period = self.period_s
        now = time.monotonic()
        phase = self._phase
        deadline = now + period if phase is None else grid_deadline(now, period, phase)
        while not self._stop.is_set():
            now = time.monotonic()
            if now < deadline:
                self._stop.wait(deadline - now)
                continue
            lateness = now - deadline
            self._max_late = max(self._max_late, lateness)
            if lateness > self._late_after:
                self._late += 1
            if lateness > self._max_catch_up * period:
                missed = int(lateness // period)
                self._skipped += missed
                deadline += missed * period
            started = time.perf_counter()
            try:
                self._on_tick()
            except Exception:
                self._errors += 1
                log.exception("mixer tick failed")
            self._durations.append(time.perf_counter() - started)
            self._ticks += 1
            deadline += period
