"""Flood benchmark (issue 19): does a legitimate caller still get in, and hear, under floods?

One node (2 rooms, default abuse limits, nothing trusted) against real Prosody and Redis, all
on loopback. Two phases in the same run, same node: a baseline without flood, then with:

* 127.0.0.12 sends ``--invite-rate`` INVITEs/s (default 500) to room ``flooded``, never ACKs;
* 127.0.0.13 sends ``--message-rate`` out-of-dialog MESSAGEs/s (default 1000) to ``flooded``;
* 127.0.0.14 sends ``--subscribes`` SUBSCRIBEs (default 1000, Event: conference) to ``flooded``;
* a chat user in ``flooded`` types ``--command-rate`` owner commands/s (``!status``, ``!help``).

Meanwhile, in room ``quiet``: the legitimate caller (baresip, recording what it hears)
dials in, then another caller (SIPp) talks (espeak-ng speech). Printed per phase: the
legitimate caller's join time (INVITE → in the conference), a hand-written probe's
INVITE → 200 time, how well it heard the talker (envelope correlation; share of speech
20 ms windows missing), the mixer's lost/late frames on the ``quiet`` legs, the node's CPU
(supervisor + mixer + workers, % of one core) and memory, and what the flooders got back.
Every flood is bounded (rate × ``--seconds``). The machine may be shared: say so with the
figures, and compare phases of the same run only.

    python -m benchmarks.flood --seconds 12
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.app import open_node  # noqa: E402
from bridge.config import LogSettings, Settings  # noqa: E402
from bridge.devstack.ports import free_port, free_udp_tcp_port  # noqa: E402
from bridge.devstack.prosody import ProsodyServer  # noqa: E402
from bridge.devstack.redis_server import RedisServer  # noqa: E402
from bridge.logs import configure  # noqa: E402
from bridge.node.supervisor import Node  # noqa: E402
from bridge.sip import devpeers as dp  # noqa: E402
from tests.sip.rawsip import RawUac  # noqa: E402
from tests.xmpp.clients import ChatUser  # noqa: E402

FLOODED, QUIET = "flooded", "quiet"
SPEECH = ("one two three four five six seven eight nine ten. "
          "the quick brown fox jumps over the lazy dog")  # fmt: skip


@dataclass
class Phase:
    name: str
    join_s: float = float("nan")  # baresip started → its leg is in the conference
    probe_s: float = float("nan")  # RawUac INVITE → 200 (following one 302)
    probe_status: int = 0
    correlation: float = 0.0
    missing: float = float("nan")  # share of the talker's speech windows not heard
    ring_lost: int = 0
    ring_late: int = 0
    cpu: list[float] = field(default_factory=list)  # node, % of one core, per second
    rss_mb: list[float] = field(default_factory=list)
    floods: dict[str, Counter[int]] = field(default_factory=dict)
    commands_sent: int = 0
    bridge_replies: int = 0


# ------------------------------------------------------------------------------ flooders


def _flood(host: str, port: int, rate: float, count: int, *, make: Callable[[int], bytes],
           stop: threading.Event) -> Counter[int]:  # fmt: skip
    """Send ``count`` requests at ``rate``/s from ``host``; count the answers by status."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    answers: Counter[int] = Counter()
    start = time.monotonic()
    sent = 0

    def drain() -> None:
        while True:
            try:
                data = sock.recv(65535)
            except (BlockingIOError, OSError):
                return
            if data.startswith(b"SIP/2.0 "):
                with contextlib.suppress(ValueError):
                    answers[int(data[8:11])] += 1

    try:
        while sent < count and not stop.is_set():
            due = start + sent / rate
            while time.monotonic() >= due and sent < count:
                with contextlib.suppress(BlockingIOError):
                    sock.sendto(make(sent), ("127.0.0.1", port))
                sent += 1
                due = start + sent / rate
            drain()
            time.sleep(0.001)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:  # late answers (our caps answer after 180)
            drain()
            time.sleep(0.01)
    finally:
        sock.close()
    answers[0] = sent  # key 0: requests sent
    return answers


def _request(method: str, host: str, port: int, n: int, *, extra: str = "", body: str = "",
             ctype: str = "") -> bytes:  # fmt: skip
    lport = 5060 + n % 1000
    lines = [
        f"{method} sip:{FLOODED}@127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{lport};rport;branch=z9hG4bK{secrets.token_hex(8)}",
        "Max-Forwards: 70",
        f"From: <sip:flood{n}@{host}>;tag={secrets.token_hex(4)}",
        f"To: <sip:{FLOODED}@127.0.0.1>",
        f"Call-ID: {secrets.token_hex(10)}@flood",
        f"CSeq: 1 {method}",
        f"Contact: <sip:flood@{host}:{lport}>",
        *([extra] if extra else []),
        *([f"Content-Type: {ctype}"] if ctype else []),
        f"Content-Length: {len(body.encode())}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


Job = tuple[str, float, int, Callable[[int], bytes]]  # source, rate, count, request maker


def _jobs(port: int, opts: dict[str, float]) -> dict[str, Job]:
    sdp = (
        "v=0\r\no=f 1 1 IN IP4 127.0.0.12\r\ns=-\r\nc=IN IP4 127.0.0.12\r\nt=0 0\r\n"
        "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    seconds = opts["seconds"]
    return {
        "INVITE": ("127.0.0.12", opts["invite_rate"], int(opts["invite_rate"] * seconds),
                   lambda n: _request("INVITE", "127.0.0.12", port, n, body=sdp,
                                      ctype="application/sdp")),
        "MESSAGE": ("127.0.0.13", opts["message_rate"], int(opts["message_rate"] * seconds),
                    lambda n: _request("MESSAGE", "127.0.0.13", port, n, body=f"spam {n}",
                                       ctype="text/plain")),
        "SUBSCRIBE": ("127.0.0.14", opts["subscribes"] / max(1.0, seconds / 2),
                      int(opts["subscribes"]),
                      lambda n: _request("SUBSCRIBE", "127.0.0.14", port, n,
                                         extra="Event: conference\r\nExpires: 600")),
    }  # fmt: skip


def flood_main(port: int, opts: dict[str, float], chat: tuple[str, str, int, str],
               conn: Connection) -> None:  # fmt: skip
    """The flooders' own process: their CPU and GIL are not the node's."""
    out: dict[str, Counter[int]] = {}
    stop = threading.Event()
    threads = []
    for name, (host, rate, count, make) in _jobs(port, opts).items():

        def run(name: str = name, host: str = host, rate: float = rate, count: int = count,
                make: Callable[[int], bytes] = make) -> None:  # fmt: skip
            out[name] = _flood(host, port, rate, count, make=make, stop=stop)

        threads.append(threading.Thread(target=run, name=f"flood-{name}", daemon=True))
    for thread in threads:
        thread.start()
    sent, replies = asyncio.run(chat_flood(*chat, rate=opts["command_rate"],
                                           seconds=opts["seconds"]))  # fmt: skip
    for thread in threads:
        thread.join(opts["seconds"] + 30)
    conn.send((out, sent, replies))
    conn.close()


async def chat_flood(jid: str, password: str, c2s_port: int, muc: str, *, rate: float,
                     seconds: float) -> tuple[int, int]:  # fmt: skip
    user = ChatUser(jid, password, "127.0.0.1", c2s_port)
    await user.connect()
    await user.join(muc, "Mallory")
    sent = await command_flood(user, muc, rate, seconds)
    await asyncio.sleep(2.0)
    replies = sum(1 for m in user.messages if m.nick == "bridge")
    await user.close()
    return sent, replies


async def command_flood(user: ChatUser, muc: str, rate: float, seconds: float) -> int:
    sent, start = 0, time.monotonic()
    words = ("!status", "!help", "!status", "!help mute")
    while time.monotonic() - start < seconds:
        await user.say(muc, words[sent % len(words)])
        sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
    return sent


# ------------------------------------------------------------------------- measurements


def node_processes(exclude: set[int]) -> list[psutil.Process]:
    """This process (supervisor and mixer thread) and the SIP workers (Python children)."""
    me = psutil.Process()
    procs = [me]
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "python" in child.name().lower() and child.pid not in exclude:
                procs.append(child)
    return procs


async def sample(node: Node, phase: Phase, stop: asyncio.Event, exclude: set[int]) -> None:
    procs = node_processes(exclude)
    last = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
    t = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        now = time.monotonic()
        used, rss = 0.0, 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                used += times.user + times.system
                rss += p.memory_info().rss
        phase.cpu.append(100 * (used - last) / max(1e-6, now - t))
        phase.rss_mb.append(rss / 2**20)
        last, t = used, now


def audio_figures(heard: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(correlation of envelopes, share of the reference's speech windows not heard)."""
    env, ref = dp.envelope(heard, 8000), dp.envelope(reference, 8000)
    corr, lag = dp.best_correlation(env, ref)
    seg = env[lag : lag + len(ref)]
    speech = ref > 0.1 * ref.max()
    if len(seg) < len(ref) or not speech.any():
        return corr, 1.0
    # the mix's level differs from the source's: take the gain of the well-heard windows
    gain = float(np.percentile(seg[speech] / ref[speech], 90))
    missing = float(np.mean(seg[speech] < 0.2 * gain * ref[speech])) if gain > 0 else 1.0
    return corr, missing


async def legitimate(node: Node, work: Path, speech: np.ndarray, pcap: Path,
                     phase: Phase) -> None:  # fmt: skip
    """The legitimate caller joins ``quiet`` and hears another caller talk there."""
    port = node.pool.front_port
    silence = work / "silence.wav"
    await asyncio.to_thread(silence.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(dp.write_wav, silence, np.zeros(8000 * 30, np.int16), 8000)
    listener = dp.Baresip(work / "baresip", silence)
    before = set(node.legs)
    t0 = time.monotonic()
    listener.start(f"sip:{QUIET}@127.0.0.1:{port}", int(len(speech) / 8000 + 8))
    slots: set[int] = set()
    try:
        while time.monotonic() - t0 < 10:
            mine = [k for k, v in node.legs.items() if k not in before and v.room == QUIET]
            if mine:
                phase.join_s = time.monotonic() - t0
                break
            await asyncio.sleep(0.01)
        probe = await asyncio.to_thread(probe_join, port)
        phase.probe_status, phase.probe_s = probe
        hold_ms = int(len(speech) / 8 + 1000)  # the pcap plays while the scenario waits
        talker = dp.Sipp(dp.sipp_uac_scenario(QUIET, pcap=pcap, hold_ms=hold_ms), port,
                         work / "talker")  # fmt: skip
        talker.start()
        deadline = time.monotonic() + len(speech) / 8000 + 6
        while time.monotonic() < deadline and talker.proc and talker.proc.poll() is None:
            slots |= {r.slot for r in node.pool.legs().values() if r.room == QUIET}
            await asyncio.sleep(0.2)
        await asyncio.to_thread(talker.wait, 10)
        await asyncio.to_thread(listener.wait, 15)
    finally:
        listener.stop()
    mixer = node.pool._owned_mixer  # the benchmark reads the mixer's ring counters
    if mixer is not None:
        for slot in slots:
            with contextlib.suppress(Exception):
                c = mixer.counters(slot)
                phase.ring_lost += c.in_dropped + c.out_dropped + c.in_torn + c.out_torn
                phase.ring_late += c.in_underruns + c.out_underruns
    try:
        heard, _ = listener.heard()
        phase.correlation, phase.missing = audio_figures(heard, speech)
    except (FileNotFoundError, ValueError) as error:
        print(f"  listener heard nothing usable: {error}", flush=True)


def probe_join(port: int) -> tuple[int, float]:
    """A hand-written caller: INVITE → final answer (one 302 followed), then BYE."""
    t0 = time.monotonic()
    uac = RawUac(port, user="probe", display="Probe")
    try:
        final = uac.invite(QUIET)
        if final.status == 302:
            target = int(final.get("Contact").strip("<>").rsplit(":", 1)[1].split(";")[0])
            uac.close()
            uac = RawUac(target, user="probe", display="Probe")
            final = uac.invite(QUIET)
        took = time.monotonic() - t0
        if final.status == 200:
            with contextlib.suppress(TimeoutError):
                uac.bye()
        return final.status, took
    finally:
        uac.close()


# ------------------------------------------------------------------------------ the run


async def run_phase(node: Node, name: str, args: argparse.Namespace, work: Path, *,
                    speech: np.ndarray, pcap: Path,
                    chat: tuple[str, str, int, str] | None) -> Phase:  # fmt: skip
    phase = Phase(name)
    stop_sampling = asyncio.Event()
    flooder = None
    if chat is not None:
        opts = {"seconds": args.seconds, "invite_rate": args.invite_rate,
                "message_rate": args.message_rate, "subscribes": args.subscribes,
                "command_rate": args.command_rate}  # fmt: skip
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        flooder = ctx.Process(target=flood_main, args=(node.pool.front_port, opts, chat, child),
                              name="flooders", daemon=True)  # fmt: skip
        flooder.start()
        child.close()
    exclude = {flooder.pid} if flooder is not None and flooder.pid else set()
    sampler = asyncio.get_running_loop().create_task(sample(node, phase, stop_sampling, exclude))
    if flooder is not None:
        await asyncio.sleep(3.0)  # the floods are in full swing before the caller dials
    await legitimate(node, work / name, speech, pcap, phase)
    if flooder is not None:
        if await asyncio.to_thread(parent.poll, args.seconds + 60):
            phase.floods, phase.commands_sent, phase.bridge_replies = parent.recv()
        await asyncio.to_thread(flooder.join, 10)
    stop_sampling.set()
    await sampler
    return phase


def report(phases: list[Phase]) -> None:
    def fmt(v: float, spec: str = ".3f") -> str:
        return "n/a" if math.isnan(v) else format(v, spec)

    print("\nphase     join(s) probe(s) status  corr  missing  ring lost/late  "
          "cpu avg/max %1core  rss max MB  commands/replies")
    for p in phases:
        cpu = (sum(p.cpu) / len(p.cpu), max(p.cpu)) if p.cpu else (float("nan"),) * 2
        print(f"{p.name:9s} {fmt(p.join_s):>7s} {fmt(p.probe_s):>8s} {p.probe_status:6d}"
              f"  {p.correlation:4.2f}  {fmt(p.missing, '.1%'):>7s}  "
              f"{p.ring_lost:5d}/{p.ring_late:<5d}      {fmt(cpu[0], '.0f'):>4s}/"
              f"{fmt(cpu[1], '.0f'):<4s}          {max(p.rss_mb, default=0):7.0f}"
              f"     {p.commands_sent}/{p.bridge_replies}")  # fmt: skip
    for p in phases:
        for kind, answers in sorted(p.floods.items()):
            sent = answers.pop(0, 0)
            shown = ", ".join(f"{code}×{n}" for code, n in sorted(answers.items()))
            print(f"  {p.name} {kind}: sent {sent}; answers {shown or 'none'}")
    if len(phases) == 2 and not math.isnan(phases[0].join_s):
        base, flood = phases
        print(f"\nflood / baseline: join {flood.join_s / base.join_s:.2f}x, probe "
              f"{flood.probe_s / base.probe_s:.2f}x, cpu "
              f"{(sum(flood.cpu) / max(1, len(flood.cpu))) / max(1e-6, sum(base.cpu) / max(1, len(base.cpu))):.2f}x")  # noqa: E501


async def main(args: argparse.Namespace) -> int:
    configure(LogSettings(format="json", level="error"))  # type: ignore[arg-type]
    work = Path(tempfile.mkdtemp(prefix="sipmuc-flood-"))
    prosody = ProsodyServer(work / "prosody", users={"alice": "alice-pw", "mallory": "m-pw"},
                            muc_modules=["muc_audio_video_uri"])  # fmt: skip
    redis = RedisServer(work / "redis")
    prosody.start()
    redis.start()
    speech = dp.speech(SPEECH, 8000, work)
    pcap = work / "speech.pcap"
    dp.write_rtp_pcap(pcap, speech)
    sip_port = free_udp_tcp_port()
    settings = Settings(
        rooms=[FLOODED, QUIET],
        xmpp={"component_jid": prosody.component_domain, "secret": prosody.component_secret,
              "port": prosody.component_port, "muc_service": prosody.muc_domain},
        sip={"domain": "127.0.0.1", "port": sip_port, "rtp_port_start": 12000},
        workers={"pool_size": 3, "media_timeout": 0},
        redis={"url": redis.url}, http={"port": free_port()},
        log={"format": "json", "level": "error"},
    )  # type: ignore[arg-type]  # fmt: skip
    muc = f"{FLOODED}@{prosody.muc_domain}"
    print(f"flood: {args.seconds:g} s per phase; INVITE {args.invite_rate}/s, MESSAGE "
          f"{args.message_rate}/s, {args.subscribes} SUBSCRIBEs, commands "
          f"{args.command_rate}/s; load avg before {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores (shared machine); work dir {work}", flush=True)  # fmt: skip
    try:
        async with open_node(settings) as node:
            chat = (str(prosody.jid("mallory")), "m-pw", prosody.c2s_port, muc)
            phases = [await run_phase(node, "baseline", args, work, speech=speech,
                                       pcap=pcap, chat=None)]
            await asyncio.sleep(2.0)
            phases.append(await run_phase(node, "flood", args, work, speech=speech,
                                          pcap=pcap, chat=chat))  # fmt: skip
    finally:
        prosody.stop()
        redis.stop()
    report(phases)
    print(f"load avg after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="flood length per phase")
    parser.add_argument("--invite-rate", type=float, default=500.0)
    parser.add_argument("--message-rate", type=float, default=1000.0)
    parser.add_argument("--subscribes", type=int, default=1000)
    parser.add_argument("--command-rate", type=float, default=20.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
