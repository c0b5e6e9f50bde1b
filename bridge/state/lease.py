"""Room ownership across replicas: a Redis lease with a TTL and a fencing token.

One node owns a room at a time: it serves the room's INVITEs, runs its MUC puppets and is the
only writer of its state. Others answer INVITEs with ``302`` to the owner's SIP contact,
which is stored with the lease. The lease is a key ``SET NX PX`` with a token from ``INCR``
on a counter that is never reset: each new owner gets a larger token. Renew and release are
Lua scripts that check node *and* token, and every state write carries the token
(:meth:`StateStore.apply` ``fence=``), so a node that was paused past its TTL and comes back
believing it still owns the room is rejected instead of overwriting the new owner's truth.

When the owner dies its lease expires after ``ttl``; any replica calling :meth:`acquire`
(the keeper's :meth:`LeaseManager.claim_orphans` loop or the next INVITE) takes the room.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from bridge.logs import get_logger
from bridge.state.errors import StateUnavailable
from bridge.state.keys import Keys, check_room
from bridge.state.scripts import ACQUIRE, RENEW_OR_RELEASE
from bridge.state.store import RedisCaller, ReplicaAcks

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Lease:
    room: str
    node_id: str
    contact: str  # SIP URI other replicas redirect (302) this room's INVITEs to
    token: int  # fencing token: larger = newer owner
    ttl_ms: int  # remaining when read


@dataclass(frozen=True, slots=True)
class Serve:
    """This node owns the room: accept the INVITE here."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class RedirectTo:
    """Another node owns the room: ``302 Moved Temporarily`` with ``Contact: <contact>``."""

    contact: str
    node_id: str


Route = Serve | RedirectTo


class LeaseManager:
    """Acquire, renew, release and look up room leases for one node."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        node_id: str,
        contact_for: Callable[[str], str],
        ttl: float = 10.0,
        prefix: str = "sipmuc",
        op_timeout: float = 1.0,
        acks: ReplicaAcks | None = None,
    ) -> None:
        if not node_id:
            raise ValueError("node_id is required")
        self.client = client
        self.node_id = node_id
        self.contact_for = contact_for
        self.ttl_ms = max(1, int(ttl * 1000))
        self.keys = Keys(prefix)
        self.call = RedisCaller(client, op_timeout)
        self.acks = acks or ReplicaAcks()
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW_OR_RELEASE)

    async def acquire(self, room: str) -> Lease:
        """Take the room if free (or already ours: then renew). Returns the current lease,
        whoever holds it; compare ``lease.node_id`` with ours."""
        room_key = check_room(room)
        keys = [self.keys.lease(room), self.keys.fence(room)]
        args: list[str | int] = [self.node_id, self.contact_for(room_key), self.ttl_ms]
        what = "take the room lease"
        raw: list[Any]
        if self.acks:
            # The fencing counter must survive a failover: a token handed out twice would
            # let two owners write (the lost INCR is given again to the next owner).

            async def write(pipe: Any) -> Any:
                return await self._acquire(keys=keys, args=args, client=pipe)

            raw, acked = await self.call(what, self.acks.run(self.client, write))
            self.acks.check(acked, what, self.call.where)
        else:
            raw = await self.call(what, self._acquire(keys=keys, args=args))
        lease = Lease(room_key, str(raw[2]), str(raw[3]), int(raw[1]), int(raw[4]))
        if int(raw[0]) == 1:
            log.debug("lease.held", room=room_key, token=lease.token)
        return lease

    def owns(self, lease: Lease) -> bool:
        return lease.node_id == self.node_id

    async def renew(self, lease: Lease) -> bool:
        """Extend our lease; False when it is no longer ours (expired or taken)."""
        keys = [self.keys.lease(lease.room)]
        args: list[str | int] = [self.node_id, str(lease.token), self.ttl_ms]
        done = await self.call("renew the room lease", self._renew(keys=keys, args=args))
        return bool(int(done))

    async def release(self, lease: Lease) -> bool:
        """Give the room up (clean shutdown): another node may take it at once."""
        keys = [self.keys.lease(lease.room)]
        args: list[str | int] = [self.node_id, str(lease.token), ""]
        done = await self.call("release the room lease", self._renew(keys=keys, args=args))
        return bool(int(done))

    async def owner(self, room: str) -> Lease | None:
        """Who owns the room now (None = nobody: the room is free to take)."""
        key = self.keys.lease(room)
        pipe = self.client.pipeline(transaction=True)
        pipe.get(key)
        pipe.pttl(key)
        value, pttl = await self.call("look up the room owner", pipe.execute())
        if value is None:
            return None
        data = json.loads(value)
        return Lease(check_room(room), data["node"], data["contact"], int(data["token"]), pttl)

    async def route_invite(self, room: str) -> Route:
        """Serve here if we own (or can take) the room, else redirect to the owner."""
        lease = await self.acquire(room)
        if self.owns(lease):
            return Serve(lease)
        return RedirectTo(lease.contact, lease.node_id)

    async def heartbeat(self) -> None:
        """Say this node is alive for another ``ttl``: other replicas keep its calls' legs
        (a draining node's calls go on after it handed its rooms over) instead of removing
        them as ghosts. Called every lease round."""
        key = self.keys.node(self.node_id)
        await self.call("refresh this node's heartbeat", self.client.set(key, "1", px=self.ttl_ms))

    async def stop_heartbeat(self) -> None:
        """Clean shutdown: the other replicas may drop what is left of our calls at once."""
        key = self.keys.node(self.node_id)
        await self.call("remove this node's heartbeat", self.client.delete(key))

    async def alive(self, node_ids: Iterable[str]) -> set[str]:
        """Which of ``node_ids`` have a live heartbeat (this node always counts)."""
        wanted = sorted({n for n in node_ids if n and n != self.node_id})
        found = {self.node_id}
        if wanted:
            beats = await self.call(
                "read the heartbeats of other nodes",
                self.client.mget([self.keys.node(n) for n in wanted]),
            )
            found |= {n for n, beat in zip(wanted, beats, strict=True) if beat is not None}
        return found

    async def claim_orphans(self, rooms: Iterable[str]) -> list[Lease]:
        """Take every listed room that has no owner (its owner died): the takeover step."""
        taken: list[Lease] = []
        for room in rooms:
            if await self.owner(room) is None:
                lease = await self.acquire(room)
                if self.owns(lease):
                    log.info("lease.taken_over", room=lease.room, token=lease.token)
                    taken.append(lease)
        return taken


class LeaseKeeper:
    """Keeps one lease alive (renew every ttl/3) and says when it is lost.

    Redis outages do not end calls: while Redis is unreachable the keeper keeps retrying and
    the node keeps serving. When Redis answers again, a lease that expired meanwhile is taken
    again if still free (new token: :attr:`token` follows) or reported lost via ``on_lost``.
    """

    def __init__(
        self,
        manager: LeaseManager,
        lease: Lease,
        on_lost: Callable[[Lease], Awaitable[None]] | None = None,
        interval: float | None = None,
    ) -> None:
        self.manager = manager
        self.lease = lease
        self.on_lost = on_lost
        self.interval = interval if interval is not None else manager.ttl_ms / 3000
        self.lost = asyncio.Event()
        self.last_renewed = time.monotonic()

    @property
    def token(self) -> int:
        return self.lease.token

    async def run(self) -> None:
        while not self.lost.is_set():
            await asyncio.sleep(self.interval)
            await self.tick()

    async def tick(self) -> None:
        """One renewal round (public so tests can drive it without sleeping)."""
        try:
            if await self.manager.renew(self.lease):
                self.last_renewed = time.monotonic()
                return
            lease = await self.manager.acquire(self.lease.room)
        except StateUnavailable as error:
            log.warning("lease.renew_failed", room=self.lease.room, error=str(error))
            return
        if self.manager.owns(lease):
            log.warning("lease.reacquired", room=lease.room, old=self.lease.token, new=lease.token)
            self.lease = lease
            self.last_renewed = time.monotonic()
            return
        log.error("lease.lost", room=lease.room, owner=lease.node_id, token=lease.token)
        self.lost.set()
        if self.on_lost is not None:
            await self.on_lost(self.lease)

    async def release(self) -> None:
        self.lost.set()
        try:
            await self.manager.release(self.lease)
        except StateUnavailable as error:
            log.warning("lease.release_failed", room=self.lease.room, error=str(error))


__all__ = ["Lease", "LeaseKeeper", "LeaseManager", "RedirectTo", "Route", "Serve"]
