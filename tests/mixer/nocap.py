"""Run in a spawned mixer process first (``log_setup``): take CAP_SYS_NICE away from it, as the
image does (the mixer and worker processes run with no capability), and make sure
RLIMIT_RTPRIO does not let it take SCHED_FIFO without the capability either."""

from __future__ import annotations

import ctypes
import resource

from bridge.privileges import CAP_SYS_NICE, capabilities

_PR_CAPBSET_DROP = 24
_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_sys_nice() -> None:
    resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0)
    caps = capabilities()
    keep = ~(1 << CAP_SYS_NICE)
    data = (_Data * 2)()
    for i, shift in enumerate((0, 32)):
        data[i].effective = (caps.effective & keep) >> shift & 0xFFFFFFFF
        data[i].permitted = (caps.permitted & keep) >> shift & 0xFFFFFFFF
        data[i].inheritable = (caps.inheritable & keep) >> shift & 0xFFFFFFFF
    if libc.capset(ctypes.byref(_Header(_VERSION_3, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    if capabilities().sys_nice:
        raise OSError("CAP_SYS_NICE is still effective")
