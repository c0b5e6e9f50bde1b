"""Room leases with two "replicas" (two clients, two node ids) on one real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from bridge.core.records import MuteRecord, put
from bridge.state.errors import Fenced
from bridge.state.lease import Lease, LeaseKeeper, LeaseManager, RedirectTo, Serve
from bridge.state.store import StateStore
from tests.state.state_helpers import ROOM

WRITE = [put("sip:bob@pbx", MuteRecord())]


def replica(client: aioredis.Redis, name: str, ttl: float = 10.0) -> LeaseManager:
    return LeaseManager(
        client,
        node_id=name,
        ttl=ttl,
        op_timeout=1.0,
        contact_for=lambda room: f"sip:{room}@{name}.example:5060",
    )


async def _until_taken(b: LeaseManager, room: str) -> Lease:
    """Poll like the takeover loop does; bounded only to fail instead of hanging."""
    for _ in range(500):
        taken = await b.claim_orphans([room])
        if taken:
            return taken[0]
        await asyncio.sleep(0.02)
    raise AssertionError("the room was never taken over")


async def test_non_owner_redirects_to_the_owner(clients: Callable[[], aioredis.Redis]) -> None:
    a, b = replica(clients(), "node-a"), replica(clients(), "node-b")
    served = await a.route_invite(ROOM)
    assert isinstance(served, Serve) and served.lease.node_id == "node-a"
    assert await b.route_invite(ROOM) == RedirectTo("sip:standup@node-a.example:5060", "node-a")
    owner = await b.owner(ROOM)
    assert owner is not None and owner.token == served.lease.token and owner.ttl_ms > 0
    again = await a.route_invite(ROOM)  # the owner's own INVITEs renew, same token
    assert isinstance(again, Serve) and again.lease.token == served.lease.token


async def test_release_hands_over_with_a_larger_token(
    clients: Callable[[], aioredis.Redis],
) -> None:
    a, b = replica(clients(), "node-a"), replica(clients(), "node-b")
    lease_a = await a.acquire(ROOM)
    assert not await b.release(lease_a)  # only the holder may release
    assert await a.release(lease_a)
    lease_b = await b.acquire(ROOM)
    assert b.owns(lease_b) and lease_b.token > lease_a.token
    assert not await a.renew(lease_a)


async def test_dead_owner_is_taken_over_and_fenced(
    clients: Callable[[], aioredis.Redis], make_store: Callable[..., StateStore]
) -> None:
    """A stops renewing (dies or pauses); B takes the room after the TTL; A's late writes
    with its old token are rejected, B's go through."""
    a, b = replica(clients(), "node-a", ttl=0.3), replica(clients(), "node-b", ttl=0.3)
    store_a, store_b = make_store(), make_store()
    lease_a = await a.acquire(ROOM)
    assert (await store_a.apply(ROOM, "a-1", WRITE, fence=lease_a.token)).status == "applied"
    assert isinstance(await b.route_invite(ROOM), RedirectTo)

    lease_b = await _until_taken(b, ROOM)
    assert lease_b.node_id == "node-b" and lease_b.token > lease_a.token
    with pytest.raises(Fenced) as stale:
        await store_a.apply(ROOM, "a-2", [put("sip:eve@pbx", MuteRecord())], fence=lease_a.token)
    assert "another node owns the room" in str(stale.value)
    assert (
        await store_b.apply(ROOM, "b-1", [put("sip:eve@pbx", MuteRecord())], fence=lease_b.token)
    ).status == "applied"
    assert isinstance(await a.route_invite(ROOM), RedirectTo)

    lost: list[Lease] = []

    async def on_lost(lease: Lease) -> None:
        lost.append(lease)

    keeper = LeaseKeeper(a, lease_a, on_lost)
    await keeper.tick()
    assert keeper.lost.is_set() and lost == [lease_a]


async def test_keeper_renews_and_retakes_a_free_expired_lease(
    clients: Callable[[], aioredis.Redis],
) -> None:
    client = clients()
    a = replica(client, "node-a", ttl=5.0)
    keeper = LeaseKeeper(a, await a.acquire(ROOM))
    await keeper.tick()
    assert not keeper.lost.is_set()
    await client.delete(a.keys.lease(ROOM))  # expired while Redis was away, nobody took it
    old = keeper.token
    await keeper.tick()
    assert not keeper.lost.is_set() and keeper.token > old
    await keeper.release()
    assert await a.owner(ROOM) is None


async def test_writes_without_a_lease_are_fenced(make_store: Callable[..., StateStore]) -> None:
    with pytest.raises(Fenced):
        await make_store().apply(ROOM, "x", WRITE, fence=7)


async def test_a_write_fenced_by_our_own_reacquired_lease_is_sent_again(
    clients: Callable[[], aioredis.Redis],
) -> None:
    """Soak, 60 callers: a queued caller join was in flight with token 1 while the node
    re-acquired its own expired lease (token 2); Redis rejected it and it was dropped."""
    from bridge.node.mirror import MirrorEngine
    from bridge.state.outbox import Outbox, PendingWrite

    store = StateStore(clients(), op_timeout=1.0)
    a = replica(clients(), "node-a")
    old = await a.acquire(ROOM)
    assert await a.release(old)  # as if it expired
    new = await a.acquire(ROOM)
    assert new.token > old.token
    tokens = iter([old.token, new.token])  # read before the re-acquisition, then after
    outbox = Outbox()
    outbox.put(PendingWrite(ROOM, "join-bob", tuple(WRITE)))
    engine = MirrorEngine(store, outbox)
    engine.fence_for = lambda _room: next(tokens, new.token)
    assert await engine.catch_up() == 1
    assert "sip:bob@pbx" in (await store.load_room(ROOM)).mutes

    # fenced while we hold no newer token: another node owns the room, nothing is retried
    b = replica(clients(), "node-b")
    assert await a.release(new)
    theirs = await b.acquire(ROOM)
    outbox.put(PendingWrite(ROOM, "late-write", (put("sip:eve@pbx", MuteRecord()),)))
    engine.fence_for = lambda _room: new.token
    assert await engine.catch_up() == 1  # dropped (logged state.queued_dropped)
    assert "sip:eve@pbx" not in (await store.load_room(ROOM)).mutes
    assert (await b.owner(ROOM)).token == theirs.token  # type: ignore[union-attr]
