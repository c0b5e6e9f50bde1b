"""Segfault hunt (issue 22): many short calls on a SIP worker that also carries a long call.

The crash seen once in about a dozen runs: a worker died of SIGSEGV about 90 ms after a
short call on it ended, while another caller was on the same worker. This runs one worker
(the front) with one long SIPp call playing speech for the whole run, and a second SIPp
that places ``--calls`` short calls (random-ish hold from ``--hold-ms``, RTP played, some
overlapping) on the same worker. Workers run with faulthandler (``bridge.sip.forensics``)
and core dumps (``--core-mb``; a relative kernel core_pattern puts them in the working
directory), so a crash is reported with its Python stacks and, with gdb, its native
backtrace (``sip.worker.crash_report`` in the log). Prints the calls done, the worker
deaths seen and the crash reports.

    python -m benchmarks.short_call_stress [--calls 400] [--rate 4] [--hold-ms 300] [--busy]
        [--malloc-debug]

``--malloc-debug`` starts the node's processes with ``PYTHONMALLOC=debug``: Python's debug
allocator hooks abort at the first double free, a write past a block or an allocation
without the GIL, where it happens rather than later in ``pymalloc_alloc``.

(from the repo root; or with PYTHONPATH=<repo> from a scratch directory, where the cores go)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from structlog.testing import capture_logs

from bridge.config import LogSettings, SipLimits, SipSettings, WorkerSettings
from bridge.core.admission import RoomDirectory
from bridge.core.events import HangupLeg, LegJoined, LegLeft, SendSipMessage
from bridge.demo.callers import CallerScript, demo_scenario
from bridge.devstack.ports import free_udp_tcp_port
from bridge.sip import devpeers as dp
from bridge.sip.pool import WorkerPool

ROOM = "stress"


def _pcap(work: Path, seconds: float) -> Path:
    """A tone sweep as G.711 RTP (speech synthesis would need espeak-ng for long runs)."""
    t = np.arange(int(8000 * seconds)) / 8000
    tone = 4000 * np.sin(2 * np.pi * (300 + 200 * np.sin(t)) * t)
    path = work / f"tone-{int(seconds)}.pcap"
    dp.write_rtp_pcap(path, tone.astype(np.int16))
    return path


def run(args: argparse.Namespace) -> int:
    calls, rate, hold_ms, busy = args.calls, args.rate, args.hold_ms, args.busy
    core_mb, concurrency = args.core_mb, args.concurrency
    work = Path(tempfile.mkdtemp(prefix="short-call-stress-"))
    if args.malloc_debug:
        os.environ["PYTHONMALLOC"] = "debug"  # inherited by the spawned workers and mixer
    seconds = calls / rate + 60
    pool = WorkerPool(
        SipSettings(
            port=free_udp_tcp_port(), rtp_port_start=36000, rtp_port_count=800,
            # SIPp on loopback plays a PBX: no per-source rate limit (bridge.sip.floodguard)
            limits=SipLimits(trusted_sources=["127.0.0.1"]),
        ),
        WorkerSettings(pool_size=1, calls_per_worker=8, media_timeout=0, core_dump_max_mb=core_mb),
        LogSettings(format="console", level="warning"),  # type: ignore[arg-type]
        directory=RoomDirectory.create((ROOM,)),
    )
    joined = left = died = 0
    reports: list[dict[str, Any]] = []
    with capture_logs() as logs:
        pool.start()
        try:
            first_pid = pool.worker_pids()[0]
            # the long caller answers MESSAGEs and refreshes (the demo callers' scenario)
            script = CallerScript("longcall", "Long Call", (), first_half=True)
            long_call = dp.Sipp(
                demo_scenario(ROOM, script, _pcap(work, seconds)),
                pool.front_port, work / "long", timeout_s=int(seconds + 60),
            )  # fmt: skip
            long_call.start()
            time.sleep(2.0)
            short = dp.Sipp(
                dp.sipp_uac_scenario(ROOM, pcap=_pcap(work, 2), hold_ms=hold_ms),
                pool.front_port, work / "short", calls=calls, rate=rate,
                limit=concurrency, timeout_s=int(seconds + 60),
            )  # fmt: skip
            started = time.monotonic()
            short.start()
            long_leg = ""
            next_text = time.monotonic()
            while short.proc is not None and short.proc.poll() is None:
                with contextlib.suppress(queue.Empty):
                    event = pool.get_event(timeout=0.05)
                    joined += isinstance(event, LegJoined)
                    if isinstance(event, LegJoined):
                        if not long_leg:
                            long_leg = event.leg_id
                        elif busy and joined % 2:  # every other short call: the bridge hangs up
                            pool.send(HangupLeg(event.leg_id, "stress"))
                    if isinstance(event, LegLeft):
                        left += 1
                        died += event.reason == "worker-died"
                if busy and long_leg and time.monotonic() >= next_text:
                    next_text += 0.5  # chat text to the long call, as the room relays it
                    pool.send(SendSipMessage(leg_id=long_leg, body=f"text {joined}"))
            result = short.wait(30)
            elapsed = time.monotonic() - started
            pids = pool.worker_pids()
            long_call.kill()
        finally:
            pool.stop()
        reports = [e for e in logs if e["event"] == "sip.worker.crash_report"]
    print(f"short calls: {calls} placed at {rate:g}/s (≤ {concurrency} at once, hold {hold_ms} ms)"
          f" in {elapsed:.0f} s next to one long call; SIPp exit {result.returncode}")  # fmt: skip
    print(f"legs joined / left: {joined} / {left}; legs lost to a worker death: {died}")
    print(f"worker pid at start {first_pid}, at end {pids[0]}: "
          f"{'SAME (no crash)' if pids[0] == first_pid else 'RESTARTED'}")
    print(f"PYTHONMALLOC={os.environ.get('PYTHONMALLOC', '')}; crash reports: {len(reports)}")
    for report in reports:
        core = report["core_file"] or report["note"]
        print(f"--- worker {report['worker']} pid {report['pid']}: signal {report['signal']} "
              f"exit {report['exitcode']}, core {core}")  # fmt: skip
        print(report["python_stack"][-3000:])
        print(report["native_backtrace"][-3000:])
    print(f"work dir {work}")
    return 1 if reports else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rate", type=float, default=4.0, help="short calls started per second")
    parser.add_argument("--hold-ms", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=3, help="short calls at once, at most")
    parser.add_argument("--core-mb", type=int, default=2048, help="core dump limit (0 = none)")
    parser.add_argument(
        "--busy", action="store_true",
        help="also: the bridge hangs up every other short call itself and sends the long "
        "call a MESSAGE every 0.5 s (as in a node)",
    )  # fmt: skip
    parser.add_argument("--malloc-debug", action="store_true",
                        help="PYTHONMALLOC=debug in the workers (and the mixer)")  # fmt: skip
    args = parser.parse_args()
    raise SystemExit(run(args))
