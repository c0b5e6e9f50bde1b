"""SIP node capacity: N concurrent SIPp callers through the front, pool and mixer.

Configurations, in one invocation and under the same conditions: the *old layout* (4 calls
per worker process, what the PyPI pjsua2 wheel allowed) and the *new layout* (64 calls per
worker, our PJSIP build) at ``--calls`` callers, then the new layout at each of ``--scale``
(100, 150, 200 by default). For each it prints:

* callers held (legs up when the window starts and still up when it ends);
* lost/late frames in the measurement window: mixer ring counters of every leg, both
  directions (under-runs, drops, torn reads, repeats), late/skipped ticks of the mixer clock
  and of the workers' media clocks, pjmedia jitter buffer empty/lost/discarded frames;
* CPU per call: workers + supervisor/mixer process, per leg (SIPp is reported apart);
* added mouth-to-ear latency measured from the audio: a probe caller plays 100 ms
  1 kHz bursts into a separate room, a second probe (on another worker) listens; a packet
  capture on ``lo`` (AF_PACKET in a child process, kernel BPF filter, kernel timestamps,
  needs root) finds each burst's onset in the RTP going into the bridge and in the RTP
  coming out to the listener: p50/p90/max over the bursts;
* memory: resident set of the workers (sum) and of the supervisor+mixer process;
* load average before and after, and the CPU that *other* processes used during the
  window (this machine is shared: compare runs only at similar foreign load).

    PYTHONPATH=. python benchmarks/sip_capacity.py                     # 60 old/new, 100-200 new
    PYTHONPATH=. python benchmarks/sip_capacity.py --scale "" --repeat 2
    PYTHONPATH=. python benchmarks/sip_capacity.py --mode new --calls 80 --scale ""
    PYTHONPATH=. python benchmarks/sip_capacity.py --mode new+native --scale "" --repeat 2
    PYTHONPATH=. python benchmarks/sip_capacity.py --mode new+native --scale "" --repeat 5 \
        --calls 200 --narrowband 0,all --native-rate 16000,8000   # narrowband workers on/off

``native`` runs the same SIPp load callers against one plain pjsua2 process that mixes them
in pjmedia's own conference bridge (``benchmarks/native_conference.py``: same PJSIP build
and codecs, 16 kHz bridge, full mesh) and prints ours ÷ native CPU per call.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import math
import multiprocessing
import os
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import psutil

from bridge.config import LogSettings, SipSettings, WorkerSettings
from bridge.core.admission import RoomDirectory
from bridge.devstack.ports import free_port, free_udp_tcp_port
from bridge.sip import devpeers as dp
from bridge.sip.pool import WorkerPool
from bridge.sip.protocol import WorkerStats

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS

OLD_CALLS_PER_WORKER = 4  # PJSUA_MAX_CALLS of the PyPI pjsua2 wheel
NATIVE_REFERENCE_RATE = 16000  # the C floor: pjmedia's bridge at 16 kHz


def _realtime(pid: int, priority: int) -> None:
    """SCHED_FIFO for every thread of ``pid`` (SIPp: callers must not starve on a shared box)."""
    if not priority:
        return
    try:
        tids = [t.id for t in psutil.Process(pid).threads()]
    except psutil.Error:
        return
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))


def _ulaw_decode(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, np.uint8).astype(np.int32) & 0xFF
    sign, exp, mant = u & 0x80, (u >> 4) & 7, u & 0x0F
    mag = ((mant << 3) + 0x84) << exp
    return np.where(sign, 0x84 - mag, mag - 0x84)


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]  # fmt: skip


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _bpf(src_port: int, dst_port: int) -> tuple[bytes, object]:
    """Classic BPF: IPv4/UDP with source port ``src_port`` or destination ``dst_port``."""
    prog = [
        (0x28, 0, 0, 12), (0x15, 0, 8, 0x0800),  # ethertype IPv4
        (0x30, 0, 0, 23), (0x15, 0, 6, 17),  # UDP
        (0xB1, 0, 0, 14),  # x = IP header length
        (0x48, 0, 0, 14), (0x15, 2, 0, src_port),  # sport
        (0x48, 0, 0, 16), (0x15, 0, 1, dst_port),  # dport
        (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0),
    ]  # fmt: skip
    arr = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), ctypes.cast(arr, ctypes.POINTER(_SockFilter)))
    return bytes(fprog), arr  # keep arr alive while the option is set


def sniff(src_port: int, dst_port: int, conn: Connection) -> None:
    """Child process: kernel-timestamped RTP levels of the probe streams until told to stop."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
    prog, keep = _bpf(src_port, dst_port)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("lo", 0))
    sock.settimeout(0.2)
    packets: list[tuple[float, int, int, float]] = []
    conn.send("ready")
    while not conn.poll():
        try:
            data, anc, _flags, addr = sock.recvmsg(2048, 64)
        except TimeoutError:
            continue
        if addr[2] == PACKET_OUTGOING or len(data) < 14 + 20 + 8 + 12 + 160:
            continue
        t = time.time()
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", cdata[:16])
                t = sec + nsec / 1e9
        ihl = (data[14] & 0x0F) * 4
        sport, dport = struct.unpack("!HH", data[14 + ihl : 14 + ihl + 4])
        rtp = data[14 + ihl + 8 :]
        if rtp[1] & 0x7F != 0:
            continue
        pcm = _ulaw_decode(rtp[12 : 12 + 160]).astype(np.float64)
        packets.append((t, sport, dport, float(np.sqrt(np.mean(pcm * pcm)))))
    del keep
    conn.send(packets)


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


RING_KEYS = ("in_underruns", "in_dropped", "in_torn", "out_underruns", "out_repeats",
             "out_dropped", "out_torn")  # fmt: skip


@dataclass
class Result:
    name: str
    legs: int
    up: int = 0
    held: int = 0
    cpu_bridge: float = 0.0  # fraction of one core
    cpu_workers: float = 0.0
    cpu_super: float = 0.0
    cpu_sipp: float = 0.0
    cpu_others: float = 0.0
    ring: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    mixer_late: int = 0
    mixer_skipped: int = 0
    mixer_max_late_ms: float = 0.0
    worker_late: int = 0
    worker_skipped: int = 0
    worker_max_late_ms: float = 0.0
    jb_empty: int = 0
    jb_lost: int = 0
    jb_discard: int = 0
    jb_delay_ms: float = 0.0
    lat: list[float] = field(default_factory=list)
    onsets_in: int = 0
    onsets_out: int = 0
    probe_workers: tuple[int, ...] = ()
    workers: int = 0
    tick_avg_ms: float = 0.0  # a worker's media tick: every leg's pjmedia + FramePort work
    tick_max_ms: float = 0.0
    rss_workers_mb: float = 0.0
    rss_super_mb: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    host_stalls: dict[int, int] = field(default_factory=dict)  # ms threshold → wake-ups
    host_max_ms: float = float("nan")
    steal: float = 0.0  # fraction of one core taken by the hypervisor
    rep: int = 0  # which repetition (ours ÷ native pairs runs of the same repetition)

    @property
    def lost(self) -> int:
        """Frames that did not reach the mix or the listener on time (window)."""
        r = self.ring
        return sum(r.get(k, 0) for k in RING_KEYS if k != "out_repeats") + self.mixer_skipped \
            + self.worker_skipped  # fmt: skip

    def pct(self, q: float) -> float:
        return float(np.percentile(self.lat, q)) if self.lat else float("nan")


def _busy(times: psutil._common.pcputimes | None) -> float:  # type: ignore[name-defined]
    return 0.0 if times is None else times.user + times.system


def _tree_cpu(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            out[pid] = _busy(psutil.Process(pid).cpu_times())
    return out


def _stats_sum(
    stats: dict[int, WorkerStats],
) -> tuple[int, int, int, int, int, float, float, float, int, float]:
    late = sum(s.clock_late for s in stats.values())
    skipped = sum(s.clock_skipped for s in stats.values())
    empty = sum(s.jb_empty for s in stats.values())
    lost = sum(s.jb_lost for s in stats.values())
    discard = sum(s.jb_discard for s in stats.values())
    max_late = max((s.clock_max_lateness_s for s in stats.values()), default=0.0)
    calls = sum(s.calls for s in stats.values())
    delay = sum(s.jb_avg_delay_ms * s.calls for s in stats.values()) / max(1, calls)
    busy = sum(s.clock_busy_s for s in stats.values())
    ticks = sum(s.clock_ticks for s in stats.values())
    max_busy = max((s.clock_max_busy_s for s in stats.values()), default=0.0)
    return late, skipped, empty, lost, discard, max_late, delay, busy, ticks, max_busy


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total / 2**20


def run(
    name: str, calls: int, cpw: int, args: argparse.Namespace, work: Path, *,
    overrides: dict[str, object],
) -> Result:  # fmt: skip
    legs = calls + 2
    res = Result(name, legs)
    pool_size = math.ceil(legs / cpw)  # every worker, the front too, carries cpw calls
    res.workers = pool_size
    rtp_count = 8 * cpw * pool_size + 64
    rtp_start = random.randrange(20000, 60000 - rtp_count, 2)  # others benchmark here too
    sip = SipSettings(
        port=free_udp_tcp_port(), rtp_port_start=rtp_start, rtp_port_count=rtp_count,
        # SIPp is the load, not an attacker; all load callers share one room (the room cap
        # of issue 19, 50 by default, would refuse them: 486, and SIPp aborts every call)
        limits={"trusted_sources": ["127.0.0.1"], "callers_per_room": 0},
    )  # type: ignore[arg-type]  # fmt: skip
    ws = WorkerSettings(
        pool_size=pool_size, calls_per_worker=cpw, media_timeout=0, stats_interval=2.0, **overrides
    )
    narrow = min(ws.narrowband_workers, pool_size)
    print(f"\n=== {name}: {calls} load callers + 2 probes; {pool_size} workers × {cpw} calls "
          f"({narrow} narrowband); "
          f"media_clock={ws.media_clock} ring_reserve={ws.ring_reserve} "
          f"mixer_phase_ms={ws.mixer_phase_ms} jb=({ws.jb_init_ms},{ws.jb_min_pre_ms},"
          f"{ws.jb_max_pre_ms},{ws.jb_max_ms})")  # fmt: skip
    res.load_before = os.getloadavg()
    pool = WorkerPool(
        sip,
        ws,
        LogSettings(format="console", level="warning"),  # type: ignore[arg-type]
        directory=RoomDirectory.create(["load", "probe"]),
    )
    t0 = time.monotonic()
    pool.start()
    print(f"pool started in {time.monotonic() - t0:.1f}s; load avg before {res.load_before}")
    hold = args.seconds + 30  # call set-up is slow on a loaded box: all must outlive the window
    hold_ms = int(hold * 1000)
    p1_port, p2_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    ctx = multiprocessing.get_context("spawn")
    sniff_conn, child_conn = ctx.Pipe()
    sniffer = ctx.Process(target=sniff, args=(p1_port, p2_port, child_conn), daemon=True)
    sniffer.start()
    sniff_conn.recv()
    load = dp.Sipp(
        dp.sipp_uac_scenario("load", pcap=work / "load.pcap", hold_ms=hold_ms),
        pool.front_port, work / name / "load", calls=calls, rate=20, limit=calls,
        timeout_s=int(hold + 60),
    )  # fmt: skip
    p2 = dp.Sipp(
        dp.sipp_uac_scenario("probe", pcap=work / "silence.pcap", hold_ms=hold_ms + 1500),
        pool.front_port, work / name / "p2", media_port=p2_port, timeout_s=int(hold + 60),
    )  # fmt: skip
    p1 = dp.Sipp(
        dp.sipp_uac_scenario("probe", pcap=work / "bursts.pcap", hold_ms=hold_ms),
        pool.front_port, work / name / "p1", media_port=p1_port, timeout_s=int(hold + 60),
    )  # fmt: skip
    for sp, pause in ((p2, 0.3), (load, 0.5), (p1, 0.0)):
        sp.start()
        assert sp.proc is not None
        _realtime(sp.proc.pid, args.sipp_priority)  # threads started later inherit it
        time.sleep(pause)
    deadline = time.monotonic() + 60
    while len(pool.legs()) < legs and time.monotonic() < deadline:
        for sp in (load, p1, p2):
            if sp.proc is not None:
                _realtime(sp.proc.pid, args.sipp_priority)
        time.sleep(0.2)
    res.up = len(pool.legs())
    probes = [r.worker for r in pool.legs().values() if r.room == "probe"]
    res.probe_workers = tuple(probes)
    print(f"calls up: {res.up} of {legs}; probe legs on workers {probes}")
    time.sleep(2.5)  # let the jitter buffers settle and a stats report arrive

    node = pool._owned_mixer  # the benchmark reads the mixer's ring counters
    assert node is not None
    legs0 = pool.legs()
    # the mixer runs in its own process: count it with the supervisor (the last entry)
    bridge_pids = [p for p in pool.worker_pids() if p] + [node.pid, os.getpid()]
    sipp_pids = [s.proc.pid for s in (load, p1, p2) if s.proc is not None]
    ours = bridge_pids + sipp_pids + [sniffer.pid or 0]
    c0 = {slot: node.counters(slot) for slot in (r.slot for r in legs0.values())}
    clk0 = node.clock_stats()
    st0 = _stats_sum(pool.worker_stats())
    stalls = HostStallProbe(args.seconds)
    cpu0, sys0, w0 = _tree_cpu(ours), psutil.cpu_times(), time.monotonic()
    time.sleep(args.seconds)
    cpu1, sys1, wall = _tree_cpu(ours), psutil.cpu_times(), time.monotonic() - w0
    res.rss_workers_mb = _rss_mb(bridge_pids[:-1])
    res.rss_super_mb = _rss_mb(bridge_pids[-1:])
    res.host_stalls, res.host_max_ms = stalls.result()
    res.steal = (getattr(sys1, "steal", 0.0) - getattr(sys0, "steal", 0.0)) / wall
    clk1 = node.clock_stats()
    legs1 = pool.legs()
    res.held = len(set(legs0) & set(legs1))
    totals = dict.fromkeys(RING_KEYS, 0)
    for slot, a in c0.items():
        b = node.counters(slot)
        res.frames += b.in_frames - a.in_frames
        for k in RING_KEYS:
            totals[k] += getattr(b, k) - getattr(a, k)
    res.ring = totals
    if clk0 and clk1:
        res.mixer_late = clk1.late - clk0.late
        res.mixer_skipped = clk1.skipped - clk0.skipped
        res.mixer_max_late_ms = clk1.max_lateness_s * 1000
    time.sleep(2.2)  # one more worker stats report, covering the end of the window
    st1 = _stats_sum(pool.worker_stats())
    res.worker_late, res.worker_skipped = st1[0] - st0[0], st1[1] - st0[1]
    res.jb_empty, res.jb_lost, res.jb_discard = st1[2] - st0[2], st1[3] - st0[3], st1[4] - st0[4]
    res.worker_max_late_ms, res.jb_delay_ms = st1[5] * 1000, st1[6]
    res.tick_avg_ms = (st1[7] - st0[7]) / max(1, st1[8] - st0[8]) * 1000
    res.tick_max_ms = st1[9] * 1000

    def delta(pids: list[int]) -> float:
        return sum(cpu1.get(p, 0.0) - cpu0.get(p, 0.0) for p in pids if p in cpu0) / wall

    res.cpu_workers = delta(bridge_pids[:-2])
    res.cpu_super = delta(bridge_pids[-2:])
    res.cpu_bridge = res.cpu_workers + res.cpu_super
    res.cpu_sipp = delta(sipp_pids)
    all_busy = (sys1.user + sys1.system + sys1.nice + sys1.irq + sys1.softirq
                - sys0.user - sys0.system - sys0.nice - sys0.irq - sys0.softirq) / wall  # fmt: skip
    res.cpu_others = max(0.0, all_busy - delta(ours))
    res.load_after = os.getloadavg()

    sniff_conn.send("stop")
    packets: list[tuple[float, int, int, float]] = sniff_conn.recv()
    sniffer.join(5)
    pool.stop()  # BYE to every caller; the callers' own BYE would come ~30 s later
    for sp in (load, p1, p2):
        sp.kill()
    inbound = [(t, lv) for t, sp, _dp, lv in packets if sp == p1_port]
    outbound = [(t, lv) for t, _sp, dpt, lv in packets if dpt == p2_port]
    a = onsets([t for t, _ in inbound], [lv for _, lv in inbound])
    b = onsets([t for t, _ in outbound], [lv for _, lv in outbound])
    res.onsets_in, res.onsets_out = len(a), len(b)
    for ta in a:
        later = [tb - ta for tb in b if 0 <= tb - ta < 0.5]
        if later:
            res.lat.append(later[0] * 1000)
    report(res)
    return res


def run_native(args: argparse.Namespace, work: Path, rate: int) -> Result:
    """The same SIPp load callers against one plain pjsua2 process mixing them in pjmedia's
    conference bridge (``benchmarks/native_conference.py``): the C floor for CPU per call.
    No probes (no latency figure) and no rings: only calls held and CPU."""
    from benchmarks.native_conference import serve

    name = "native" if rate == NATIVE_REFERENCE_RATE else f"native {rate // 1000}k"
    res = Result(name, args.calls)
    port = free_udp_tcp_port()
    rtp_count = 4 * args.calls + 64
    rtp_start = random.randrange(20000, 60000 - rtp_count, 2)
    print(f"\n=== native: {args.calls} load callers into one pjsua2 process, pjmedia conference "
          f"bridge at {rate} Hz, quality 4, full mesh")  # fmt: skip
    res.load_before = os.getloadavg()
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(child, port, rtp_start, args.calls),
                       kwargs={"clock_rate": rate},
                       daemon=True)  # fmt: skip
    proc.start()
    if not conn.poll(60):
        raise RuntimeError("the native pjsua2 process did not start")
    conn.recv()

    def count() -> int:
        conn.send("count")
        return int(conn.recv())

    hold = args.seconds + 30
    load = dp.Sipp(
        dp.sipp_uac_scenario("load", pcap=work / "load.pcap", hold_ms=int(hold * 1000)),
        port, work / name / "load", calls=args.calls, rate=20, limit=args.calls,
        timeout_s=int(hold + 60),
    )  # fmt: skip
    load.start()
    assert load.proc is not None
    _realtime(load.proc.pid, args.sipp_priority)
    deadline = time.monotonic() + 60
    while count() < args.calls and time.monotonic() < deadline:
        _realtime(load.proc.pid, args.sipp_priority)
        time.sleep(0.2)
    res.up = count()
    print(f"calls up: {res.up} of {args.calls}")
    time.sleep(2.5)
    pids = [proc.pid or 0]
    sipp_pids = [load.proc.pid]
    ours = pids + sipp_pids
    stalls = HostStallProbe(args.seconds)
    up0 = count()
    cpu0, sys0, w0 = _tree_cpu(ours), psutil.cpu_times(), time.monotonic()
    time.sleep(args.seconds)
    cpu1, sys1, wall = _tree_cpu(ours), psutil.cpu_times(), time.monotonic() - w0
    res.held = min(up0, count())
    res.host_stalls, res.host_max_ms = stalls.result()
    res.steal = (getattr(sys1, "steal", 0.0) - getattr(sys0, "steal", 0.0)) / wall

    def delta(ps: list[int]) -> float:
        return sum(cpu1.get(p, 0.0) - cpu0.get(p, 0.0) for p in ps if p in cpu0) / wall

    res.cpu_workers = delta(pids)
    res.cpu_bridge = res.cpu_workers
    res.cpu_sipp = delta(sipp_pids)
    all_busy = (sys1.user + sys1.system + sys1.nice + sys1.irq + sys1.softirq
                - sys0.user - sys0.system - sys0.nice - sys0.irq - sys0.softirq) / wall  # fmt: skip
    res.cpu_others = max(0.0, all_busy - delta(ours))
    res.load_after = os.getloadavg()
    conn.send("stop")
    proc.join(15)
    if proc.is_alive():
        proc.kill()
    load.kill()
    print(f"callers held: {res.held} of {res.legs}; CPU: pjsua2 process "
          f"{res.cpu_bridge * 100:.0f}% of one core = "
          f"{res.cpu_bridge / max(1, res.held) * 100:.2f}% of a core per call (SIPp "
          f"{res.cpu_sipp * 100:.0f}%, other processes {res.cpu_others * 100:.0f}%)")  # fmt: skip
    return res


class HostStallProbe:
    """The machine's own real-time wake-up latency during the window (``cyclictest``).

    A SCHED_FIFO 98 thread (above every bridge thread) asks to wake every millisecond; how
    late it wakes is what the kernel and the hypervisor do to any real-time thread, ours
    included. A stall longer than a ring's slack loses a frame whatever the bridge does.
    """

    THRESHOLDS_MS = (5, 10, 20)

    def __init__(self, seconds: float) -> None:
        self.proc: subprocess.Popen[str] | None = None
        if shutil.which("cyclictest") is None:
            print("cyclictest not installed (Debian rt-tests): no host stall figures")
            return
        self.proc = subprocess.Popen(
            ["cyclictest", "-m", "-q", "-p", "98", "-t", "1", "-i", "1000",
             "-D", str(max(1, round(seconds))), "-h", "60000"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    def result(self) -> tuple[dict[int, int], float]:
        if self.proc is None:
            return {}, float("nan")
        out, _ = self.proc.communicate(timeout=30)
        counts = dict.fromkeys(self.THRESHOLDS_MS, 0)
        worst = float("nan")
        for line in out.splitlines():
            if line[:1].isdigit():
                us, n = (int(x) for x in line.split()[:2])
                for ms in self.THRESHOLDS_MS:
                    counts[ms] += n if us >= ms * 1000 else 0
            elif line.startswith("# Max Latencies:"):
                worst = int(line.split(":")[1]) / 1000
        return counts, worst


def report(r: Result) -> None:
    print(f"callers held: {r.held} of {r.legs} legs ({r.up} up at the start of the window)")
    print(f"CPU: workers {r.cpu_workers * 100:.0f}% of one core, supervisor+mixer "
          f"{r.cpu_super * 100:.0f}%; bridge {r.cpu_bridge * 100:.0f}% = "
          f"{r.cpu_bridge / 2 * 100:.0f}% of this 2-core box; "
          f"{r.cpu_bridge / max(1, r.held) * 100:.2f}% of a core per call "
          f"(SIPp {r.cpu_sipp * 100:.0f}%, other processes {r.cpu_others * 100:.0f}%)")  # fmt: skip
    print(f"frames through rings: {r.frames}; ring counters (window): {r.ring}")
    print(f"mixer clock: late={r.mixer_late} skipped={r.mixer_skipped} "
          f"max lateness {r.mixer_max_late_ms:.1f} ms (whole run); worker media clocks: "
          f"late={r.worker_late} skipped={r.worker_skipped} max lateness "
          f"{r.worker_max_late_ms:.1f} ms")  # fmt: skip
    print(f"worker media tick (every leg's audio work in one worker): average "
          f"{r.tick_avg_ms:.2f} ms, longest {r.tick_max_ms:.1f} ms (whole run)")  # fmt: skip
    print(f"pjmedia jitter buffers (window): empty={r.jb_empty} lost={r.jb_lost} "
          f"discarded={r.jb_discard}, average delay {r.jb_delay_ms:.0f} ms")  # fmt: skip
    if r.lat:
        print(f"added latency wire→wire (probe RTP in → RTP out, {len(r.lat)} bursts): "
              f"p50 {r.pct(50):.0f} ms, p90 {r.pct(90):.0f} ms, "
              f"max {max(r.lat):.0f} ms")  # fmt: skip
    else:
        print(f"latency: no burst matched (in {r.onsets_in} onsets, out {r.onsets_out} onsets)")
    stalls = ", ".join(f"≥{ms} ms: {n}" for ms, n in r.host_stalls.items())
    print(f"host real-time wake-up stalls (cyclictest, 1 kHz, window): {stalls or 'n/a'}; "
          f"max {r.host_max_ms:.1f} ms; hypervisor steal {r.steal * 100:.1f}% of a core")
    print(f"memory: workers {r.rss_workers_mb:.0f} MB RSS in {r.workers} processes, "
          f"supervisor+mixer {r.rss_super_mb:.0f} MB")  # fmt: skip
    print(f"load avg before {r.load_before}, after {r.load_after}")


def summary(results: list[Result]) -> None:
    print("\n" + "=" * 100)
    print(f"{'config':<12} {'wk':>3} {'held':>9} {'lost':>5} {'lost %':>6} {'late tk':>7} "
          f"{'jb empty':>8} {'tick ms':>9} {'cpu/call':>8} {'bridge':>7} {'RSS MB':>6} "
          f"{'p50 ms':>6} {'p90 ms':>6} {'max ms':>6} {'others':>6} {'stall≥10':>8} {'max st':>6} "
          f"{'load before':>16}")  # fmt: skip
    for r in results:
        lb = "/".join(f"{x:.1f}" for x in r.load_before)
        lost_pct = 100 * r.lost / max(1, 2 * r.frames)
        rss = r.rss_workers_mb + r.rss_super_mb
        print(f"{r.name:<12} {r.workers:>3} {f'{r.held}/{r.legs}':>9} {r.lost:>5} "
              f"{lost_pct:>5.2f}% "
              f"{r.mixer_late + r.worker_late:>7} {r.jb_empty:>8} "
              f"{f'{r.tick_avg_ms:.1f}/{r.tick_max_ms:.0f}':>9} "
              f"{r.cpu_bridge / max(1, r.held) * 100:>7.2f}% {r.cpu_bridge * 100:>6.0f}% "
              f"{rss:>6.0f} {r.pct(50):>6.0f} {r.pct(90):>6.0f} "
              f"{max(r.lat, default=float('nan')):>6.0f} "
              f"{r.cpu_others * 100:>5.0f}% {r.host_stalls.get(10, 0):>8} "
              f"{r.host_max_ms:>6.1f} {lb:>16}")  # fmt: skip
    print("lost = ring under-runs + drops + torn reads (both directions) + skipped ticks in the "
          "window (lost % of the frames both ways);\nwk = worker processes; RSS = workers + "
          "supervisor/mixer; tick ms = a worker's media tick, average/longest;\n"
          "late tk = mixer + worker clock ticks started > 5 ms late; "
          "others = CPU of processes outside this benchmark (% of one core);\n"
          "stall≥10 / max st = wake-ups of a SCHED_FIFO 98 thread ≥ 10 ms late / the latest, "
          "in ms (cyclictest: the machine itself)")  # fmt: skip
    medians(results)
    natives = [r.cpu_bridge / max(1, r.held) for r in results if r.name == "native" and r.held]
    if natives:
        floor = float(np.median(natives))
        print(f"\nCPU per call ÷ native pjmedia conference (median of {len(natives)} native "
              f"run(s), {floor * 100:.2f}% of a core per call):")  # fmt: skip
        for r in results:
            if not r.name.startswith("native") and r.held:
                print(f"  {r.name:<10} {r.cpu_bridge / r.held / floor:.2f}×")
        print("  (native = one pjsua2 process, no probes; ours carries 2 probe legs more and "
              "counts workers + mixer + supervisor)")


def _per_call(r: Result) -> float:
    return r.cpu_bridge / max(1, r.held)


def _span(values: list[float], fmt: str = "{:.2f}") -> str:
    """median [min–max] of the runs."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "n/a"
    med = fmt.format(float(np.median(vals)))
    if len(vals) == 1:
        return med
    return f"{med} [{fmt.format(min(vals))}–{fmt.format(max(vals))}]"


def medians(results: list[Result]) -> None:
    """Per configuration over the repetitions: median [range] of what the issue targets.
    Ours ÷ native pairs each run with the native run(s) of the same repetition."""
    names = list(dict.fromkeys(f"{r.name}@{r.legs}" for r in results))
    print("\nmedian [range] per configuration over repetitions (n = runs):")
    print(f"{'config':<16} {'n':>2} {'held':>10} {'cpu/call %':>18} {'÷ native':>18} "
          f"{'÷ native 8k':>18} {'lost %':>18} {'p50 ms':>12} {'p90 ms':>12} "
          f"{'cyclictest max ms':>18} {'steal %':>14}")  # fmt: skip
    for key in names:
        runs = [r for r in results if f"{r.name}@{r.legs}" == key]
        ratios: dict[str, list[float]] = {"native": [], "native 8k": []}
        for r in runs:
            for ref, found in ratios.items():
                floor = [_per_call(n) for n in results
                         if n.name == ref and n.rep == r.rep and n.held]  # fmt: skip
                if floor and not r.name.startswith("native"):
                    found.append(_per_call(r) / float(np.median(floor)))
        held = f"{min(r.held for r in runs)}–{max(r.held for r in runs)}/{runs[0].legs}"
        lost = [100 * r.lost / max(1, 2 * r.frames) for r in runs if r.frames]
        print(f"{key:<16} {len(runs):>2} {held:>10} "
              f"{_span([_per_call(r) * 100 for r in runs], '{:.3f}'):>18} "
              f"{_span(ratios['native']):>18} {_span(ratios['native 8k']):>18} "
              f"{_span(lost, '{:.3f}'):>18} "
              f"{_span([r.pct(50) for r in runs], '{:.0f}'):>12} "
              f"{_span([r.pct(90) for r in runs], '{:.0f}'):>12} "
              f"{_span([r.host_max_ms for r in runs], '{:.1f}'):>18} "
              f"{_span([r.steal * 100 for r in runs], '{:.1f}'):>14}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=60, help="callers of the old/new comparison")
    ap.add_argument("--scale", default="100,150,200",
                    help="caller counts for the new layout alone, after the comparison")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--calls-per-worker", type=int, default=WorkerSettings().calls_per_worker,
                    help="the new layout's calls per worker (default: the setting's default)")
    ap.add_argument("--mode", default="both",
                    choices=("both", "new", "old", "native", "new+native", "all"),
                    help=f"old = {OLD_CALLS_PER_WORKER} calls per worker (the PyPI wheel's "
                    "limit); new = --calls-per-worker; native = the same callers into one plain "
                    "pjsua2 conference (the C floor: ours ÷ native is printed); all = old, new "
                    "and native")  # fmt: skip
    ap.add_argument("--native-rate", default=str(NATIVE_REFERENCE_RATE),
                    help="clock rate(s) of the native runs' pjmedia conference bridge, e.g. "
                    "16000,8000 (ours ÷ native is against 16 kHz, the issue's reference, and "
                    "also printed against 8 kHz when run)")  # fmt: skip
    ap.add_argument("--narrowband", default="0",
                    help="workers.narrowband_workers of the 'new' runs, one run per value in "
                    "each repetition (alternated): e.g. 0,all (all = every worker at 8 kHz, "
                    "what a node fed by G.711 trunks would set)")  # fmt: skip
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="alternate the configurations this many times (a noisy shared box)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra WorkerSettings for the 'new' run, e.g. --set jb_max_pre_ms=60",
    )
    ap.add_argument(
        "--sipp-priority",
        type=int,
        default=1,
        help="SCHED_FIFO priority of the SIPp callers (0 = normal): keeps the load "
        "generator's RTP pacing out of other users' load; below the bridge's threads",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sip-bench-"))
    speech = dp.speech("the quick brown fox jumps over the lazy dog. " * 2, 8000, work)
    hold = args.seconds + 30
    reps = math.ceil(hold / (len(speech) / 8000)) + 1
    dp.write_rtp_pcap(work / "load.pcap", np.tile(speech, reps))
    t = np.arange(800) / 8000
    burst = (np.sin(2 * np.pi * 1000 * t) * 12000).astype(np.int16)
    period = np.concatenate([burst, np.zeros(8000 - 800, np.int16)])
    dp.write_rtp_pcap(work / "bursts.pcap", np.tile(period, int(hold) + 2))
    dp.write_rtp_pcap(work / "silence.pcap", np.zeros(int(8000 * (hold + 2)), np.int16))
    extra: dict[str, object] = {}
    for kv in args.set:
        key, _, value = kv.partition("=")
        extra[key] = value
    cpw = args.calls_per_worker
    variants: list[tuple[str, dict[str, object]]] = []
    for value in (v.strip() for v in args.narrowband.split(",") if v.strip()):
        count = 256 if value == "all" else int(value)
        suffix = "" if count == 0 else " nb" if value == "all" else f" nb{count}"
        variants.append((f"new {cpw}/w{suffix}", extra | {"narrowband_workers": count}))
    native_rates = [int(x) for x in args.native_rate.split(",") if x.strip()]
    results: list[Result] = []

    def keep(r: Result, rep: int) -> None:
        r.rep = rep
        results.append(r)

    for rep in range(args.repeat):
        if args.mode in ("both", "old", "all"):
            old = f"old {OLD_CALLS_PER_WORKER}/w"
            keep(run(old, args.calls, OLD_CALLS_PER_WORKER, args, work, overrides=extra), rep)
        order = variants if rep % 2 == 0 else variants[::-1]  # alternate which goes first
        if args.mode in ("both", "new", "new+native", "all"):
            for name, overrides in order:
                keep(run(name, args.calls, cpw, args, work, overrides=overrides), rep)
        if args.mode in ("native", "new+native", "all"):
            for rate in native_rates:
                keep(run_native(args, work, rate), rep)
        summary(results)
    for calls in (int(x) for x in args.scale.split(",") if x.strip()):
        for name, overrides in variants:
            keep(run(name, calls, cpw, args, work, overrides=overrides), args.repeat)
        summary(results)


if __name__ == "__main__":
    main()
