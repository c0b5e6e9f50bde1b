"""The keeper: restarts a supervisor that died, so that its calls outlive it for a moment.

In a container the bridge is PID 1, and when PID 1 dies the kernel kills every process
of the container: the mixer and the workers, whose calls could otherwise carry on for
``workers.orphan_grace`` while the supervisor comes back (issue 17). So when ``run``
starts as PID 1 (or with ``SIPMUC_KEEPER=1``, e.g. under a service manager that would
otherwise end the orphans with the main process) it becomes this small keeper: it runs
the supervisor as its child and, when a signal kills it (SIGKILL from the OOM killer,
SIGSEGV, SIGABRT), starts it again. The new supervisor ends the old one's mixer and
workers cleanly (``bridge.sip.orphans``) and serves again; callers hear each other until
then. An exit with a status (a configuration error, XMPP or Redis unreachable, a clean
stop) is passed on: that is the orchestrator's to retry. So are more than
``MAX_RESTARTS`` restarts within ``WINDOW_S``.

The keeper forwards SIGTERM and SIGINT to the supervisor (a pod's stop: the supervisor
drains) and reaps every process that ends up as its child, as PID 1 must. It holds no
capability in its effective set: ``CAP_SYS_NICE`` stays permitted and ambient only so that
each supervisor it starts gets it (``bridge.privileges``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Sequence

from bridge.logs import get_logger

ENV = "SIPMUC_KEEPER"
"""``1``: run as keeper even when not PID 1; ``0``: never. Set to ``child`` in the
supervisor it starts."""
MAX_RESTARTS = 5
WINDOW_S = 600.0
BACKOFF_S = 1.0
_PR_SET_CHILD_SUBREAPER = 36

log = get_logger(__name__)


def wanted() -> bool:
    """Whether ``run`` should become the keeper (see the module docstring)."""
    choice = os.environ.get(ENV, "")
    if choice in ("0", "child"):
        return False
    return choice == "1" or os.getpid() == 1


def restart_due(status: int, stopping: bool) -> bool:
    """Whether a supervisor that ended with ``status`` (``os.waitstatus_to_exitcode``:
    negative = killed by that signal) is restarted: only when killed by a signal that the
    keeper did not forward."""
    return status < 0 and not stopping


def keep(command: Sequence[str], *, backoff_s: float = BACKOFF_S) -> int:
    """Run ``command`` (the supervisor) until it exits by itself; returns its exit code."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    restarts: deque[float] = deque()
    while True:
        # its own process group: a terminal's ^C reaches the keeper only, which passes it
        # on once (twice would cut the supervisor's drain short)
        child = subprocess.Popen(list(command), env={**os.environ, ENV: "child"}, process_group=0)
        log.info("keeper.supervisor_started", pid=child.pid, restarts=len(restarts))
        pid = child.pid
        status = child.returncode = _wait_reaping(pid)
        child = None  # reaped: its pid may be reused, never signal it again
        if not restart_due(status, stopping):
            return status if status >= 0 else 128 - status
        now = time.monotonic()
        restarts.append(now)
        while restarts and restarts[0] < now - WINDOW_S:
            restarts.popleft()
        name = signal.Signals(-status).name
        if len(restarts) > MAX_RESTARTS:
            log.error("keeper.giving_up", signal=name, restarts=len(restarts),
                      window_s=WINDOW_S)  # fmt: skip
            return 128 - status
        log.error("keeper.supervisor_died", signal=name, pid=pid, restart_in_s=backoff_s)
        time.sleep(backoff_s)
        if stopping:  # asked to stop while no supervisor ran
            return 128 - status


def _wait_reaping(pid: int) -> int:
    """Reap every child (orphans re-parented to us included) until ``pid`` ends."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if done == pid:
            return os.waitstatus_to_exitcode(status)
