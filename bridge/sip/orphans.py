"""What a dead supervisor leaves running, and ending it cleanly when a supervisor returns.

When the supervisor dies (killed, crashed) its mixer and SIP workers carry on for
``workers.orphan_grace`` so that callers keep hearing each other while it is restarted
(``mixer.service``, ``bridge.sip.worker``). The restarted supervisor cannot adopt them: their
control pipes died with the old one. It ends them instead, before it binds the same ports:
SIGTERM makes each worker BYE its calls and exit and the mixer unlink its segment; what is
still alive after ``timeout`` gets SIGKILL.

To find them the pool keeps a small JSON record (pids with their kernel start times, so a
reused pid is never signalled, and the mixer's segment) in ``workers.runtime_dir``, named
after the node; a clean stop removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from bridge.logs import get_logger
from mixer.rings import discard_segment

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Child:
    """One process of the supervisor's tree: ``started`` is its start time in clock ticks
    since boot (``/proc/<pid>/stat`` field 22), which a reused pid does not share."""

    role: str
    pid: int
    started: int


def start_time(stat: str) -> int:
    """Field 22 of a ``/proc/<pid>/stat`` text (the command name may hold spaces and ')')."""
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def started_at(pid: int) -> int | None:
    """The start time of a live process ``pid``, None when there is none (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if stat[stat.rindex(")") + 2 :].startswith("Z"):
        return None
    return start_time(stat)


def record_path(runtime_dir: Path | None, node_id: str) -> Path:
    """The record of node ``node_id`` (any characters: it names a file) in ``runtime_dir``
    (None: the system's temporary directory)."""
    directory = runtime_dir or Path(tempfile.gettempdir())
    return directory / f"sipmuc-{re.sub(r'[^A-Za-z0-9_.-]', '_', node_id)}.children.json"


def write_record(path: Path, segment: str, children: Iterable[tuple[str, int]]) -> None:
    """Record the live processes of ``children`` (role, pid), atomically."""
    alive = [Child(role, pid, t) for role, pid in children if (t := started_at(pid)) is not None]
    body = json.dumps({"segment": segment, "children": [asdict(c) for c in alive]})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as out:  # unique: two pools of one process may share a node id
        out.write(body)
    os.replace(tmp, path)


def read_record(path: Path) -> tuple[str, list[Child]]:
    """(segment, children) of a record; ("", []) when there is none or it is unreadable."""
    try:
        data = json.loads(path.read_text())
        children = [Child(str(c["role"]), int(c["pid"]), int(c["started"]))
                    for c in data["children"]]  # fmt: skip
        return str(data["segment"]), children
    except FileNotFoundError:
        return "", []
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("sip.orphans.bad_record", path=str(path), error=str(error))
        return "", []


def end_orphans(path: Path, timeout: float = 10.0) -> list[Child]:
    """End the processes a dead supervisor recorded in ``path`` (see the module docstring);
    returns those that were still running. Removes the record."""
    segment, children = read_record(path)
    alive = [c for c in children if started_at(c.pid) == c.started]
    for child in alive:
        _signal(child, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(started_at(c.pid) == c.started for c in alive):
        time.sleep(0.05)
    stuck = [c for c in alive if started_at(c.pid) == c.started]
    for child in stuck:
        _signal(child, signal.SIGKILL)
    if segment:
        discard_segment(segment)  # the mixer unlinks it itself; this covers a killed one
    if alive:
        log.warning("sip.orphans.ended", processes=[f"{c.role}:{c.pid}" for c in alive],
                    killed=[c.pid for c in stuck])  # fmt: skip
    path.unlink(missing_ok=True)
    return alive


def _signal(child: Child, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signum)
