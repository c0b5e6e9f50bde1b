"""Measure PJSIP's own C conference bridge (pjmedia) mixing N ports, for ``benchmarks.mixer_tick``.

Only the benchmark imports this module (and through it pjsua2); the mixer library never
does. What is measured: a pjsua2 endpoint with the null audio device, whose pjmedia clock
thread drives the conference bridge every 20 ms. N tone-generator ports (pure C, looping
continuous dual tones, so every port always carries signal) are added to the bridge with
``pjsua_conf_add_port`` via ctypes (``AudioMediaPlayer`` is capped at 32 per process) and
connected full-mesh minus self (``i → j`` for all ``i ≠ j``), which is exactly N-1 mixing:
every port is read once and receives the sum of all others. Over a few seconds we sample
``/proc/self/task/*/stat`` and report the CPU time of the busiest thread (the clock
thread) per tick. It includes tone generation (cheap, O(N)) which our mixer does not pay,
and it excludes nothing else; pjmedia's per-listener accumulation is O(N²).
"""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj  # benchmark-only dependency

PJMEDIA_TONEGEN_LOOP = 1


class _ToneDesc(ctypes.Structure):
    _fields_ = (
        ("freq1", ctypes.c_short),
        ("freq2", ctypes.c_short),
        ("on_msec", ctypes.c_short),
        ("off_msec", ctypes.c_short),
        ("volume", ctypes.c_short),
        ("flags", ctypes.c_short),
    )


@dataclass(frozen=True, slots=True)
class PjmediaResult:
    """CPU of pjmedia's clock thread per 20 ms tick for ``ports`` fully meshed ports."""

    ports: int
    rate: int
    us_per_tick: float
    process_us_per_tick: float


def _thread_cpu_ns() -> dict[int, int]:
    """On-CPU nanoseconds of every thread of this process (``schedstat``: ns resolution)."""
    out: dict[int, int] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat", encoding="ascii") as f:
                out[int(tid)] = int(f.read().split()[0])
        except OSError:
            continue
    return out


def measure(ports_per_conf: list[int], rate: int, seconds: float = 3.0) -> PjmediaResult:
    """Run pjmedia's bridge with conferences of the given sizes and return its CPU cost.

    Several conferences are separate full meshes inside the one bridge (pjmedia has one
    bridge per endpoint), which is how a pjsua2 process would host several rooms.
    """
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = False
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    total = sum(ports_per_conf)
    cfg.medConfig.maxMediaPorts = total + 8
    cfg.medConfig.clockRate = rate
    cfg.medConfig.sndClockRate = rate
    cfg.medConfig.audioFramePtime = 20
    cfg.medConfig.channelCount = 1
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()
    ep.libStart()
    lib = ctypes.CDLL(pj._pjsua2.__file__)
    lib.pjsua_pool_create.restype = ctypes.c_void_p
    lib.pjsua_pool_create.argtypes = (ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t)
    lib.pjmedia_tonegen_create.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.POINTER(ctypes.c_void_p),
    )
    lib.pjmedia_tonegen_play.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint,
        ctypes.POINTER(_ToneDesc),
        ctypes.c_uint,
    )
    lib.pjsua_conf_add_port.argtypes = (
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int),
    )
    lib.pjsua_conf_connect.argtypes = (ctypes.c_int, ctypes.c_int)
    lib.pjsua_conf_remove_port.argtypes = (ctypes.c_int,)
    pool = lib.pjsua_pool_create(b"bench", 4096, 4096)
    frame = rate // 50
    slots: list[list[int]] = []
    keep: list[Any] = []
    for conf_size in ports_per_conf:
        conf_slots = []
        for i in range(conf_size):
            port = ctypes.c_void_p()
            _check(lib.pjmedia_tonegen_create(pool, rate, 1, frame, 16, 0, ctypes.byref(port)))
            tone = _ToneDesc(300 + 37 * i, 700 + 53 * i, 30000, 0, 0, 0)
            keep.append(tone)
            _check(lib.pjmedia_tonegen_play(port, 1, ctypes.byref(tone), PJMEDIA_TONEGEN_LOOP))
            slot = ctypes.c_int()
            _check(lib.pjsua_conf_add_port(pool, port, ctypes.byref(slot)))
            conf_slots.append(slot.value)
        for src in conf_slots:
            for dst in conf_slots:
                if src != dst:
                    _check(lib.pjsua_conf_connect(src, dst))
        slots.append(conf_slots)
    time.sleep(0.5)  # let the bridge settle
    before = _thread_cpu_ns()
    p0 = time.process_time()
    w0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - w0
    p1 = time.process_time()
    after = _thread_cpu_ns()
    busiest = max((after[t] - before.get(t, 0) for t in after), default=0)
    ticks = wall / 0.02
    for conf_slots in slots:
        for s in conf_slots:
            lib.pjsua_conf_remove_port(s)
    ep.libDestroy()
    return PjmediaResult(
        ports=total,
        rate=rate,
        us_per_tick=busiest / 1e3 / ticks,
        process_us_per_tick=(p1 - p0) / ticks * 1e6,
    )


def _check(status: int) -> None:
    if status != 0:
        raise RuntimeError(f"pjmedia call failed with status {status}")


def main() -> None:
    """``python -m benchmarks.mixer_pjmedia SIZES RATE SECONDS`` → one JSON line on stdout.

    Run in a child process by :mod:`benchmarks.mixer_tick` so that each measurement gets a fresh
    pjsua2 library and pjsua's own console output can be told apart from the result.
    """
    import json
    import sys

    sizes = [int(s) for s in sys.argv[1].split(",")]
    result = measure(sizes, int(sys.argv[2]), float(sys.argv[3]))
    payload = {
        "ports": result.ports,
        "rate": result.rate,
        "us_per_tick": result.us_per_tick,
        "process_us_per_tick": result.process_us_per_tick,
    }
    print("RESULT " + json.dumps(payload), flush=True)


if __name__ == "__main__":
    main()
