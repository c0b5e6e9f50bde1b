"""Soak: one node at a rated load for ``--minutes`` (default 10), with figures.

Load, all on 127.0.0.1: ``--calls`` SIPp callers holding calls with G.711 RTP speech (and
answering every SIP MESSAGE), one texting caller (hand-written UA) posting an in-dialog MESSAGE
every ``--text-every`` seconds, ``--chatters`` chat users posting in the room at the same pace,
and a moderator (alice) who mutes/unmutes a random caller every 12 s and kicks one every 60 s
(SIPp dials a replacement, so the number of calls stays at the rating). The node runs in this
process (``bridge.app.open_node``) against a real Prosody and a real redis-server.

Every 10 s it samples: calls held, mixer ring counters (frames lost/late), the room/Redis/call
agreement (desync), CPU % and RSS of the supervisor+mixer (this process), the workers, Prosody
and Redis. At the end it prints one table:

* calls: held (min/avg), established, ended by the bridge for another reason than a kick;
* frames: through the rings, lost (dropped/torn), late (under-runs), mixer ticks late/skipped;
* messages, both ways: sent vs received by every recipient that was present (zero loss);
* moderation: actions done in the room vs applied on the call side; desync samples where
  Redis, the node's cache, the mixer and the room disagree twice in a row (0 = in sync);
* CPU % and RSS over time, and the RSS slope of the second half (leak check).

``--tracemalloc`` (slower) also prints where this process's Python memory grew between the
first sample after warm-up and the end: the place to look when the supervisor's RSS climbs.

    python benchmarks/soak.py --minutes 3 --calls 24
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import re
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.app import open_node  # noqa: E402
from bridge.config import LogSettings, Settings, WorkerSettings  # noqa: E402
from bridge.core.events import LegJoined, LegLeft  # noqa: E402
from bridge.demo.callers import CallerScript, demo_scenario  # noqa: E402
from bridge.devstack.ports import free_port, free_udp_tcp_port  # noqa: E402
from bridge.devstack.prosody import ProsodyServer  # noqa: E402
from bridge.devstack.redis_server import RedisServer  # noqa: E402
from bridge.logs import configure  # noqa: E402
from bridge.node.supervisor import Node  # noqa: E402
from bridge.sip import devpeers as dp  # noqa: E402
from bridge.state.connection import redis_client  # noqa: E402
from bridge.state.store import StateStore  # noqa: E402
from tests.sip.rawsip import RawUac  # noqa: E402
from tests.xmpp.clients import ChatUser  # noqa: E402

ROOM = "soak"
SAMPLE_S = 10.0
MUTE_EVERY_S = 12.0
KICK_EVERY_S = 60.0
APPLY_WITHIN_S = 15.0  # a mirrored action not visible on the call side by then: not applied
SETTLE_S = 3.0  # a message this close to a caller's join/leave does not count for it
MSG_ID = re.compile(r"soak-(\w+)-(\d+)")


@dataclass
class Sample:
    t: float
    calls: int
    cpu: dict[str, float]
    rss_mb: dict[str, float]
    desync: list[str]
    #: RSS of each process (label → MB); a restarted worker is a new label (its pid)
    rss_by_proc: dict[str, float] = field(default_factory=dict)


@dataclass
class Soak:
    args: argparse.Namespace
    work: Path
    node: Node | None = None
    t0: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    joined: dict[str, tuple[float, str]] = field(default_factory=dict)  # call_id → (t, leg)
    left: dict[str, tuple[float, str]] = field(default_factory=dict)  # call_id → (t, reason)
    sent: dict[str, float] = field(default_factory=dict)  # message id → time posted
    chat_seen: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    actions: Counter[str] = field(default_factory=Counter)
    applied: Counter[str] = field(default_factory=Counter)
    frames: dict[int, Any] = field(default_factory=dict)  # mixer slot → last counters
    texter_slot: int = -1
    persistent_desync: int = 0
    transient_desync: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def now(self) -> float:
        return time.monotonic() - self.t0


# ---------------------------------------------------------------------------------- setup


def settings(prosody: ProsodyServer, redis: RedisServer, calls: int) -> Settings:
    """The node's own layout (one worker per CPU, ``calls_per_worker`` each), grown only when
    the load plus one slot for a kicked caller's replacement does not fit it."""
    cpw = WorkerSettings().calls_per_worker
    legs = calls + 1  # + the texter
    pool = max(WorkerSettings().resolved_pool_size(), math.ceil((legs + 1) / cpw))
    sip_port = free_udp_tcp_port()
    return Settings(
        rooms=[ROOM],
        xmpp={"component_jid": prosody.component_domain, "secret": prosody.component_secret,
              "port": prosody.component_port, "muc_service": prosody.muc_domain},
        sip={"domain": "127.0.0.1", "port": sip_port, "rtp_port_start": 10000,
             "rtp_port_count": 4 * cpw * pool + 64,
             # the load is not an attacker, and it is one room: lift the per-room cap (50)
             "limits": {"trusted_sources": ["127.0.0.1"], "callers_per_room": legs + 2}},
        workers={"pool_size": pool, "calls_per_worker": cpw, "media_timeout": 0},
        redis={"url": redis.url},
        http={"port": free_port()},
        log={"format": "json", "level": "warning"},
    )  # type: ignore[arg-type]  # fmt: skip


def caller_scenario(work: Path, seconds: float) -> tuple[str, Path]:
    speech = dp.speech("the quick brown fox jumps over the lazy dog. " * 2, 8000, work)
    reps = math.ceil(seconds / (len(speech) / 8000)) + 1
    pcap = work / "load.pcap"
    dp.write_rtp_pcap(pcap, np.tile(speech, reps))
    script = CallerScript(user="caller[call_number]", display="SIPp caller [call_number]",
                          sentences=(), first_half=True)  # fmt: skip
    return demo_scenario(ROOM, script, pcap), pcap


# --------------------------------------------------------------------------------- actors


async def chatter(soak: Soak, user: ChatUser, name: str, muc: str) -> None:
    seq = 0
    await asyncio.sleep(random.uniform(0, soak.args.text_every))
    while not soak.stop.is_set():
        seq += 1
        msg_id = f"soak-{name}-{seq}"
        soak.sent[msg_id] = soak.now()
        await user.say(muc, f"{msg_id} hello from the chat")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(soak.stop.wait(), soak.args.text_every)


def texter_loop(soak: Soak, uac: RawUac, loop: asyncio.AbstractEventLoop) -> None:
    """The texting caller: in-dialog MESSAGE every text_every s, answers what comes in."""
    seq = 0
    next_at = time.monotonic() + soak.args.text_every
    while not soak.stop.is_set():
        if time.monotonic() >= next_at:
            seq += 1
            msg_id = f"soak-sip-{seq}"
            soak.sent[msg_id] = soak.now()
            try:
                uac.in_dialog("MESSAGE", body=f"{msg_id} hello from the phone",
                              ctype="text/plain")  # fmt: skip
            except TimeoutError:
                print(f"texter: no answer to {msg_id}", file=sys.stderr)
            next_at += soak.args.text_every
            continue
        msg = uac.recv(0.2)
        uac.received.clear()  # RawUac keeps every message; the ids are all the soak needs
        if msg is not None and msg.method:
            uac.answer(msg)
            if msg.method == "MESSAGE":
                for m in MSG_ID.finditer(msg.body):
                    soak.chat_seen["texter"].add(m.group(0))


async def moderator(soak: Soak, alice: ChatUser, muc: str) -> None:
    assert soak.node is not None
    node = soak.node
    last_kick = soak.now()
    while not soak.stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(soak.stop.wait(), MUTE_EVERY_S)
        if soak.stop.is_set():
            return
        callers = [n for n, o in alice.occupants(muc).items() if n.startswith("SIPp caller")]
        if not callers:
            continue
        nick = random.choice(callers)
        leg = next((k for k, v in node.rooms[ROOM].bridged.present_puppets.items()
                    if v == nick), None)  # fmt: skip
        if leg is None:
            continue
        kick = soak.now() - last_kick >= KICK_EVERY_S
        try:
            if kick:
                last_kick = soak.now()
                soak.actions["kick"] += 1
                await alice.kick(muc, nick, "soak kick")
                ok = await until(lambda leg=leg: leg not in node.pool.legs())  # type: ignore[misc]
                soak.applied["kick"] += ok
            else:
                mute = alice.occupants(muc)[nick].role != "visitor"
                what = "mute" if mute else "unmute"
                soak.actions[what] += 1
                await alice.set_role(muc, nick, "visitor" if mute else "participant")
                ok = await until(lambda leg=leg, mute=mute: (r := node.pool.legs().get(leg))
                                 is None or r.muted == mute)  # type: ignore[misc]  # fmt: skip
                soak.applied[what] += ok
        except Exception as error:  # an IQ error (the caller left meanwhile) is not a desync
            print(f"moderator: {type(error).__name__}: {error}", file=sys.stderr)


async def until(predicate: Any, within: float = APPLY_WITHIN_S) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


# -------------------------------------------------------------------------------- sampling


async def desync(soak: Soak, alice: ChatUser, muc: str) -> list[str]:
    """Differences between Redis, the engine cache, the pool/mixer and the room."""
    node = soak.node
    assert node is not None
    client = redis_client(node.settings.redis.url.get_secret_value())  # type: ignore[union-attr]
    try:
        stored = await StateStore(client, prefix=node.settings.state.key_prefix).load_room(ROOM)
    finally:
        await client.aclose()
    cached = node.engine.cached(ROOM)
    pool = node.pool.legs()
    puppets = node.rooms[ROOM].bridged.present_puppets
    out = []
    if cached is None:
        return ["no cached state"]
    if set(stored.legs) != set(cached.legs):
        out.append(f"legs redis≠cache {sorted(set(stored.legs) ^ set(cached.legs))}")
    joined = {k for k, r in pool.items() if r.joined}
    if set(stored.legs) != joined:
        out.append(f"legs redis≠pool {sorted(set(stored.legs) ^ joined)}")
    if set(puppets) != joined:
        out.append(f"legs room≠pool {sorted(set(puppets) ^ joined)}")
    seen = alice.occupants(muc)
    for leg_id, record in stored.legs.items():
        muted = record.participant in stored.mutes
        if leg_id in pool and pool[leg_id].muted != muted:
            out.append(f"mute redis≠mixer {leg_id}")
        nick = puppets.get(leg_id)
        if nick in seen and (seen[nick].role == "visitor") != muted:
            out.append(f"mute redis≠room {leg_id}")
    return out


def frame_totals(soak: Soak) -> dict[str, int]:
    node = soak.node
    assert node is not None
    mixer = node.pool._owned_mixer  # the benchmark reads the mixer's ring counters
    if mixer is not None:
        for rec in node.pool.legs().values():
            if rec.slot != soak.texter_slot:  # the texter sends no RTP: all under-runs
                soak.frames[rec.slot] = mixer.counters(rec.slot)
    totals: Counter[str] = Counter()
    for c in soak.frames.values():
        totals["frames"] += c.in_frames + c.out_frames
        totals["lost"] += c.in_dropped + c.out_dropped + c.in_torn + c.out_torn
        totals["late"] += c.in_underruns + c.out_underruns
        totals["repeated"] += c.out_repeats
    return dict(totals)


class CpuMeter:
    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.procs = {g: [psutil.Process(p) for p in pids] for g, pids in groups.items()}
        self.last: dict[str, float] = {g: self._cpu(g) for g in self.procs}
        self.t = time.monotonic()
        self.by_proc: dict[str, float] = {}  # RSS MB of each process at the last sample

    def _cpu(self, group: str) -> float:
        total = 0.0
        for p in self.procs[group]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def refresh_workers(self, pids: list[int]) -> None:
        if sorted(p.pid for p in self.procs["workers"]) != sorted(pids):
            self.procs["workers"] = [psutil.Process(p) for p in pids]
            self.last["workers"] = self._cpu("workers")

    def sample(self) -> tuple[dict[str, float], dict[str, float]]:
        now = time.monotonic()
        wall = max(1e-6, now - self.t)
        cpu, rss = {}, {}
        self.by_proc = {}
        for g in self.procs:
            used = self._cpu(g)
            cpu[g] = 100 * (used - self.last[g]) / wall
            self.last[g] = used
            mem = 0
            for i, p in enumerate(self.procs[g]):
                with contextlib.suppress(psutil.Error):
                    one = p.memory_info().rss
                    mem += one
                    label = f"{g[:-1]} {i}" if len(self.procs[g]) > 1 else g
                    self.by_proc[f"{label} (pid {p.pid})"] = one / 2**20
            rss[g] = mem / 2**20
        self.t = now
        return cpu, rss


async def sampler(soak: Soak, meter: CpuMeter, alice: ChatUser, muc: str) -> None:
    node = soak.node
    assert node is not None
    previous: set[str] = set()
    while not soak.stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(soak.stop.wait(), SAMPLE_S)
        meter.refresh_workers(node.pool.worker_pids())
        cpu, rss = meter.sample()
        diff = await desync(soak, alice, muc)
        now = set(diff)
        soak.transient_desync += bool(now)
        soak.persistent_desync += len(now & previous)
        previous = now
        calls = sum(1 for r in node.pool.legs().values() if r.joined) - 1  # minus the texter
        soak.samples.append(Sample(soak.now(), calls, cpu, rss, diff, dict(meter.by_proc)))
        frames = frame_totals(soak)
        print(f"[{soak.now():6.0f}s] calls {calls:3d}  cpu " + " ".join(
            f"{g} {v:5.1f}%" for g, v in cpu.items()) + "  rss " + " ".join(
            f"{g} {v:5.0f}MB" for g, v in rss.items()) +
            f"  late {frames.get('late', 0)} lost {frames.get('lost', 0)}"
            + (f"  differences {diff}" if diff else ""), flush=True)  # fmt: skip


# ------------------------------------------------------------------------------ the run


async def run(args: argparse.Namespace) -> int:
    configure(LogSettings(format="json", level="warning"))  # type: ignore[arg-type]
    # SIGTERM (a timeout, a CI job cancelled) unwinds like the end of the run: the finally
    # below stops SIPp, Prosody and Redis instead of leaving them behind
    this = asyncio.current_task()
    assert this is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, this.cancel)
    work = Path(tempfile.mkdtemp(prefix="sipmuc-soak-"))
    soak = Soak(args, work)
    seconds = args.minutes * 60
    chatters = [f"chat{i}" for i in range(args.chatters)]
    users = {"alice": "alice-pw", **{c: f"{c}-pw" for c in chatters}}
    prosody = ProsodyServer(work / "prosody", users=users, muc_modules=["muc_audio_video_uri"],
                            admins=["alice@localhost"])  # fmt: skip
    redis = RedisServer(work / "redis")
    prosody.start()
    redis.start()
    scenario, _ = caller_scenario(work, seconds + 120)
    muc = f"{ROOM}@{prosody.muc_domain}"
    print(f"soak: {args.calls} SIPp callers + 1 texting caller, {args.chatters} chat users, "
          f"moderator; {args.minutes:g} min; work dir {work}; load avg before "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)  # fmt: skip
    config = settings(prosody, redis, args.calls)
    sipp = None
    try:
        async with open_node(config) as node:
            soak.node = node
            original = node._on_sip_event

            async def spy(event: object) -> None:
                if isinstance(event, LegJoined):
                    soak.joined[event.call_id] = (soak.now(), event.leg_id)
                elif isinstance(event, LegLeft):
                    soak.left[event.call_id] = (soak.now(), event.reason)
                await original(event)

            node._on_sip_event = spy  # type: ignore[method-assign]
            soak.t0 = time.monotonic()
            people: dict[str, ChatUser] = {}
            for name in ("alice", *chatters):
                person = ChatUser(prosody.jid(name), users[name], "127.0.0.1", prosody.c2s_port)
                await person.connect()
                await person.join(muc, name.capitalize())
                people[name] = person
            alice = people["alice"]
            texter = RawUac(node.pool.front_port, user="texter", display="Texter")
            final = await asyncio.to_thread(texter.invite, ROOM)
            if final.status != 200:
                raise SystemExit(f"texter refused: {final.first_line}")
            await until(lambda: any(r.caller.from_uri.startswith("sip:texter")
                                    for r in node.pool.legs().values()), 10)  # fmt: skip
            soak.texter_slot = next(r.slot for r in node.pool.legs().values()
                                    if r.caller.from_uri.startswith("sip:texter"))  # fmt: skip
            sipp = dp.Sipp(scenario, node.pool.front_port, work / "sipp",
                           calls=args.calls + 100, rate=5, limit=args.calls,
                           timeout_s=int(seconds) + 300,
                           extra_args=["-default_behaviors", "all,-abortunexp", "-trace_msg",
                                       "-message_file", str(work / "sipp-messages.log")])
            sipp.start()
            up = await until(lambda: sum(r.joined for r in node.pool.legs().values())
                             >= args.calls + 1, 120)  # fmt: skip
            print(f"[{soak.now():6.0f}s] {'all' if up else 'NOT all'} calls up: "
                  f"{len(node.pool.legs()) - 1}", flush=True)  # fmt: skip
            meter = CpuMeter({
                "supervisor+mixer": [os.getpid()]  # the mixer has its own process now
                + ([node.pool._owned_mixer.pid] if node.pool._owned_mixer else []),
                "workers": node.pool.worker_pids(),
                "prosody": [prosody.process.proc.pid],  # type: ignore[union-attr]
                "redis": [redis.process.proc.pid],  # type: ignore[union-attr]
                "sipp": [sipp.proc.pid],  # type: ignore[union-attr]
            })  # fmt: skip
            start = soak.now()
            if args.tracemalloc:
                tracemalloc.start(12)
            loop = asyncio.get_running_loop()
            tasks = [
                *(loop.create_task(chatter(soak, people[c], c, muc)) for c in chatters),
                loop.create_task(moderator(soak, alice, muc)),
                loop.create_task(sampler(soak, meter, alice, muc)),
            ]
            texting = asyncio.to_thread(texter_loop, soak, texter, loop)
            texting_task = loop.create_task(texting)
            baseline = None
            if args.tracemalloc:
                await asyncio.sleep(min(60.0, seconds / 4))  # past warm-up
                baseline = tracemalloc.take_snapshot()
            await asyncio.sleep(max(0.0, seconds - (soak.now() - start)))
            soak.stop.set()
            if baseline is not None:
                memory_growth(baseline, tracemalloc.take_snapshot())
            names = [*(f"chatter {c}" for c in chatters), "moderator", "sampler", "texter"]
            ended = await asyncio.gather(*tasks, texting_task, return_exceptions=True)
            for name, outcome in zip(names, ended, strict=True):
                if isinstance(outcome, BaseException):  # its figures stop where it died
                    print(f"WARNING: the {name} task died: {outcome!r}", flush=True)
            await asyncio.sleep(5)  # let the last relays arrive
            # the room side: what every chat user saw (alice and the chatters)
            for name, person in people.items():
                for m in person.messages:
                    for found in MSG_ID.finditer(m.body):
                        soak.chat_seen[name].add(found.group(0))
            final_diff = await desync(soak, alice, muc)
            frames = frame_totals(soak)
            clock = node.pool._owned_mixer.clock_stats() if node.pool._owned_mixer else None
            for person in people.values():
                await person.close()
            texter.close()
            sipp.kill()
            report(soak, frames, clock, final_diff, work)
    finally:
        if sipp is not None:
            sipp.kill()
        prosody.stop()
        redis.stop()
    return 0


def memory_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> None:
    """The allocation sites (whole tracebacks) that grew most between two snapshots."""
    ours = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(ours).compare_to(before.filter_traces(ours), "traceback")
    print("\nPython memory growth of this process (tracemalloc), largest first:")
    for stat in stats[:12]:
        print(f"  {stat.size_diff / 1024:+9.1f} KiB  {stat.count_diff:+7d} blocks")
        for line in stat.traceback.format(limit=6, most_recent_first=True):
            print(f"      {line}")


def sipp_received(path: Path) -> dict[str, set[str]]:
    """call_id → message ids received by that SIPp call (from the -trace_msg log)."""
    out: dict[str, set[str]] = defaultdict(set)
    if not path.exists():
        return out
    for block in re.split(r"^-{20,}.*$", path.read_text(errors="replace"), flags=re.MULTILINE):
        if "MESSAGE sip:" not in block:
            continue
        cid = re.search(r"^Call-ID:\s*(\S+)", block, re.MULTILINE | re.IGNORECASE)
        if cid:
            out[cid.group(1)].update(m.group(0) for m in MSG_ID.finditer(block))
    return out


def report(soak: Soak, frames: dict[str, int], clock: Any, final_diff: list[str],
           work: Path) -> None:  # fmt: skip
    samples = soak.samples
    end = soak.now()
    sip_got = sipp_received(work / "sipp-messages.log")
    # expected recipients of each message: callers present from SETTLE_S before to SETTLE_S
    # after it was posted (a caller never receives its own message)
    chat_ids = {i for i in soak.sent if not i.startswith("soak-sip-")}
    sip_ids = {i for i in soak.sent if i.startswith("soak-sip-")}
    expected = received = 0
    missing: list[str] = []
    for call_id, (t_join, _leg) in soak.joined.items():
        if call_id == "" or call_id.endswith("@raw"):
            continue  # the texter: counted below
        t_left = soak.left.get(call_id, (end, ""))[0]
        want = {i for i, t in soak.sent.items() if t_join + SETTLE_S <= t <= t_left - SETTLE_S}
        got = sip_got.get(call_id, set())
        expected += len(want)
        received += len(want & got)
        missing += sorted(want - got)[:3]
    want_texter = chat_ids
    expected += len(want_texter)
    received += len(want_texter & soak.chat_seen["texter"])
    room_expected = len(sip_ids) * len([n for n in soak.chat_seen if n != "texter"])
    room_received = sum(len(sip_ids & seen) for n, seen in soak.chat_seen.items()
                        if n != "texter")  # fmt: skip
    reasons = Counter(reason for _, reason in soak.left.values())
    unexpected = {r: n for r, n in reasons.items()
                  if r not in ("bye", "shutdown") and not r.startswith("kicked")}  # fmt: skip
    calls = [s.calls for s in samples] or [0]
    half = len(samples) // 2
    print("\n" + "=" * 78)
    print(f"soak figures: {soak.args.calls} callers rated, {end / 60:.1f} min, "
          f"{len(samples)} samples every {SAMPLE_S:g} s")  # fmt: skip
    rows = [
        ("calls held (min / avg / rated)",
         f"{min(calls)} / {sum(calls) / len(calls):.1f} / {soak.args.calls}"),
        ("calls established / ended by the bridge",
         f"{len(soak.joined)} / {dict(reasons)}"),
        ("calls ended for another reason (not a kick)",
         f"{sum(unexpected.values())} {unexpected or ''}"),
        ("frames through the rings", f"{frames.get('frames', 0)}"),
        ("frames lost (dropped/torn)", f"{frames.get('lost', 0)}"),
        ("frames late (ring under-runs) / repeated",
         f"{frames.get('late', 0)} / {frames.get('repeated', 0)}"),
        ("mixer ticks late / skipped", f"{clock.late} / {clock.skipped} of {clock.ticks} "
         f"(max lateness {clock.max_lateness_s * 1000:.1f} ms)" if clock else "n/a"),
        ("messages chat→phones: expected / received", f"{expected} / {received}"),
        ("messages phone→room: expected / received", f"{room_expected} / {room_received}"),
        ("messages sent (chat / phone)", f"{len(chat_ids)} / {len(sip_ids)}"),
        ("moderation actions done / applied on the call",
         f"{sum(soak.actions.values())} / {sum(soak.applied.values())} "
         f"({dict(soak.actions)})"),
        ("desync samples (persistent / transient)",
         f"{soak.persistent_desync} / {soak.transient_desync}"),
        ("desync at the end", f"{final_diff or 0}"),
    ]
    for key, value in rows:
        print(f"  {key:<46} {value}")
    if missing:
        print(f"  first missing messages: {missing[:6]}")
    print("\n  t(s)  calls " + " ".join(f"{g[:14]:>15}" for g in samples[0].cpu) +
          "   (CPU % of one core / RSS MB)" if samples else "")  # fmt: skip
    for s in samples:
        print(f"  {s.t:5.0f} {s.calls:5d} " + " ".join(
            f"{s.cpu[g]:6.1f}/{s.rss_mb[g]:7.0f}" for g in s.cpu))  # fmt: skip
    if half >= 2:
        for g in samples[0].rss_mb:
            xs = np.array([s.t for s in samples[half:]])
            ys = np.array([s.rss_mb[g] for s in samples[half:]])
            slope = float(np.polyfit(xs, ys, 1)[0]) * 60 if len(xs) > 1 else 0.0
            print(f"  RSS slope, second half, {g:<18} {slope:+.2f} MB/min")
        second = samples[half:]
        print("  RSS slope per process over the second half (MB/min; flat = within noise):")
        for label in sorted({k for s in second for k in s.rss_by_proc}):
            points = [(s.t, s.rss_by_proc[label]) for s in second if label in s.rss_by_proc]
            if len(points) < 2:
                continue
            xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
            slope = float(np.polyfit(xs, ys, 1)[0]) * 60
            note = "" if len(points) == len(second) else f" (only {len(points)} samples)"
            print(f"    {label:<32} {slope:+.3f}  ({ys[0]:.0f} → {ys[-1]:.0f} MB){note}")
    print(f"  load average now {os.getloadavg()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--calls", type=int, default=24, help="SIPp callers (the rating)")
    ap.add_argument("--chatters", type=int, default=2)
    ap.add_argument("--text-every", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tracemalloc", action="store_true",
                    help="print where this process's Python memory grew (slower)")
    args = ap.parse_args()
    random.seed(args.seed)
    try:
        raise SystemExit(asyncio.run(run(args)))
    except asyncio.CancelledError:
        print("soak: stopped by SIGTERM; servers stopped, no figures", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None


if __name__ == "__main__":
    main()
