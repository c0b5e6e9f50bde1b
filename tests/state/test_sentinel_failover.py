"""Redis with Sentinel: the primary fails over in the middle of moderation traffic.

A real set-up on loopback (one primary, two replicas, three Sentinels, Debian's
redis-server). The replicas are paused and cut off for a moment and the primary then killed
(SIGKILL), so the replica that gets promoted has missed the writes of that moment: exactly
the changes a failover loses. (Two replicas: after the failover one is left to acknowledge
writes.)
With ``redis.replica_acks = 1`` (WAIT) those writes were never acknowledged as recorded:
the engine queued them and writes them again on the new primary. Every change the engine
acknowledged (applied, or queued and caught up) is in Redis afterwards, and the client found
the new primary by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.config import RedisSettings
from bridge.core.mirror_events import (
    OccupantBanned,
    OccupantPrivilegeChanged,
    OccupantVoiceChanged,
)
from bridge.devstack.redis_sentinel import SERVICE, RedisSentinelSet
from bridge.node.mirror import MirrorEngine
from bridge.state.connection import open_redis
from bridge.state.errors import StateUnavailable
from bridge.state.store import ReplicaAcks, StateStore
from tests.state.state_helpers import MUC, ROOM, ev

OP_TIMEOUT = 0.5
EVENTS = 400  # bounded traffic: about 20 s at most on a loaded machine
pytestmark = pytest.mark.servers


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisSentinelSet]:
    servers = RedisSentinelSet(tmp_path / "sentinel", replicas=2)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


def _event(i: int) -> tuple[Any, tuple[str, str]]:
    """The i-th moderation change and where its effect must show (table, participant)."""
    who = f"user{i}@localhost"
    if i % 5 == 4:
        return ev(OccupantBanned, "muc", occupant_jid=who, reason="spam"), ("bans", who)
    if i % 7 == 6:
        event = ev(OccupantPrivilegeChanged, "muc", occupant_jid=who, privilege="moderator")
        return event, ("roles", who)
    return ev(OccupantVoiceChanged, "muc", occupant_jid=who, voiced=False), ("mutes", who)


async def _traffic(engine: MirrorEngine, acknowledged: list[tuple[str, str]]) -> int:
    queued = 0
    for i in range(EVENTS):
        event, effect = _event(i)
        outcome = await engine.handle(event)
        # moderation from the room is a fact: recorded now or queued, never refused
        assert outcome.status in ("applied", "queued"), outcome
        queued += outcome.status == "queued"
        acknowledged.append(effect)
        await asyncio.sleep(0.01)
    return queued


async def _until(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.1)


async def test_failover_loses_no_acknowledged_change_and_the_client_follows(
    cluster: RedisSentinelSet,
) -> None:
    settings = RedisSettings(
        sentinels=cluster.sentinel_addresses,
        sentinel_service=SERVICE,
        password=cluster.password,  # type: ignore[arg-type]
        replica_acks=1,
        replica_ack_timeout=0.2,
    )
    old_primary, *replicas = cluster.data_ports
    async with open_redis(settings) as client:
        acks = ReplicaAcks(settings.replica_acks, settings.replica_ack_timeout)
        store = StateStore(client, op_timeout=OP_TIMEOUT, acks=acks)
        await store.link_room(ROOM, MUC, event_id="link-1", actor="owner@localhost")
        engine = MirrorEngine(store)
        acknowledged: list[tuple[str, str]] = []
        traffic = asyncio.create_task(_traffic(engine, acknowledged))
        try:
            await _until(lambda: _ready(len(acknowledged) >= 30), "traffic flows", 30)
            for port in replicas:
                cluster.process_on(port).pause()  # the replicas fall behind …
            # (and get nothing more: a stopped process still receives into its socket)
            await asyncio.to_thread(cluster.cut_replicas, old_primary)
            await asyncio.sleep(0.6)
            cluster.process_on(old_primary).kill()  # … and the primary dies
            for port in replicas:
                cluster.process_on(port).resume()

            async def promoted() -> bool:
                return await asyncio.to_thread(cluster.primary_port) in replicas

            await _until(promoted, "Sentinel promotes the replica", 60)
            queued = await asyncio.wait_for(traffic, 120)
        finally:
            traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError, AssertionError):
                await traffic
        assert queued > 0  # the failover did hit the traffic
        await _until(lambda: _caught_up(engine), "the queued changes are written", 60)

        # the same client object now talks to the promoted replica
        address = await client.connection_pool.get_master_address()  # type: ignore[attr-defined]
        assert int(address[1]) in replicas
        assert int(address[1]) == await asyncio.to_thread(cluster.primary_port)
        state = await StateStore(client, op_timeout=5.0).load_room(ROOM)
    tables = {"mutes": state.mutes, "bans": state.bans, "roles": state.roles}
    lost = [(t, who) for t, who in acknowledged if f"xmpp:{who}" not in tables[t]]
    assert len(acknowledged) == EVENTS
    assert lost == []


async def _ready(value: bool) -> bool:
    return value


async def _caught_up(engine: MirrorEngine) -> bool:
    with contextlib.suppress(StateUnavailable):
        await engine.catch_up()
    return len(engine.outbox) == 0


async def test_a_write_that_reaches_a_replica_is_an_outage_not_a_bug(tmp_path: Path) -> None:
    """Mid-failover a connection may still point at a server that is a replica now: the
    script's write fails with READONLY. That must read as "Redis unavailable" (the change is
    queued or refused with a message), and the connections are dropped to find the primary."""
    from bridge.devstack.redis_server import RedisServer
    from bridge.state.connection import redis_client

    primary, replica = RedisServer(tmp_path / "p"), RedisServer(tmp_path / "r")
    primary.start()
    replica.start()
    client = redis_client(replica.url)
    try:
        await client.execute_command("REPLICAOF", "127.0.0.1", str(primary.port))
        store = StateStore(client, op_timeout=2.0)
        with pytest.raises(StateUnavailable, match="read only replica"):
            await store.link_room(ROOM, MUC, event_id="link-1", actor="owner@localhost")
    finally:
        await client.aclose()
        replica.stop()
        primary.stop()
