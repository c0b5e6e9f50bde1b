"""The keeper (``bridge.keeper``): what ``run`` becomes as PID 1. Real processes: the keeper
runs in a child interpreter, its "supervisor" is a small Python command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge.keeper import MAX_RESTARTS, restart_due, wanted

REPO = Path(__file__).resolve().parents[2]


def keeper(child: str, tmp_path: Path) -> subprocess.Popen[str]:
    """A keeper (no back-off) whose supervisor runs ``child`` and appends to ``runs``."""
    script = (
        "import sys; from bridge.keeper import keep; from bridge.logs import configure; "
        "from bridge.config import LogSettings; configure(LogSettings(format='json')); "
        f"raise SystemExit(keep([sys.executable, '-c', {child!r}], backoff_s=0.0))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "RUNS": str(tmp_path / "runs")}
    return subprocess.Popen([sys.executable, "-c", script], env=env, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


COUNT = "import os; open(os.environ['RUNS'], 'a').write('x'); "


def runs(tmp_path: Path) -> int:
    return len((tmp_path / "runs").read_text()) if (tmp_path / "runs").exists() else 0


def test_only_a_signal_death_is_restarted() -> None:
    assert restart_due(-signal.SIGKILL, stopping=False)
    assert restart_due(-signal.SIGSEGV, stopping=False)
    assert not restart_due(-signal.SIGTERM, stopping=True)  # the keeper forwarded it
    assert not restart_due(0, stopping=False)  # a clean stop
    assert not restart_due(2, stopping=False)  # a configuration error: the orchestrator's


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False), ("child", False),
                                                 ("", False)])  # fmt: skip
def test_wanted_as_pid_1_or_when_asked(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("SIPMUC_KEEPER", value)
    assert wanted() is expected  # this test process is not PID 1


def test_an_exit_status_is_passed_on_without_a_restart(tmp_path: Path) -> None:
    proc = keeper(COUNT + "raise SystemExit(3)", tmp_path)
    assert proc.wait(30) == 3
    assert runs(tmp_path) == 1


def test_a_killed_supervisor_is_restarted_until_the_budget_is_spent(tmp_path: Path) -> None:
    proc = keeper(COUNT + "import signal; os.kill(os.getpid(), signal.SIGKILL)", tmp_path)
    assert proc.wait(60) == 128 + signal.SIGKILL
    assert runs(tmp_path) == MAX_RESTARTS + 1
    out, _ = proc.communicate()
    assert '"keeper.supervisor_died"' in out and '"keeper.giving_up"' in out


def test_sigterm_reaches_the_supervisor_and_its_status_comes_back(tmp_path: Path) -> None:
    child = COUNT + (
        "import signal, sys, time; "
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); time.sleep(60)"
    )
    proc = keeper(child, tmp_path)
    deadline = time.monotonic() + 30
    while runs(tmp_path) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # its signal handler is installed
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0  # drained and stopped: not restarted
    assert runs(tmp_path) == 1
