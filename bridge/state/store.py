"""Typed async store over redis.asyncio: the one source of truth for links and moderation.

Every update is one Lua script keyed by the event id: a replayed or duplicated event returns
``duplicate`` and changes nothing; an update whose values are already there returns
``unchanged`` and does not bump the room version. Reads of a whole room are one MULTI/EXEC
snapshot. Any Redis outage surfaces as :class:`StateUnavailable` within ``op_timeout``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bridge.core.records import (
    META_FIELDS,
    ROW_TYPES,
    TABLES,
    BanRecord,
    BindingRecord,
    Change,
    ConferenceRecord,
    Delete,
    LegRecord,
    LinkRecord,
    MuteRecord,
    RoleRecord,
    RoomState,
    SubjectRecord,
    change_to_wire,
    put,
)
from bridge.state.errors import Fenced, NotReplicated, StateUnavailable
from bridge.state.keys import Keys, check_room
from bridge.state.scripts import APPLY

T = TypeVar("T")
ApplyStatus = Literal["applied", "unchanged", "duplicate"]

#: Errors that mean "Redis is not there right now" (as opposed to a bug in our commands).
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    TimeoutError,
    ConnectionError,
    OSError,
)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    status: ApplyStatus
    version: int  # the room version after the event (or when it was first applied)
    changed: int = 0  # fields changed


def describe(client: aioredis.Redis) -> str:
    """Where Redis is, without credentials, for messages."""
    pool = client.connection_pool
    service = getattr(pool, "service_name", None)
    if service is not None:  # redis.asyncio.sentinel.SentinelConnectionPool
        return f"redis primary {service!r} (via Sentinel)"
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"redis at {kwargs['path']}"
    return f"redis at {kwargs.get('host')}:{kwargs.get('port')}"


_FAILOVER_REPLIES = ("READONLY", "MASTERDOWN", "LOADING", "read only replica")


def _failing_over(error: ResponseError) -> bool:
    """A reply that means "not the primary right now", also when it comes wrapped in a
    script or pipeline error (a write inside our Lua scripts raises it there)."""
    if isinstance(error, ReadOnlyError):
        return True
    text = str(error)
    return any(reply in text for reply in _FAILOVER_REPLIES)


class ReplicaAcks:
    """``WAIT numreplicas timeout`` after a write, on the same connection (a pipeline):
    with Sentinel, a write counts as done only once a replica that could be promoted has
    it, so a failover never loses an acknowledged change."""

    def __init__(self, replicas: int = 0, timeout: float = 0.5) -> None:
        self.replicas = replicas
        self.timeout_ms = max(1, int(timeout * 1000))

    def __bool__(self) -> bool:
        return self.replicas > 0

    async def run(
        self, client: aioredis.Redis, write: Callable[[Any], Awaitable[Any]]
    ) -> tuple[Any, int]:
        """``write(pipe)`` queues one write on a pipeline; returns its result and how many
        replicas acknowledged it."""
        pipe = client.pipeline(transaction=False)
        await write(pipe)
        pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
        result, acked = await pipe.execute()
        return result, int(acked)

    def check(self, acked: int, what: str, where: str) -> None:
        if acked < self.replicas:
            raise NotReplicated(
                what,
                where,
                f"{acked} of {self.replicas} replicas confirmed it within {self.timeout_ms} ms",
            )


class RedisCaller:
    """Runs one Redis call with a deadline and turns outages into StateUnavailable.

    The deadline matters: a paused or partitioned Redis never answers, and a moderator's
    change must be refused (or queued) with a message, not hang the supervisor.
    """

    def __init__(self, client: aioredis.Redis, op_timeout: float) -> None:
        self.client = client
        self.op_timeout = op_timeout
        self.where = describe(client)

    async def __call__(self, what: str, call: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self.op_timeout):
                return await call
        except ResponseError as error:
            if not _failing_over(error):
                raise
            # The server we reached is a replica now (a failover is under way, or we still
            # hold a connection to the old primary): drop the connections so the next call
            # asks Sentinel again, and report an outage (facts are queued, not lost).
            await self.client.connection_pool.disconnect()
            raise StateUnavailable(what, self.where, error) from error
        except OUTAGE_ERRORS as error:
            if isinstance(error, TimeoutError) and not str(error):
                error = TimeoutError(f"no answer within {self.op_timeout:g} s")
            raise StateUnavailable(what, self.where, error) from error


class StateStore:
    """Rooms, legs, mutes, bans, roles, bindings and subject of every room, in Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "sipmuc",
        op_timeout: float = 1.0,
        event_ttl: float = 86400.0,
        change_log_length: int = 1000,
        deadline_margin: float | None = 2.0,
        acks: ReplicaAcks | None = None,
    ) -> None:
        """``deadline_margin``: a write that reaches Redis later than ``op_timeout`` plus
        this margin (clock skew allowance) after it was sent is dropped by the script, so a
        change reported as refused cannot happen later; None disables the check."""
        self.deadline_margin = deadline_margin
        self.acks = acks or ReplicaAcks()
        self.client = client
        self.keys = Keys(prefix)
        self.call = RedisCaller(client, op_timeout)
        self.event_ttl_ms = int(event_ttl * 1000)
        self.change_log_length = change_log_length
        self._apply = client.register_script(APPLY)

    @property
    def where(self) -> str:
        return self.call.where

    async def ping(self) -> bool:
        """True when Redis answers now (never raises)."""
        try:
            await self.call("ping", self.client.ping())
        except StateUnavailable:
            return False
        return True

    # ---- writes -------------------------------------------------------------------------

    async def apply(
        self,
        room: str,
        event_id: str,
        changes: Sequence[Change],
        *,
        fence: int | None = None,
        what: str = "record the change",
    ) -> ApplyResult:
        """Apply all ``changes`` of one event atomically, at most once per ``event_id``.

        ``fence``: the caller's lease token; the write is rejected with :class:`Fenced` when
        the room's lease holds another token (the caller lost the room).
        """
        if not event_id:
            raise ValueError("event_id is required (it makes the update idempotent)")
        for change in changes:
            if change.table == "meta" and change.key not in META_FIELDS:
                raise ValueError(f"unknown meta field {change.key!r}")
        keys = [
            self.keys.table(room, "meta"),
            self.keys.event(room, event_id),
            self.keys.changes(room),
            self.keys.lease(room),
            *(self.keys.table(room, t) for t in TABLES[1:]),
        ]
        ops = json.dumps([change_to_wire(c) for c in changes], separators=(",", ":"))
        args: list[str | int] = [
            self.event_ttl_ms,
            "" if fence is None else str(fence),
            ops,
            self.change_log_length,
            event_id,
            ""
            if self.deadline_margin is None
            else int((time.time() + self.call.op_timeout + self.deadline_margin) * 1000),
        ]
        if self.acks:

            async def write(pipe: Any) -> Any:
                return await self._apply(keys=keys, args=args, client=pipe)

            raw, acked = await self.call(what, self.acks.run(self.client, write))
            if int(raw[0]) in (0, 1):  # applied now or before: it must be on a replica
                self.acks.check(acked, what, self.where)
        else:
            raw = await self.call(what, self._apply(keys=keys, args=args))
        status, version, extra = int(raw[0]), int(raw[1]), str(raw[2])
        if status == -1:
            raise Fenced(check_room(room), fence, extra)
        if status == -2:
            raise StateUnavailable(what, self.where, "the write reached it after its deadline")
        if status == 0:
            return ApplyResult("duplicate", version)
        changed = int(extra)
        return ApplyResult("applied" if changed else "unchanged", version, changed)

    async def link_room(
        self,
        room: str,
        muc_jid: str,
        *,
        event_id: str,
        actor: str = "",
        at: float = 0.0,
        origin: str = "",
        fence: int | None = None,
    ) -> ApplyResult:
        """Glue conference ``room`` to ``muc_jid`` (index first, so restore always sees it)."""
        room_key = check_room(room)
        jid = muc_jid.strip().lower()
        if not jid or "@" not in jid or "/" in jid:
            raise ValueError(f"not a bare MUC room JID: {muc_jid!r}")
        previous = await self.call(
            "read the room links", self.client.hget(self.keys.links, room_key)
        )
        pipe = self.client.pipeline(transaction=True)
        if previous and previous != jid:
            pipe.hdel(self.keys.links_by_muc, previous)
        pipe.hset(self.keys.links, room_key, jid)
        pipe.hset(self.keys.links_by_muc, jid, room_key)
        await self.call("link the room", pipe.execute())
        record = LinkRecord(muc_jid=jid, actor=actor, at=at, origin=origin)
        return await self.apply(room, event_id, [put("link", record)], fence=fence,
                                what="link the room")  # fmt: skip

    async def unlink_room(
        self, room: str, *, event_id: str, fence: int | None = None
    ) -> ApplyResult:
        """Remove the link; moderation records stay (a relink finds its bans again)."""
        room_key = check_room(room)
        result = await self.apply(room, event_id, [Delete("meta", "link")], fence=fence,
                                  what="unlink the room")  # fmt: skip
        jid = await self.call("read the room links", self.client.hget(self.keys.links, room_key))
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.keys.links, room_key)
        if jid:
            pipe.hdel(self.keys.links_by_muc, jid)
        await self.call("unlink the room", pipe.execute())
        return result

    # ---- reads --------------------------------------------------------------------------

    async def linked_rooms(self) -> dict[str, str]:
        """conference → MUC JID of every linked room (what a starting node restores)."""
        data: dict[str, str] = await self.call(
            "read the room links", self.client.hgetall(self.keys.links)
        )
        return dict(data)

    async def room_for_muc(self, muc_jid: str) -> str | None:
        room: str | None = await self.call(
            "read the room links", self.client.hget(self.keys.links_by_muc, muc_jid.lower())
        )
        return room

    async def load_room(self, room: str) -> RoomState:
        """The whole room in one consistent snapshot (MULTI/EXEC)."""
        room_key = check_room(room)
        pipe = self.client.pipeline(transaction=True)
        for table in TABLES:
            pipe.hgetall(self.keys.table(room, table))
        raw: list[dict[str, str]] = await self.call("read the room state", pipe.execute())
        meta = raw[0]
        rows: dict[str, dict[str, Any]] = {}
        for table, data in zip(TABLES[1:], raw[1:], strict=True):
            kind = ROW_TYPES[table]
            rows[table] = {key: kind.from_json(text) for key, text in data.items()}
        link = LinkRecord.from_json(meta["link"]) if "link" in meta else None
        subject = SubjectRecord.from_json(meta["subject"]) if "subject" in meta else None
        conference = (
            ConferenceRecord.from_json(meta["conference"]) if "conference" in meta else None
        )
        return RoomState(
            room=room_key,
            version=int(meta.get("version", 0)),
            link=link,
            subject=subject,
            conference=conference,
            legs=_typed(rows["legs"], LegRecord),
            mutes=_typed(rows["mutes"], MuteRecord),
            bans=_typed(rows["bans"], BanRecord),
            roles=_typed(rows["roles"], RoleRecord),
            bindings=_typed(rows["bindings"], BindingRecord),
        )

    async def change_log(self, room: str, count: int = 100) -> list[dict[str, Any]]:
        """Latest applied changes, newest first (audit: who did what, when, from where)."""
        entries: list[tuple[str, dict[str, str]]] = await self.call(
            "read the change log", self.client.xrevrange(self.keys.changes(room), count=count)
        )
        return [
            {"id": entry_id, "version": int(f["version"]), "event": f["event"],
             "ops": json.loads(f["ops"])}
            for entry_id, f in entries
        ]  # fmt: skip

    async def forget_room(self, room: str) -> None:
        """Delete every record of a room (not its fencing counter). Operator use only."""
        keys = [self.keys.table(room, t) for t in TABLES] + [self.keys.changes(room)]
        await self.call("delete the room", self.client.delete(*keys))


def _typed(rows: dict[str, Any], kind: type[T]) -> dict[str, T]:
    for value in rows.values():
        if not isinstance(value, kind):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return rows


def changes_for(records: Iterable[tuple[str, Any]]) -> list[Change]:
    """Helper for tests and tools: ``[(key, record), …]`` → Put changes."""
    return [put(key, record) for key, record in records]


__all__ = [
    "OUTAGE_ERRORS",
    "ApplyResult",
    "ApplyStatus",
    "RedisCaller",
    "StateStore",
    "changes_for",
    "describe",
]
