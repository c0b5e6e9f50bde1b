"""What a crashed SIP worker leaves behind: its last Python stacks, a core, a native backtrace.

A worker that dies on a signal (a PJSIP segfault, a pjlib assertion's abort) says nothing in
the log by itself. Each worker therefore enables :mod:`faulthandler` on a crash file the pool
picks (one per incarnation): on SIGSEGV, SIGFPE, SIGABRT, SIGBUS or SIGILL, CPython writes
every thread's Python stack there before the process dies. When the pool sees the worker
gone it reads that file into a ``sip.worker.crash_report`` log event. Where the kernel allows
core dumps (``RLIMIT_CORE``; ``workers.core_dump_max_mb``) and ``gdb`` is installed, the
report also carries the native backtrace of every thread, taken from the core file.
"""

from __future__ import annotations

import contextlib
import faulthandler
import glob
import os
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_MAX_REPORT = 16_000  # characters of each part kept in the log event
_CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")
_CORE_USES_PID = Path("/proc/sys/kernel/core_uses_pid")

_armed: list[IO[str]] = []  # the crash file stays open for the process's whole life


def arm(crash_file: str, core_dump_max_mb: int) -> str:
    """In the worker, first thing: Python stacks to ``crash_file`` on a fatal signal, and
    core dumps up to ``core_dump_max_mb`` (within the hard limit). Returns what was set,
    for the start-up log."""
    notes: list[str] = []
    if crash_file:
        handle = open(crash_file, "w", buffering=1, encoding="utf-8")  # noqa: SIM115
        _armed.append(handle)
        faulthandler.enable(file=handle, all_threads=True)
        notes.append("faulthandler")
    if core_dump_max_mb > 0:
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        want = core_dump_max_mb * 1024 * 1024
        if hard != resource.RLIM_INFINITY:
            want = min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CORE, (want, hard))
        soft = resource.getrlimit(resource.RLIMIT_CORE)[0]
        notes.append(f"core dumps up to {soft // (1024 * 1024)} MB" if soft else "no core dumps")
    return ", ".join(notes) or "off"


@dataclass(frozen=True)
class CrashReport:
    """What is known about one dead worker (``log.error(..., **report.fields())``)."""

    exitcode: int | None
    signal: str
    python_stack: str
    core_file: str
    native_backtrace: str
    note: str

    def fields(self) -> dict[str, object]:
        return {
            "exitcode": self.exitcode,
            "signal": self.signal,
            "python_stack": self.python_stack,
            "core_file": self.core_file,
            "native_backtrace": self.native_backtrace,
            "note": self.note,
        }


def collect(
    exitcode: int | None, pid: int, crash_file: str, *, started: float, cwd: str | None = None
) -> CrashReport:
    """In the pool, after a worker died: read its crash file (then delete it), find its
    core, and run gdb on it when gdb is there (bounded: 60 s)."""
    stack = ""
    if crash_file:
        with contextlib.suppress(OSError):
            stack = Path(crash_file).read_text(encoding="utf-8", errors="replace")[-_MAX_REPORT:]
        with contextlib.suppress(OSError):
            os.unlink(crash_file)
    name = ""
    if exitcode is not None and exitcode < 0:
        with contextlib.suppress(ValueError):
            name = signal.Signals(-exitcode).name
    core, note = "", ""
    backtrace = ""
    if name in {"SIGSEGV", "SIGABRT", "SIGBUS", "SIGFPE", "SIGILL", "SIGQUIT"}:
        core, note = find_core(pid, started, cwd or os.getcwd())
        if core:
            backtrace, why = native_backtrace(core)
            note = note or why
    return CrashReport(exitcode, name, stack, core, backtrace, note)


def find_core(pid: int, started: float, cwd: str) -> tuple[str, str]:
    """The core file a process left (path, or "" and why not), per the kernel's pattern."""
    try:
        pattern = _CORE_PATTERN.read_text().strip()
    except OSError:
        return "", "kernel core_pattern unreadable"
    if pattern.startswith("|"):
        return "", f"core handed to {pattern[1:].split()[0]} (see its store, e.g. coredumpctl)"
    expanded = pattern.replace("%%", "\0").replace("%p", str(pid))
    candidates = [expanded.replace("\0", "%")]
    if "%" in candidates[0]:  # other specifiers (%e, %t, %h, …): match them loosely
        candidates = [
            "".join("*" if part.startswith("%") else part for part in _split(candidates[0]))
        ]
    with contextlib.suppress(OSError):
        if "%p" not in pattern and _CORE_USES_PID.read_text().strip() != "0":
            candidates.insert(0, f"{candidates[0]}.{pid}")
    for candidate in candidates:
        path = candidate if os.path.isabs(candidate) else os.path.join(cwd, candidate)
        for found in sorted(glob.glob(path), key=_mtime, reverse=True):
            if _mtime(found) >= started:
                return found, ""
    return "", "no core file (RLIMIT_CORE 0, unwritable directory or kernel policy)"


def native_backtrace(core: str, timeout: float = 60.0) -> tuple[str, str]:
    """Every thread's native backtrace from ``core`` (gdb), or "" and why not."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return "", "gdb not installed: no native backtrace"
    try:
        done = subprocess.run(
            [gdb, "-batch", "-nx", "-ex", "thread apply all bt 40", sys.executable, core],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return "", f"gdb failed: {error}"
    lines = [line for line in done.stdout.splitlines() if line.startswith(("#", "Thread"))]
    return "\n".join(lines)[-_MAX_REPORT:], ""


def _split(pattern: str) -> list[str]:
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "%" and i + 1 < len(pattern):
            parts.append(pattern[i : i + 2])
            i += 2
        else:
            parts.append(pattern[i])
            i += 1
    return parts


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


__all__ = ["CrashReport", "arm", "collect", "find_core", "native_backtrace"]
