"""A crashed SIP worker's last words reach the log (issue 22): its Python stacks from
faulthandler, and where the kernel and gdb allow, its core file and native backtrace."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bridge.config import LogSettings, SipSettings, WorkerSettings
from bridge.core.admission import RoomDirectory
from bridge.devstack.ports import free_udp_tcp_port
from bridge.sip.pool import WorkerPool
from tests.sip.conftest import rtp_range


def _core_pattern() -> str:
    try:
        return Path("/proc/sys/kernel/core_pattern").read_text().strip()
    except OSError:
        return "|unknown"


def _report(logs: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((e for e in logs if e["event"] == "sip.worker.crash_report"), None)


def test_a_worker_dead_of_sigsegv_leaves_its_stacks_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative core_pattern puts the core here
    pool = WorkerPool(
        SipSettings(port=free_udp_tcp_port(), rtp_port_start=rtp_range(), rtp_port_count=400),
        WorkerSettings(pool_size=1, core_dump_max_mb=2048),
        LogSettings(format="console", level="warning"),  # type: ignore[arg-type]
        directory=RoomDirectory.create(("demo",)),
    )
    with capture_logs() as logs:
        pool.start()
        try:
            pid = pool.worker_pids()[0]
            os.kill(pid, signal.SIGSEGV)
            deadline = time.monotonic() + 120  # gdb on a core takes a while on a busy box
            while _report(logs) is None and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            pool.stop()
    report = _report(logs)
    assert report is not None, "no sip.worker.crash_report logged"
    assert report["log_level"] == "error"
    assert report["pid"] == pid
    assert report["signal"] == "SIGSEGV" and report["exitcode"] == -signal.SIGSEGV, report
    stack = report["python_stack"]
    assert "Fatal Python error: Segmentation fault" in stack
    assert "bridge/sip/worker.py" in stack  # the pjsua2 thread's event loop, by file and line
    if not _core_pattern().startswith("|"):
        assert report["core_file"], report["note"]
        assert Path(report["core_file"]).is_relative_to(tmp_path)
        if shutil.which("gdb"):
            assert "#0 " in report["native_backtrace"], report["note"]
