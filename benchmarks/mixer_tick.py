"""Benchmark: CPU per 20 ms tick of our mixer, a naive loop, pjmedia.

Run ``python -m benchmarks.mixer_tick`` from the repo root.

Cases: (a) 1 conference × 10 legs, (b) 1 × 200, (c) 100 × 10, each at 16 and 48 kHz.

* **ours** — :meth:`MixerNode.tick`: read every leg's input ring, mix-minus, talker
  detection, write every output ring, heartbeat. The bench plays the workers' part
  (writing one speech frame per leg per tick into the rings) *outside* the timed region
  and measures the mixer thread's CPU time (``time.thread_time``) over many ticks; the
  figure is the median of several rounds.
* **naive** — the obvious per-listener Python loop: for each listener, add up every other
  leg's frame with numpy, clip, store (O(N²) vector operations per conference).
* **pjmedia** — PJSIP's C conference bridge (our pjproject build, docs/pjsip.md), null audio device,
  the same number of ports in the same conference layout, each port a C tone generator
  connected to every other port of its conference (see :mod:`benchmarks.mixer_pjmedia`); CPU
  of its clock thread per tick, measured in a child process over a few seconds.

Percentages are of one core for one 20 ms tick. Targets: (c) at 16 kHz under 10 %, and
ours ≤ 1.0× pjmedia for the same legs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mixer.frames import TICK_SECONDS, frame_samples
from mixer.node import MixerNode
from mixer.rings import C_IN_W

CASES = (("a", 1, 10), ("b", 1, 200), ("c", 100, 10))
RATES = (16000, 48000)


@dataclass(frozen=True, slots=True)
class Row:
    case: str
    rate: int
    ours_us: float
    naive_us: float
    pjmedia_us: float | None
    pjmedia_saturated: bool


def speech_signal(rate: int, seconds: float = 6.0) -> NDArray[np.int16]:
    """Real speech if espeak-ng and sox exist, else a voiced-like synthetic signal."""
    if shutil.which("espeak-ng") and shutil.which("sox"):
        with tempfile.TemporaryDirectory() as tmp:
            raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
            text = "The mixer adds every other voice and never your own, twenty ms at a time."
            subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
            subprocess.run(
                ["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out)],
                check=True,
                capture_output=True,
            )
            with wave.open(str(out), "rb") as w:
                x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16)
    else:
        t = np.arange(int(rate * seconds)) / rate
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
        x = (3000 * envelope * np.sin(2 * np.pi * 180 * t)).astype(np.int16)
    reps = int(np.ceil(rate * seconds / len(x)))
    return np.tile(x, reps)[: int(rate * seconds)]


def legs_frames(rate: int, legs: int, ticks: int) -> NDArray[np.int16]:
    """(ticks, legs, frame) speech frames, each leg time-shifted so several talk at once."""
    f = frame_samples(rate)
    x = speech_signal(rate)
    total = len(x) // f
    frames = x[: total * f].reshape(total, f)
    shifts = (np.arange(legs) * 37) % total
    idx = (np.arange(ticks)[:, None] + shifts[None, :]) % total
    out: NDArray[np.int16] = frames[idx]
    return out


def bench_ours(confs: int, size: int, rate: int, ticks: int = 250, rounds: int = 5) -> float:
    """Median µs of mixer-thread CPU per tick of MixerNode.tick()."""
    legs = confs * size
    frames = legs_frames(rate, legs, ticks)
    f = frame_samples(rate)
    with MixerNode(f"mixbench-{uuid.uuid4().hex[:8]}", legs, depth=8, reserve=1) as node:
        slots = np.array(
            [node.add_leg(c, rate).slot for c in range(confs) for _ in range(size)], dtype=np.intp
        )
        seg = node.rings._seg  # the bench plays the workers: direct ring writes, not timed
        depth = node.rings.depth
        results = []
        for _ in range(rounds):
            spent = 0.0
            for t in range(ticks):
                w = seg.ctrl[slots, C_IN_W]
                seg.inp[slots * depth + (w % depth), :f] = frames[t]
                seg.ctrl[slots, C_IN_W] = w + 1
                t0 = time.thread_time()
                node.tick()
                spent += time.thread_time() - t0
            results.append(spent / ticks * 1e6)
    return statistics.median(results)


def bench_naive(confs: int, size: int, rate: int) -> float:
    """µs per tick of a per-listener Python loop over numpy frames (O(N²) per conference)."""
    legs = confs * size
    ticks = max(3, min(50, 20000 // (confs * size * size)))
    frames = legs_frames(rate, legs, ticks).astype(np.float32)
    gains = np.ones(legs, dtype=np.float32)
    out = np.zeros((legs, frame_samples(rate)), dtype=np.int16)
    t0 = time.thread_time()
    for t in range(ticks):
        for c in range(confs):
            members = range(c * size, (c + 1) * size)
            for listener in members:
                acc = np.zeros(frame_samples(rate), dtype=np.float32)
                for talker in members:
                    if talker != listener:
                        acc += frames[t, talker] * gains[talker]
                out[listener] = np.clip(acc, -32768, 32767)
    return (time.thread_time() - t0) / ticks * 1e6


def bench_pjmedia(confs: int, size: int, rate: int, seconds: float) -> tuple[float | None, bool]:
    """(µs per tick of pjmedia's clock thread, whether it was saturated) or (None, False)."""
    sizes = ",".join([str(size)] * confs)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.mixer_pjmedia", sizes, str(rate), str(seconds)],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"  pjmedia run failed: {exc}", file=sys.stderr)
        return None, False
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            us = float(json.loads(line[7:])["us_per_tick"])
            return us, us > 0.95 * TICK_SECONDS * 1e6
    print(f"  pjmedia run failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
    return None, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="pjmedia measuring time")
    parser.add_argument("--no-pjmedia", action="store_true", help="skip the pjmedia runs")
    args = parser.parse_args()
    rows = []
    for rate in RATES:
        for case, confs, size in CASES:
            ours = bench_ours(confs, size, rate)
            naive = bench_naive(confs, size, rate)
            pj, saturated = (
                (None, False) if args.no_pjmedia else bench_pjmedia(confs, size, rate, args.seconds)
            )
            rows.append(Row(case, rate, ours, naive, pj, saturated))
            print_row(rows[-1], header=len(rows) == 1)
    print()
    print("ours = MixerNode.tick (rings in + mix-minus + talker + rings out), mixer thread CPU;")
    print("pjmedia = its conference bridge's clock thread CPU, tone-generator ports, full mesh")
    print("per conference; '≥' marks a pjmedia run that could not keep up (>95 % busy).")


def pct(us: float) -> str:
    return f"{us / (TICK_SECONDS * 1e6) * 100:6.1f}%"


def print_row(row: Row, *, header: bool) -> None:
    label = {"a": "1 x 10", "b": "1 x 200", "c": "100 x 10"}[row.case]
    if header:
        print(
            f"{'case':<4}{'legs':>10}{'rate':>7} | {'ours µs':>9}{'core':>8} | {'naive µs':>10}"
            f"{'core':>8} | {'pjmedia µs':>11}{'core':>8} | {'ours/pjmedia':>12}"
        )
        print("-" * 98)
    if row.pjmedia_us is None:
        pj, ratio = f"{'n/a':>11}{'':>8}", f"{'n/a':>12}"
    else:
        mark = "≥" if row.pjmedia_saturated else " "
        pj = f"{mark}{row.pjmedia_us:>10.0f}{pct(row.pjmedia_us):>8}"
        ratio = f"{row.ours_us / row.pjmedia_us:>11.2f}x"
    ours = f"{row.ours_us:>9.0f}{pct(row.ours_us):>8}"
    naive = f"{row.naive_us:>10.0f}{pct(row.naive_us):>8}"
    print(
        f"({row.case}) {label:>10}{row.rate // 1000:>5}k | {ours} | {naive} | {pj} | {ratio}",
        flush=True,
    )


if __name__ == "__main__":
    main()
