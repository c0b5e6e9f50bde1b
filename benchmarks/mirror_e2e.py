"""Moderator action in the room → its effect in the call, and back (issue 7 benchmark).

A whole node (SIP worker pool, mixer, Redis, XMPP component) against a throw-away Prosody
and redis-server on loopback; a real chat moderator (slixmpp client) and a raw SIP caller.
Times, p50/p99:

- voice revoked / given back in the room → the leg muted / unmuted in the mixer (silence in
  the mix from the next 20 ms tick);
- kick in the room → BYE received by the caller;
- caller presses *6 (SIP INFO) → the moderator's client sees the puppet become visitor;
- baseline in the same run: an XMPP ping round trip moderator → server (every room-side
  action costs at least one of these).

    PYTHONPATH=. python -m benchmarks.mirror_e2e [--actions 200] [--kicks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bridge.app import open_node
from bridge.config import LogFormat, LogLevel, LogSettings, Settings
from bridge.devstack.ports import free_port, free_udp_tcp_port
from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer
from bridge.logs import configure
from bridge.node.supervisor import Node
from tests.sip.rawsip import RawUac
from tests.xmpp.clients import ChatUser

ROOM = "bench"
MUC = f"{ROOM}@conference.localhost"
NICK = "Carl Caller"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> float:
    """Seconds until ``predicate()`` holds (polled every 0.5 ms)."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("effect not seen")
        await asyncio.sleep(0.0005)
    return time.perf_counter() - start


async def dial_in(node: Node, alice: ChatUser) -> tuple[RawUac, str]:
    uac = RawUac(node.pool.front_port, user="carl", display=NICK)
    final = await asyncio.to_thread(uac.invite, ROOM)
    assert final.status == 200, final.first_line
    bridged = node.rooms[ROOM].bridged
    await wait_until(lambda: NICK in bridged.present_puppets.values())
    await alice.wait_for(lambda: NICK in alice.occupants(MUC))
    leg = next(k for k, v in bridged.present_puppets.items() if v == NICK)
    return uac, leg


async def measure(actions: int, kicks: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"ping": [], "revoke": [], "grant": [], "kick": [], "*6": []}
    with tempfile.TemporaryDirectory() as tmp:
        prosody = ProsodyServer(
            Path(tmp) / "prosody", users={"alice": "pw"},
            muc_modules=["muc_audio_video_uri"], admins=["alice@localhost"],
        )  # fmt: skip
        redis = RedisServer(Path(tmp) / "redis")
        prosody.start()
        redis.start()
        settings = Settings(
            rooms=[ROOM],
            xmpp={"component_jid": prosody.component_domain, "secret": prosody.component_secret,
                  "port": prosody.component_port, "muc_service": prosody.muc_domain},
            sip={"domain": "127.0.0.1", "port": free_udp_tcp_port()},
            workers={"pool_size": 1, "media_timeout": 0},
            redis={"url": redis.url}, http={"port": free_port()}, log={"level": "warning"},
        )  # fmt: skip
        try:
            async with open_node(settings) as node:
                alice = ChatUser("alice@localhost", "pw", "127.0.0.1", prosody.c2s_port)
                await alice.connect()
                await alice.join(MUC, "Alice")
                muc = alice.client.plugin["xep_0045"]
                for _ in range(actions):
                    start = time.perf_counter()
                    await alice.client.plugin["xep_0199"].ping(jid="localhost", timeout=5)
                    out["ping"].append(time.perf_counter() - start)
                uac, leg = await dial_in(node, alice)
                uac_loop = asyncio.create_task(asyncio.to_thread(_answer_forever, uac))
                for i in range(actions):
                    muted = i % 2 == 0
                    role = "visitor" if muted else "participant"
                    start = time.perf_counter()
                    await muc.set_role(MUC, NICK, role)
                    await wait_until(lambda m=muted: node.pool.legs()[leg].muted == m)  # type: ignore[misc]
                    out["revoke" if muted else "grant"].append(time.perf_counter() - start)
                for _ in range(min(actions, 40) // 2):
                    start = time.perf_counter()
                    for digit in "*6":
                        await asyncio.to_thread(
                            uac.request, "INFO", uac.remote_target,
                            body=f"Signal={digit}\r\nDuration=160",
                            ctype="application/dtmf-relay", to_tag=uac.remote_tag,
                        )  # fmt: skip
                    await alice.wait_for(lambda: alice.occupants(MUC)[NICK].role == "visitor")
                    out["*6"].append(time.perf_counter() - start)
                    for digit in "*6":  # toggle back
                        await asyncio.to_thread(
                            uac.request, "INFO", uac.remote_target,
                            body=f"Signal={digit}\r\nDuration=160",
                            ctype="application/dtmf-relay", to_tag=uac.remote_tag,
                        )  # fmt: skip
                    await alice.wait_for(lambda: alice.occupants(MUC)[NICK].role != "visitor")
                uac.closed = True  # type: ignore[attr-defined]
                await uac_loop
                await asyncio.to_thread(uac.bye)
                uac.close()
                await alice.wait_for(lambda: NICK not in alice.occupants(MUC))
                for _ in range(kicks):
                    uac, leg = await dial_in(node, alice)
                    start = time.perf_counter()
                    await muc.set_role(MUC, NICK, "none")
                    await asyncio.to_thread(uac.wait_request, "BYE", 10.0)
                    out["kick"].append(time.perf_counter() - start)
                    uac.close()
                    await alice.wait_for(lambda: NICK not in alice.occupants(MUC))
                await alice.close()
        finally:
            prosody.stop()
            redis.stop()
    return out


def _answer_forever(uac: RawUac) -> None:
    """Answer what the bridge sends (MESSAGE notes, INFO 200s) until told to stop."""
    while not getattr(uac, "closed", False):
        msg = uac.recv(0.1)
        if msg is not None and msg.method:
            uac.answer(msg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actions", type=int, default=200, help="voice changes (and pings)")
    parser.add_argument("--kicks", type=int, default=20, help="kick → BYE samples")
    args = parser.parse_args()
    configure(LogSettings(format=LogFormat.CONSOLE, level=LogLevel.WARNING))
    results = asyncio.run(measure(args.actions, args.kicks))
    base = statistics.median(results["ping"])
    print(f"load average at end: {os.getloadavg()[0]:.2f} (2 cores)")
    print(f"{'path':<44} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'p50/ping':>9}")
    names = {
        "ping": "baseline: XMPP ping moderator → server",
        "revoke": "room voice revoked → leg muted in mixer",
        "grant": "room voice given → leg unmuted in mixer",
        "kick": "room kick → BYE at the caller",
        "*6": "caller *6 → moderator sees visitor",
    }
    for key, label in names.items():
        samples = results[key]
        if samples:
            p50 = statistics.median(samples) * 1000
            p99 = pct(samples, 99) * 1000
            print(
                f"{label:<44} {len(samples):>4} {p50:>8.1f} {p99:>8.1f} {p50 / base / 1000:>8.1f}x"
            )
    print("target: p99 ≤ 100 ms for every moderator path")


if __name__ == "__main__":
    main()
