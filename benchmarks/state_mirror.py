"""Moderator action → actions out, including the atomic Redis write (issue 7 benchmark).

Starts a throw-away redis-server (AOF on, as deployed) on loopback, fills a room with
callers, then times 200 moderator actions (voice revoked / granted on puppets, alternating)
from ``MirrorEngine.handle(event)`` called to actions returned: policy + fenced Lua write +
cache update. Baselines measured in the same run: a bare Redis round trip (PING) and a
one-field HSET. Target: p99 ≤ 100 ms for the whole moderator round trip; this is the
Redis+policy share of it.

    python -m benchmarks.state_mirror [--actions 200] [--legs 20]   (from the repo root)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bridge.core.mirror_events import CallerJoined, OccupantVoiceChanged
from bridge.core.policy import decide
from bridge.devstack.redis_server import RedisServer
from bridge.node.mirror import MirrorEngine
from bridge.state.connection import redis_client
from bridge.state.lease import LeaseManager
from bridge.state.store import StateStore

ROOM = "bench"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def timed(n: int, step: Callable[[int], Awaitable[object]]) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter_ns()
        await step(i)
        out.append((time.perf_counter_ns() - start) / 1e6)
    return out


def line(name: str, ms: list[float], base: float) -> str:
    p50, p99 = pct(ms, 50), pct(ms, 99)
    return (
        f"{name:<44} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  max {max(ms):7.3f} ms"
        f"  p50 = {p50 / base:5.1f}x PING"
    )


async def main(actions: int, legs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        client = redis_client(server.url)
        try:
            store = StateStore(client)
            leases = LeaseManager(client, node_id="bench", contact_for=lambda r: f"sip:{r}@x")
            lease = await leases.acquire(ROOM)
            engine = MirrorEngine(store, fence_for=lambda _room: lease.token)
            await store.link_room(ROOM, "bench@conference.localhost", event_id="link")
            for i in range(legs):
                await engine.handle(
                    CallerJoined(
                        event_id=f"join-{i}",
                        room=ROOM,
                        origin="sip",
                        leg_id=f"l{i}",
                        caller_uri=f"sip:caller{i}@pbx",
                        nick=f"c{i}",
                        puppet_jid=f"l{i}@bridge.localhost",
                    )
                )
            for _ in range(20):  # warm up connections and script cache
                await client.ping()

            def event(i: int) -> OccupantVoiceChanged:
                return OccupantVoiceChanged(
                    event_id=f"mod-{i}",
                    room=ROOM,
                    origin="muc",
                    actor="moderator",
                    at=time.time(),
                    occupant_jid=f"l{(i // 2) % legs}@bridge.localhost",
                    voiced=i % 2 == 1,
                )

            ping = await timed(actions, lambda _i: client.ping())
            hset = await timed(actions, lambda i: client.hset("bench:hset", str(i), "x"))
            state = engine.cached(ROOM)
            assert state is not None
            pure: list[float] = []
            for i in range(actions):
                start = time.perf_counter_ns()
                decide(event(i), state)
                pure.append((time.perf_counter_ns() - start) / 1e6)

            produced = 0

            async def moderate(i: int) -> None:
                nonlocal produced
                outcome = await engine.handle(event(i))
                if outcome.status != "applied" or not outcome.actions:
                    raise RuntimeError(f"action {i} did nothing: {outcome}")
                produced += len(outcome.actions)

            full = await timed(actions, moderate)
            base = pct(ping, 50)
            print(
                f"redis-server {server.port} (AOF everysec), room of {legs} legs, "
                f"{actions} samples each"
            )
            print(line("baseline: PING round trip", ping, base))
            print(line("baseline: HSET one field", hset, base))
            print(line("policy only (decide, pure)", pure, base))
            print(line("moderator action: event in → actions out", full, base))
            verdict = "meets" if pct(full, 99) <= 100 else "MISSES"
            print(
                f"p99 {pct(full, 99):.3f} ms {verdict} the 100 ms target "
                f"(mean {statistics.fmean(full):.3f} ms, {produced} actions produced)"
            )
        finally:
            await client.aclose()
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--actions", type=int, default=200)
    parser.add_argument("--legs", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.actions, args.legs))
