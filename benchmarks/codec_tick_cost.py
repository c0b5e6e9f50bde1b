"""What one call costs a worker's media tick, per codec: opus (48 kHz) against G.711 (8 kHz).

A worker's media clock does every leg's audio work in one pass per 20 ms (jitter buffer,
decode, resampling to and from the 48 kHz bridge, our FramePort callbacks, encode, RTP
send); the pass must end well before the mixer ticks ``mixer_phase_ms`` (10 ms) later, so
the time per leg sets how many calls a worker may carry. This starts one worker, dials
``--callers`` baresip callers with one codec, then the other, and prints the tick time from
the worker's own counters (``WorkerStats.clock_busy_s``), with and without the callers.

    PYTHONPATH=. python benchmarks/codec_tick_cost.py --callers 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bridge.config import LogSettings, SipSettings, WorkerSettings
from bridge.core.admission import RoomDirectory
from bridge.devstack.ports import free_udp_tcp_port
from bridge.sip import devpeers as dp
from bridge.sip.pool import WorkerPool


def tick_ms(pool: WorkerPool, seconds: float) -> float:
    """Average busy time of worker 0's media tick over ``seconds``, in ms."""
    time.sleep(2.5)  # a fresh stats report
    a = pool.worker_stats()[0]
    time.sleep(seconds)
    b = pool.worker_stats()[0]
    return (b.clock_busy_s - a.clock_busy_s) / max(1, b.clock_ticks - a.clock_ticks) * 1000


def measure(codec: str, n: int, seconds: float, work: Path) -> tuple[float, float]:
    sip = SipSettings(port=free_udp_tcp_port(), rtp_port_start=30000 + free_udp_tcp_port() % 20000,
                      rtp_port_count=400)  # fmt: skip
    pool = WorkerPool(
        sip,
        WorkerSettings(pool_size=1, calls_per_worker=n + 4, media_timeout=0, stats_interval=1.0),
        LogSettings(format="console", level="warning"),  # type: ignore[arg-type]
        directory=RoomDirectory.create(["load"]),
    )
    pool.start()
    callers: list[dp.Baresip] = []
    try:
        idle = tick_ms(pool, seconds)
        rate = 48000 if codec == "opus" else 8000
        voice = dp.speech("the quick brown fox jumps over the lazy dog. " * 4, rate, work)
        wav = work / f"{codec}.wav"
        dp.write_wav(wav, np.tile(voice, 3), rate, channels=2 if codec == "opus" else 1)
        for i in range(n):
            bs = dp.Baresip(work / f"{codec}-{i}", wav, codecs=(codec,))
            bs.start(f"sip:load@127.0.0.1:{pool.front_port}", int(seconds + 30))
            callers.append(bs)
        deadline = time.monotonic() + 30
        while len(pool.legs()) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        if len(pool.legs()) < n:
            raise SystemExit(f"only {len(pool.legs())} of {n} {codec} callers came up")
        busy = tick_ms(pool, seconds)
        return idle, busy
    finally:
        for bs in callers:
            bs.stop()
        pool.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--callers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="codec-cost-"))
    rows = []
    for codec in ("g711", "opus"):
        idle, busy = measure(codec, args.callers, args.seconds, work)
        per_leg = (busy - idle) / args.callers * 1000
        rows.append((codec, idle, busy, per_leg))
        print(f"{codec}: tick {idle:.2f} ms idle, {busy:.2f} ms with {args.callers} callers "
              f"= {per_leg:.0f} µs per leg per tick")  # fmt: skip
    g711, opus = rows[0][3], rows[1][3]
    print(f"opus / G.711 per leg: {opus / max(g711, 1e-9):.2f}×; at a 10 ms phase with a 3 ms "
          f"margin a worker fits ≈ {7000 / g711:.0f} G.711 or ≈ {7000 / opus:.0f} opus legs")


if __name__ == "__main__":
    main()
