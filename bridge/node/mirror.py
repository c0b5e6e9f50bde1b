"""The supervisor's one call per event: policy → record in Redis → actions.

``await engine.handle(event)`` runs the pure policy against the cached room state, records
the resulting changes atomically (idempotent by event id, fenced by the room lease), and only
then returns the actions to perform. Redis down: facts are applied from the cache and queued
(:mod:`bridge.state.outbox`), requests are refused with a message and feedback actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from bridge.core.mirror_events import Action, DtmfCommand, MirrorEvent, Restore, is_durable
from bridge.core.policy import InviteVerdict, admit_invite, decide, refusal
from bridge.core.records import Change, RoomState
from bridge.logs import get_logger
from bridge.state.errors import Fenced, NotReplicated, StateUnavailable
from bridge.state.keys import check_room
from bridge.state.outbox import Outbox, PendingWrite
from bridge.state.store import ApplyResult, StateStore

log = get_logger(__name__)

OutcomeStatus = Literal["applied", "unchanged", "duplicate", "queued", "refused", "local"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """``actions`` are to be performed now (also for ``queued``; for ``refused`` they are
    the feedback to the requester). ``message`` explains a refusal or a queueing."""

    status: OutcomeStatus
    actions: tuple[Action, ...] = ()
    version: int = 0
    message: str = ""


@dataclass
class MirrorEngine:
    store: StateStore
    outbox: Outbox = field(default_factory=Outbox)
    #: lease token of the room on this node (None = unfenced, e.g. a single node)
    fence_for: Callable[[str], int | None] = lambda _room: None
    recent_ids: int = 4096
    _rooms: dict[str, RoomState] = field(default_factory=dict)
    _recent: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: rooms whose cached state is a stand-in (Redis failed when it was first needed):
    #: admission must not read bans, lock or PIN from it (DESIGN §3: fail closed)
    _unknown: set[str] = field(default_factory=set)

    # ---- room cache ---------------------------------------------------------------------

    def cached(self, room: str) -> RoomState | None:
        return self._rooms.get(check_room(room))

    async def load(self, room: str) -> RoomState:
        """Read the room from Redis into the cache (raises StateUnavailable)."""
        state = await self.store.load_room(room)
        self._rooms[state.room] = state
        self._unknown.discard(state.room)
        return state

    def known(self, room: str) -> bool:
        """The cached state of ``room`` was read from Redis (not absent, not a stand-in
        made while Redis was unreachable): bans, lock and PIN in it can be trusted."""
        key = check_room(room)
        return key in self._rooms and key not in self._unknown

    def forget(self, room: str) -> None:
        """Drop a room from the cache (lease lost: another node owns it now)."""
        self._rooms.pop(check_room(room), None)
        self._unknown.discard(check_room(room))

    async def restore(
        self, room: str, live_legs: frozenset[str] | None = None, *, event_id: str = ""
    ) -> Outcome:
        """After a restart or takeover: load the room and re-apply it to both sides."""
        await self.load(room)
        event = Restore(
            event_id=event_id or f"restore:{room}:{time.time_ns()}",
            room=room,
            origin="restore",
            actor="bridge",
            at=time.time(),
            live_legs=live_legs,
        )
        return await self.handle(event)

    async def admit_invite(self, room: str, caller_uri: str, bound_jid: str = "") -> InviteVerdict:
        """403 for a banned caller even right after a restart (state read from Redis when
        not cached; the cached state when Redis is down)."""
        state = self.cached(room)
        if state is None:
            state = await self.load(room)
        return admit_invite(state, caller_uri, bound_jid)

    # ---- events -------------------------------------------------------------------------

    async def handle(self, event: MirrorEvent) -> Outcome:
        async with self._lock:  # one event at a time: decisions see the previous result
            return await self._handle(event)

    async def _handle(self, event: MirrorEvent) -> Outcome:
        room = check_room(event.room)
        state = self._rooms.get(room)
        if state is None:
            try:
                state = await self.load(room)
            except StateUnavailable as error:
                if not is_durable(event):
                    return self._refuse(event, error)
                state = RoomState(room)  # nothing known: act on the event alone
                self._rooms[room] = state
                self._unknown.add(room)  # ... but never admit anyone on it
        decision = decide(event, state)
        if not decision.changes:
            # messages and no-ops touch no state; drop a duplicate delivery locally
            if event.event_id in self._recent:
                return Outcome("duplicate", version=state.version)
            self._remember(event.event_id)
            return Outcome("unchanged", decision.actions, state.version)
        try:
            if len(self.outbox):
                await self._drain()
            result = await self._apply(room, event.event_id, decision.changes,
                                       describe_event(event))  # fmt: skip
        except NotReplicated as error:
            # The primary has it, a failover could lose it: queue it like a fact (for a
            # request too: it did happen), so it is written again until a replica has it.
            return self._queue(event, state, decision.changes, decision.actions, error)
        except StateUnavailable as error:
            if not is_durable(event):
                return self._refuse(event, error)
            return self._queue(event, state, decision.changes, decision.actions, error)
        if result.status == "duplicate":
            await self.load(room)  # the cache may be behind whoever applied it first
            return Outcome("duplicate", version=result.version)
        new_state, _ = state.apply(decision.changes)
        self._rooms[room] = _with_version(new_state, result.version)
        self._remember(event.event_id)
        return Outcome(result.status, decision.actions, result.version)

    async def handle_locally(self, event: MirrorEvent) -> Outcome:
        """Decide and apply to the cached state only, never to Redis: for a room this node
        handed over while draining. Another replica owns it and records the truth; the
        calls still up here follow the room's moderation all the same."""
        async with self._lock:
            room = check_room(event.room)
            state = self._rooms.get(room) or RoomState(room)
            decision = decide(event, state)
            if event.event_id in self._recent:
                return Outcome("duplicate", version=state.version)
            self._remember(event.event_id)
            self._rooms[room], _ = state.apply(decision.changes)
            return Outcome("local", decision.actions, state.version)

    async def record(
        self, room: str, event_id: str, changes: tuple[Change, ...], *, what: str
    ) -> Outcome:
        """Record changes no mirror event describes (an owner's lock or PIN, issue 8) with
        the same idempotence, fencing and cache update as :meth:`handle`. A request, not a
        fact: while Redis is down it raises StateUnavailable and nothing changes."""
        async with self._lock:
            key = check_room(room)
            state = self._rooms.get(key) or await self.load(key)
            result = await self._apply(key, event_id, changes, what)
            if result.status == "duplicate":
                await self.load(key)
                return Outcome("duplicate", version=result.version)
            new_state, _ = state.apply(changes)
            self._rooms[key] = _with_version(new_state, result.version)
            self._remember(event_id)
            return Outcome(result.status, (), result.version)

    def _refuse(self, event: MirrorEvent, error: StateUnavailable) -> Outcome:
        log.warning("state.refused", room=event.room, kind=type(event).__name__, error=str(error))
        return Outcome("refused", refusal(event, str(error)).actions, message=str(error))

    def _queue(
        self,
        event: MirrorEvent,
        state: RoomState,
        changes: tuple[Change, ...],
        actions: tuple[Action, ...],
        error: StateUnavailable,
    ) -> Outcome:
        item = PendingWrite(check_room(event.room), event.event_id, changes, time.time())
        self.outbox.put(item, self.store.where)  # OutboxFull propagates: nothing is lost silently
        new_state, _ = state.apply(item.changes)
        self._rooms[item.room] = new_state
        self._remember(event.event_id)
        message = f"{error} — this change was applied and queued; it is recorded when Redis is back"
        log.warning("state.queued", room=item.room, kind=type(event).__name__,
                    pending=len(self.outbox))  # fmt: skip
        return Outcome("queued", actions, state.version, message)

    def _remember(self, event_id: str) -> None:
        self._recent[event_id] = None
        while len(self._recent) > self.recent_ids:
            self._recent.popitem(last=False)

    # ---- catch-up -----------------------------------------------------------------------

    async def catch_up(self) -> int:
        """Record every queued change in order, then re-read the rooms concerned.
        Raises StateUnavailable when Redis is still down; returns the number written."""
        async with self._lock:
            return await self._drain()

    async def _drain(self) -> int:
        done = 0
        rooms: set[str] = set()
        while (item := self.outbox.peek()) is not None:
            try:
                await self._apply(item.room, item.event_id, item.changes,
                                  "record a queued change")  # fmt: skip
            except Fenced as error:
                log.error("state.queued_dropped", room=item.room, event_id=item.event_id,
                          error=str(error))  # fmt: skip
            self.outbox.pop()
            rooms.add(item.room)
            done += 1
        for room in rooms:
            await self.load(room)
        if done:
            log.info("state.caught_up", written=done, rooms=sorted(rooms))
        return done

    async def _apply(
        self, room: str, event_id: str, changes: tuple[Change, ...], what: str
    ) -> ApplyResult:
        """``store.apply`` fenced with our lease token on ``room``.

        A write in flight while this node re-acquired its own expired lease carries the old
        token and is rejected; it is ours all the same, so it is sent again once with the
        new token (seen in a soak: a caller's join was dropped from Redis that way). Fenced
        again, or fenced while we hold no newer token: another node owns the room.
        """
        token = self.fence_for(room)
        try:
            return await self.store.apply(room, event_id, changes, fence=token, what=what)
        except Fenced:
            renewed = self.fence_for(room)
            if renewed is None or renewed == token:
                raise
            log.info("state.refenced", room=room, event_id=event_id, old=token, new=renewed)
            return await self.store.apply(room, event_id, changes, fence=renewed, what=what)

    async def run_catch_up(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """Background task: retry the outbox every ``interval`` until ``stop``."""
        while not stop.is_set():
            if len(self.outbox):
                with contextlib.suppress(StateUnavailable):
                    await self.catch_up()
            try:
                async with asyncio.timeout(interval):
                    await stop.wait()
            except TimeoutError:
                pass


_WHAT = {
    "OccupantVoiceChanged": "record the voice change",
    "OccupantKicked": "record the kick",
    "OccupantBanned": "record the ban",
    "OccupantUnbanned": "record the unban",
    "OccupantPrivilegeChanged": "record the role change",
    "SubjectChanged": "record the subject",
    "RoomDestroyed": "record the end of the room",
    "CallerJoined": "record the new caller",
    "CallerLeft": "record the caller leaving",
    "CallerPrivilegeChanged": "make this caller a moderator",
    "CallerBanned": "ban this caller",
    "ConferenceSubjectChanged": "change the subject",
    "ConferenceEnded": "record the end of the conference",
    "Restore": "restore the room",
}


def describe_event(event: MirrorEvent) -> str:
    """What the change is, in words, for refusal messages."""
    if isinstance(event, DtmfCommand):
        return {"self-mute": "mute or unmute you", "mute-all": "mute everyone",
                "unmute-all": "unmute everyone"}[event.command]  # fmt: skip
    return _WHAT.get(type(event).__name__, "record the change")


def _with_version(state: RoomState, version: int) -> RoomState:
    return replace(state, version=version)


__all__ = ["MirrorEngine", "Outcome", "OutcomeStatus"]
