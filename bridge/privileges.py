"""Least privilege for real-time scheduling: only the supervisor keeps ``CAP_SYS_NICE``.

The mixer clock (a thread of the supervisor) and each worker's media clock and pjsua2 thread
should run under ``SCHED_FIFO``, which needs ``CAP_SYS_NICE``. Kubernetes cannot give a
capability to a non-root process except through ambient capabilities, so the container starts
the bridge through ``setpriv`` (uid 10001, ``CAP_SYS_NICE`` ambient; see the chart). At start
:func:`confine` then keeps the capability in the supervisor's effective set only: it clears
the ambient and inheritable sets (so the worker processes, which parse SIP and RTP from the
Internet, are exec'd without any capability) and drops every other capability. The
supervisor sets the workers' thread priorities for them (:func:`set_fifo`), also for a worker
restarted after a crash, which is why it keeps the capability instead of dropping it once the
first workers run.

Standard library only, so that it can be checked without the bridge's dependencies.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

CAP_SYS_NICE = 23
_CAP_NAMES = {CAP_SYS_NICE: "sys_nice", 6: "setgid", 7: "setuid", 24: "sys_resource"}
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Capability sets of a task as bit masks (``/proc/<pid>/status``)."""

    effective: int
    permitted: int
    inheritable: int
    ambient: int
    bounding: int

    def names(self, mask: int | None = None) -> list[str]:
        value = self.effective if mask is None else mask
        return [_CAP_NAMES.get(bit, f"cap{bit}") for bit in range(64) if value >> bit & 1]

    @property
    def sys_nice(self) -> bool:
        return bool(self.effective >> CAP_SYS_NICE & 1)


def parse_status(text: str) -> Capabilities:
    """The ``Cap*`` lines of a ``/proc/<pid>/status`` text."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap"):
            fields[key] = int(value.strip(), 16)
    return Capabilities(
        fields.get("CapEff", 0),
        fields.get("CapPrm", 0),
        fields.get("CapInh", 0),
        fields.get("CapAmb", 0),
        fields.get("CapBnd", 0),
    )


def capabilities(pid: int | str = "self") -> Capabilities:
    return parse_status(Path(f"/proc/{pid}/status").read_text())


def confine(keep: int = 1 << CAP_SYS_NICE) -> Capabilities:
    """Keep only ``keep`` (and only those we have) in the effective and permitted sets;
    empty the inheritable and ambient sets so that exec'd children get nothing.

    Root (uid 0) is left alone: exec gives a root child every capability of the bounding set
    whatever we do here, and root is what a developer's machine or CI runs as. Raises
    OSError when the kernel refuses the change.
    """
    before = capabilities()
    if os.getuid() == 0 or os.geteuid() == 0:
        return before
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        if errno != 22:  # EINVAL: a kernel without ambient capabilities (< 4.3)
            raise OSError(errno, f"prctl(PR_CAP_AMBIENT_CLEAR_ALL): {os.strerror(errno)}")
    kept = before.permitted & keep
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = kept & 0xFFFFFFFF
    data[1].effective = data[1].permitted = kept >> 32
    if libc.capset(ctypes.byref(header), data) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"capset: {os.strerror(errno)}")
    after = capabilities()
    if after.effective != kept or after.inheritable or after.ambient:
        raise OSError(0, f"capabilities not confined: {after}")
    return after


def lower_effective() -> Capabilities:
    """Empty the effective set and keep the others: the keeper (``bridge.keeper``) uses no
    capability itself, but each supervisor it starts must inherit ``CAP_SYS_NICE``
    (ambient, which needs it permitted and inheritable here). Root is left alone, as in
    :func:`confine`. Raises OSError when the kernel refuses."""
    before = capabilities()
    if os.getuid() == 0 or os.geteuid() == 0:
        return before
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for half, shift in ((0, 0), (1, 32)):
        data[half].permitted = (before.permitted >> shift) & 0xFFFFFFFF
        data[half].inheritable = (before.inheritable >> shift) & 0xFFFFFFFF
    if ctypes.CDLL(None, use_errno=True).capset(ctypes.byref(header), data) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"capset: {os.strerror(errno)}")
    return capabilities()


def set_fifo(tid: int, priority: int) -> bool:
    """``SCHED_FIFO`` at ``priority`` for thread ``tid`` of this or another process (needs
    ``CAP_SYS_NICE`` for another process); False when refused or the thread is gone."""
    try:
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, OSError):
        return False
    return True


def is_fifo(tid: int = 0) -> bool:
    """Whether thread ``tid`` (0 = the calling thread) runs under ``SCHED_FIFO``."""
    try:
        return os.sched_getscheduler(tid) == os.SCHED_FIFO
    except (AttributeError, OSError):
        return False


__all__ = [
    "CAP_SYS_NICE",
    "Capabilities",
    "capabilities",
    "confine",
    "is_fifo",
    "lower_effective",
    "parse_status",
    "set_fifo",
]
