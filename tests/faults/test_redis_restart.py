"""Redis under a running node: SIGKILL and restart with AOF loses no moderation; while it is
down, facts from the room and the call are applied and queued (never silently dropped) and
recorded once it is back, so Redis, the room and the call agree again (no desync)."""

from __future__ import annotations

import asyncio

from bridge.core.records import RoomState
from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer
from bridge.node.supervisor import Node
from bridge.state.connection import redis_client
from bridge.state.store import StateStore
from tests.e2e.conftest import NodeFactory
from tests.faults.conftest import MUC, ROOM, WAIT, dial, moderator, until


async def in_redis(redis: RedisServer) -> RoomState:
    client = redis_client(redis.url)
    try:
        return await StateStore(client).load_room(ROOM)
    finally:
        await client.aclose()


def leg_named(node: Node, nick: str) -> str:
    state = node.engine.cached(ROOM)
    assert state is not None
    return next(leg.leg_id for leg in state.legs.values() if leg.nick == nick)


def desync(node: Node, stored: RoomState) -> list[str]:
    """Differences between Redis, the node's view and the call side (pool legs/mutes)."""
    cached = node.engine.cached(ROOM)
    assert cached is not None
    problems = []
    if set(stored.legs) != set(cached.legs) or set(stored.legs) != set(node.pool.legs()):
        problems.append(f"legs: redis {set(stored.legs)} cache {set(cached.legs)} "
                        f"pool {set(node.pool.legs())}")  # fmt: skip
    if set(stored.mutes) != set(cached.mutes):
        problems.append(f"mutes: redis {set(stored.mutes)} cache {set(cached.mutes)}")
    for leg_id, record in node.pool.legs().items():
        leg = stored.legs.get(leg_id)
        if leg is not None and record.muted != (leg.participant in stored.mutes):
            problems.append(f"leg {leg_id} muted={record.muted} in the mixer")
    return problems


async def test_redis_kill_outage_and_restart_lose_nothing(
    make_node: NodeFactory, moderated_prosody: ProsodyServer, redis_server: RedisServer
) -> None:
    async with make_node(state={"catch_up_interval": 0.2, "op_timeout": 0.5}) as node, \
            moderator(moderated_prosody) as alice:  # fmt: skip
        carl, status = await dial(node.pool.front_port, "carl", "Carl Caller")
        assert status == 200
        dave, status = await dial(node.pool.front_port, "dave", "Dave Dialer")
        assert status == 200
        await alice.wait_for(lambda: {"Carl Caller", "Dave Dialer"} <= set(alice.occupants(MUC)))
        await until(lambda: len(node.engine.cached(ROOM).legs) == 2, "two legs")  # type: ignore[union-attr]
        await alice.set_role(MUC, "Carl Caller", "visitor")
        await asyncio.to_thread(carl.wait_request, "MESSAGE", WAIT)
        before = await in_redis(redis_server)
        assert len(before.mutes) == 1 and len(before.legs) == 2

        # ---- 1. SIGKILL Redis and start it again on the same AOF: nothing is lost
        assert redis_server.process is not None
        redis_server.process.kill()
        redis_server.start()
        after = await in_redis(redis_server)
        assert (set(after.legs), set(after.mutes)) == (set(before.legs), set(before.mutes))

        # ---- 2. an outage: Redis stopped while the room and the call keep changing
        redis_server.stop()
        dave_leg = leg_named(node, "Dave Dialer")
        await alice.set_role(MUC, "Dave Dialer", "visitor", "muted during the outage")
        note = await asyncio.to_thread(dave.wait_request, "MESSAGE", WAIT)
        assert "muted" in note.body.lower()
        await until(lambda: node.pool.legs()[dave_leg].muted, "dave muted in the mixer")
        await until(lambda: len(node.engine.outbox) >= 1, "the mute is queued, not dropped")
        erin, status = await dial(node.pool.front_port, "erin", "Erin Late")
        assert status == 200
        await alice.wait_for(lambda: "Erin Late" in alice.occupants(MUC))
        await asyncio.to_thread(carl.bye)
        await alice.wait_for(lambda: "Carl Caller" not in alice.occupants(MUC))
        await until(lambda: len(node.engine.outbox) >= 3, "join and leave queued too")

        # ---- 3. Redis is back: the queue is written in order; all three sides agree
        redis_server.start()
        await until(lambda: len(node.engine.outbox) == 0, "outbox drained", within=30)
        stored = await in_redis(redis_server)
        assert dave_leg in stored.legs and stored.legs[dave_leg].participant in stored.mutes
        assert any(leg.nick == "Erin Late" for leg in stored.legs.values())
        assert not any(leg.nick == "Carl Caller" for leg in stored.legs.values())
        assert len(stored.mutes) == 2  # carl's mute is kept for his next call, dave's added
        assert desync(node, stored) == []
        for uac in (carl, dave, erin):
            uac.close()
