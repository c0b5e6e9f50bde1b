"""SIP node capacity: N concurrent SIPp callers through the front, pool and mixer.

Prints: calls up, CPU per call (workers + supervisor/mixer process), lost/late frames
(mixer ring counters of every leg + mixer clock), and the added mouth-to-ear latency
measured from the audio: a probe caller plays 100 ms tone bursts into a separate room,
a second probe listens; a packet sniffer on ``lo`` (AF_PACKET, needs root) timestamps
the bursts' onsets in the RTP going into the bridge and coming out to the listener.

    python benchmarks/sip_capacity.py --calls 60 --seconds 20
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from bridge.config import LogSettings, SipSettings, WorkerSettings
from bridge.devstack.ports import free_port, free_udp_tcp_port
from bridge.sip import devpeers as dp
from bridge.sip.admission import RoomDirectory
from bridge.sip.pool import WorkerPool

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def _ulaw_decode(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, np.uint8).astype(np.int32) & 0xFF
    sign, exp, mant = u & 0x80, (u >> 4) & 7, u & 0x0F
    mag = ((mant << 3) + 0x84) << exp
    return np.where(sign, 0x84 - mag, mag - 0x84)


class Sniffer(threading.Thread):
    """Timestamps RTP packets (PCMU) to or from given UDP ports on the loopback device."""

    def __init__(self, src_ports: set[int], dst_ports: set[int]) -> None:
        super().__init__(daemon=True)
        self.src_ports, self.dst_ports = src_ports, dst_ports
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.packets: list[tuple[float, int, int, float]] = []  # t, sport, dport, rms
        self.stop_flag = False

    def run(self) -> None:
        while not self.stop_flag:
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            t = time.perf_counter()
            if addr[2] == PACKET_OUTGOING or len(data) < 14 + 20 + 8 + 12:
                continue
            if data[12:14] != b"\x08\x00" or data[14 + 9] != 17:
                continue
            ihl = (data[14] & 0x0F) * 4
            sport, dport = struct.unpack("!HH", data[14 + ihl : 14 + ihl + 4])
            if sport not in self.src_ports and dport not in self.dst_ports:
                continue
            rtp = data[14 + ihl + 8 :]
            if len(rtp) < 12 + 160 or rtp[1] & 0x7F != 0:
                continue
            pcm = _ulaw_decode(rtp[12 : 12 + 160]).astype(np.float64)
            self.packets.append((t, sport, dport, float(np.sqrt(np.mean(pcm * pcm)))))


def onsets(times: list[float], levels: list[float], threshold: float = 1500.0) -> list[float]:
    """Times where the level rises above ``threshold`` after ≥ 300 ms below it."""
    out, quiet_since = [], -1.0
    for t, lv in zip(times, levels, strict=True):
        if lv >= threshold:
            if quiet_since >= 0 and t - quiet_since >= 0.3:
                out.append(t)
            quiet_since = -1.0
        elif quiet_since < 0:
            quiet_since = t
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--calls-per-worker", type=int, default=4)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sip-bench-"))
    speech = dp.speech("the quick brown fox jumps over the lazy dog. " * 2, 8000, work)
    hold = args.seconds + 6
    reps = math.ceil(hold / (len(speech) / 8000)) + 1
    dp.write_rtp_pcap(work / "load.pcap", np.tile(speech, reps))
    t = np.arange(800) / 8000
    burst = (np.sin(2 * np.pi * 1000 * t) * 12000).astype(np.int16)
    period = np.concatenate([burst, np.zeros(8000 - 800, np.int16)])
    dp.write_rtp_pcap(work / "bursts.pcap", np.tile(period, int(hold) + 2))
    dp.write_rtp_pcap(work / "silence.pcap", np.zeros(int(8000 * (hold + 2)), np.int16))

    cpw = args.calls_per_worker
    legs = args.calls + 2
    pool_size = 1 + math.ceil(max(0, legs - (cpw - 1)) / cpw)
    sip = SipSettings(
        port=free_udp_tcp_port(), rtp_port_start=24000, rtp_port_count=8 * cpw * pool_size + 64
    )
    ws = WorkerSettings(pool_size=pool_size, calls_per_worker=cpw, media_timeout=0)
    pool = WorkerPool(
        sip,
        ws,
        LogSettings(format="console", level="warning"),  # type: ignore[arg-type]
        directory=RoomDirectory.create(["load", "probe"]),
    )
    t0 = time.monotonic()
    pool.start()
    print(f"pool: {pool_size} workers (front + {pool_size - 1}), started in "
          f"{time.monotonic() - t0:.1f}s")  # fmt: skip
    hold_ms = int(hold * 1000)
    p1_port, p2_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    sniffer = Sniffer({p1_port}, {p2_port})
    sniffer.start()
    load = dp.Sipp(
        dp.sipp_uac_scenario("load", pcap=work / "load.pcap", hold_ms=hold_ms),
        pool.front_port, work / "load", calls=args.calls, rate=20, limit=args.calls,
        timeout_s=int(hold + 60),
    )  # fmt: skip
    p2 = dp.Sipp(
        dp.sipp_uac_scenario("probe", pcap=work / "silence.pcap", hold_ms=hold_ms + 1500),
        pool.front_port, work / "p2", media_port=p2_port, timeout_s=int(hold + 60),
    )  # fmt: skip
    p1 = dp.Sipp(
        dp.sipp_uac_scenario("probe", pcap=work / "bursts.pcap", hold_ms=hold_ms),
        pool.front_port, work / "p1", media_port=p1_port, timeout_s=int(hold + 60),
    )  # fmt: skip
    load.start()
    p2.start()
    time.sleep(0.5)
    p1.start()
    deadline = time.monotonic() + 60
    while len(pool.legs()) < legs and time.monotonic() < deadline:
        time.sleep(0.2)
    up = len(pool.legs())
    print(f"calls up: {up} of {legs} ({args.calls} load + 2 probes)")
    time.sleep(2.0)
    procs = [psutil.Process(pid) for pid in pool.worker_pids()] + [psutil.Process(os.getpid())]
    cpu0 = [p.cpu_times() for p in procs]
    w0 = time.monotonic()
    time.sleep(args.seconds)
    wall = time.monotonic() - w0
    cpu1 = [p.cpu_times() for p in procs]
    busy = [(b.user + b.system - a.user - a.system) / wall for a, b in zip(cpu0, cpu1, strict=True)]
    node = pool._owned_mixer  # the benchmark reads the mixer's ring counters
    assert node is not None
    totals = dict.fromkeys(("in_underruns", "in_dropped", "in_torn", "out_underruns",
                            "out_repeats", "out_dropped", "out_torn"), 0)  # fmt: skip
    frames = 0
    for rec in pool.legs().values():
        c = node.counters(rec.slot)
        frames += c.in_frames
        for k in totals:
            totals[k] += getattr(c, k)
    clock = node.clock_stats()
    for s in (load, p1, p2):
        s.wait(hold + 90)
    sniffer.stop_flag = True
    sniffer.join(2)
    pool.stop()
    workers_cpu = sum(busy[:-1])
    print(f"CPU: workers {workers_cpu * 100:.0f}% of one core, supervisor+mixer "
          f"{busy[-1] * 100:.0f}%; total {sum(busy) * 100:.0f}% = "
          f"{sum(busy) / 2 * 100:.0f}% of this 2-core box; "
          f"{sum(busy) / max(1, up) * 100:.2f}% of a core per call")  # fmt: skip
    print(f"frames through rings: {frames}; ring counters: {totals}")
    if clock:
        late_ms = clock.max_lateness_s * 1000
        print(f"mixer clock: ticks={clock.ticks} late={clock.late} skipped={clock.skipped} "
              f"max_lateness={late_ms:.1f}ms realtime={clock.realtime}")  # fmt: skip
    inbound = [(t, lv) for t, sp, _dp, lv in sniffer.packets if sp == p1_port]
    outbound = [(t, lv) for t, _sp, dpt, lv in sniffer.packets if dpt == p2_port]
    a = onsets([t for t, _ in inbound], [lv for _, lv in inbound])
    b = onsets([t for t, _ in outbound], [lv for _, lv in outbound])
    lat = []
    for ta in a:
        later = [tb - ta for tb in b if 0 <= tb - ta < 0.5]
        if later:
            lat.append(later[0] * 1000)
    if lat:
        arr = np.array(lat)
        print(f"added latency wire→wire (probe RTP in → RTP out, {len(lat)} bursts): "
              f"median {np.median(arr):.0f} ms, p90 {np.percentile(arr, 90):.0f} ms, "
              f"max {arr.max():.0f} ms")  # fmt: skip
    else:
        print(f"latency: no burst matched (in {len(a)} onsets, out {len(b)} onsets)")
    print(f"load sipp rc={load.proc.returncode if load.proc else None}, "
          f"load avg now {os.getloadavg()}")  # fmt: skip


if __name__ == "__main__":
    main()
