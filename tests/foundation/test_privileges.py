"""bridge.privileges: the supervisor keeps CAP_SYS_NICE and nothing else, exec'd workers get
no capability at all, and the supervisor can still give a worker's thread SCHED_FIFO.

The real start-up path of the chart (``setpriv`` to uid 10001 with CAP_SYS_NICE ambient) is
replayed here as uid 65534 with Debian's interpreter (privileges.py needs only the standard
library, and the bridge's virtualenv may not be readable by that user).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bridge import privileges

ROOT = Path(__file__).resolve().parents[2]
STATUS = """Name:\tpython3
CapInh:\t0000000000800000
CapPrm:\t0000000000800000
CapEff:\t0000000000800000
CapBnd:\t00000000008000c0
CapAmb:\t0000000000800000
"""

PROBE = r"""
import json, os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import privileges
before = privileges.capabilities()
after = privileges.confine()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
time.sleep(0.3)
worker = privileges.capabilities(child.pid)
granted = privileges.set_fifo(child.pid, 10)
fifo = privileges.is_fifo(child.pid)
child.kill()
print(json.dumps({
    "uid": os.getuid(),
    "before": [before.effective, before.ambient],
    "after": [after.effective, after.permitted, after.inheritable, after.ambient],
    "worker": [worker.effective, worker.permitted, worker.ambient],
    "granted": granted, "fifo": fifo,
}))
"""


def test_status_lines_are_parsed() -> None:
    caps = privileges.parse_status(STATUS)
    assert caps.sys_nice and caps.names() == ["sys_nice"]
    assert caps.names(caps.bounding) == ["setgid", "setuid", "sys_nice"]
    assert caps.ambient == 1 << privileges.CAP_SYS_NICE


@pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("setpriv") is None or not Path("/usr/bin/python3").exists(),
    reason="needs root, setpriv (util-linux) and Debian's python3 to replay the start-up",
)
def test_supervisor_keeps_sys_nice_and_its_children_get_nothing() -> None:
    with tempfile.TemporaryDirectory(prefix="sipmuc-privileges-", dir="/tmp") as where:
        directory = Path(where)
        directory.chmod(0o755)  # pytest's own tmp_path is private to root
        module = directory / "privileges.py"
        shutil.copy(ROOT / "bridge" / "privileges.py", module)
        module.chmod(0o644)
        run = _replay_start_up(module)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    nice = 1 << privileges.CAP_SYS_NICE
    assert seen["uid"] == 65534
    assert seen["before"] == [nice, nice]  # what setpriv hands over: ambient sys_nice
    assert seen["after"] == [nice, nice, 0, 0]  # kept for itself, nothing to pass on
    assert seen["worker"] == [0, 0, 0]  # an exec'd worker has no capability at all
    assert seen["granted"] and seen["fifo"]  # … and still gets SCHED_FIFO from the parent


def _replay_start_up(module: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "--inh-caps=-all,+sys_nice", "--ambient-caps=-all,+sys_nice",
            "--", "/usr/bin/python3", "-c", PROBE, str(module),
        ],
        capture_output=True, text=True, timeout=60, cwd=module.parent, check=False,
    )  # fmt: skip


def test_root_is_left_alone() -> None:
    if os.getuid() != 0:
        pytest.skip("only meaningful as root")
    assert privileges.confine() == privileges.capabilities()
    assert sys.executable  # the test process kept its capabilities
