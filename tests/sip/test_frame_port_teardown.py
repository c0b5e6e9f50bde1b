"""The worker frees a frame port without a double free in Python's allocator (issue 22).

A port freed by dropping its last Python reference had its C++ destructor run from inside
the proxy's deallocation, with the GIL released; a conference-bridge callback in flight
then called a method on the dying object and deallocated it a second time. Workers
crashed in ``pymalloc_alloc`` / at ``graveyard.clear()``; this churn crashed (SIGSEGV,
SIGBUS, or an object of another type answering for the port) in 3 of 3 runs of 3000
port pairs before ``bridge.sip.pj.destroy_port``, and runs clean with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_frame_ports_freed_under_a_running_media_clock_never_corrupt_memory() -> None:
    env = {**os.environ, "PYTHONMALLOC": "debug"}  # a double free aborts at once
    done = subprocess.run(
        [sys.executable, "-m", "tests.sip.frame_port_churn", "3000"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    tail = (done.stdout + done.stderr)[-3000:]
    assert done.returncode == 0, f"exit {done.returncode}:\n{tail}"
    assert "ok 3000 port pairs" in done.stdout
