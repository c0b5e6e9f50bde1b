"""The Redis store against a real redis-server: idempotence, atomicity, restore after restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bridge.core.events import MuteLeg
from bridge.core.mirror_events import (
    CallerLeft,
    DtmfCommand,
    JoinPuppet,
    OccupantBanned,
    OccupantPrivilegeChanged,
    OccupantVoiceChanged,
    SetConferenceRoles,
    SubjectChanged,
)
from bridge.core.records import (
    BindingRecord,
    Delete,
    LegRecord,
    MuteRecord,
    RoomState,
    put,
)
from bridge.devstack.redis_server import RedisServer
from bridge.node.mirror import MirrorEngine
from bridge.state.store import StateStore
from tests.state.state_helpers import MUC, ROOM, ev, joined

BOB = "sip:+4912345@pbx.example"
MUTE = put(BOB, MuteRecord(kind="moderator", actor="carol", at=1.0, origin="muc"))


async def test_duplicate_event_id_changes_nothing(store: StateStore) -> None:
    first = await store.apply(ROOM, "ev-1", [MUTE])
    again = await store.apply(ROOM, "ev-1", [Delete("mutes", BOB)])  # same id: ignored
    same_value = await store.apply(ROOM, "ev-2", [MUTE])  # new id, nothing new
    assert (first.status, again.status, same_value.status) == ("applied", "duplicate", "unchanged")
    assert first.version == again.version == same_value.version
    state = await store.load_room(ROOM)
    assert state.mutes[BOB].actor == "carol" and state.mutes[BOB].origin == "muc"
    assert state.version == first.version


async def test_concurrent_duplicates_apply_exactly_once(
    make_store: Callable[..., StateStore], store: StateStore
) -> None:
    replicas = [make_store() for _ in range(4)]
    toggle = [put(BOB, MuteRecord(kind="self"))]
    results = await asyncio.gather(
        *(r.apply(ROOM, "dtmf-42", toggle) for r in replicas for _ in range(5))
    )
    assert sorted(r.status for r in results).count("applied") == 1
    assert {r.version for r in results} == {(await store.load_room(ROOM)).version}


async def test_one_event_is_all_or_nothing_for_readers(store: StateStore) -> None:
    """A leg and its binding are written by one script: no snapshot sees one without the other."""
    seen: list[tuple[bool, bool]] = []

    async def write() -> None:
        for i in range(100):
            leg = LegRecord(leg_id=f"l{i}", caller_uri=f"sip:c{i}@x", participant=f"xmpp:u{i}@x")
            binding = BindingRecord(jid=f"u{i}@x", verified_by="config")
            await store.apply(ROOM, f"join-{i}", [put(f"l{i}", leg), put(f"sip:c{i}@x", binding)])

    async def read() -> None:
        for _ in range(100):
            state = await store.load_room(ROOM)
            for i in range(100):
                seen.append((f"l{i}" in state.legs, f"sip:c{i}@x" in state.bindings))

    await asyncio.gather(write(), read())
    assert all(a == b for a, b in seen)


async def test_redis_state_equals_the_pure_model(engine: MirrorEngine, store: StateStore) -> None:
    events = [
        joined("leg-bob", BOB),
        joined("leg-alice", "sip:alice@pbx", bound_jid="alice@localhost", verified_by="config"),
        ev(OccupantVoiceChanged, "muc", occupant_jid="leg-bob@bridge.localhost", voiced=False),
        ev(OccupantPrivilegeChanged, "muc", occupant_jid="alice@localhost", privilege="owner"),
        ev(SubjectChanged, "muc", subject="Standup"),
        ev(DtmfCommand, "sip", leg_id="leg-alice", command="self-mute"),
        ev(OccupantBanned, "muc", occupant_jid="mallory@localhost", reason="spam"),
        ev(CallerLeft, "sip", leg_id="leg-alice"),
    ]
    for event in events:
        await engine.handle(event)
    cached = engine.cached(ROOM)
    stored = await store.load_room(ROOM)
    assert cached == stored
    assert stored.version == 1 + len(events)  # the link, then one per changing event


async def test_change_log_says_who_when_and_from_where(
    engine: MirrorEngine, store: StateStore
) -> None:
    await engine.handle(joined("leg-bob", BOB))
    await engine.handle(
        ev(
            OccupantVoiceChanged,
            "muc",
            occupant_jid="leg-bob@bridge.localhost",
            voiced=False,
            actor="carol@localhost",
        )
    )
    latest = (await store.change_log(ROOM, 1))[0]
    record = MuteRecord.from_json(latest["ops"][0]["r"])
    assert (record.actor, record.origin, record.at) == ("carol@localhost", "muc", 1700000000.0)


async def test_links_index_and_unlink_keeps_moderation(store: StateStore) -> None:
    assert await store.linked_rooms() == {ROOM: MUC}
    assert await store.room_for_muc(MUC.upper()) == ROOM
    await store.apply(ROOM, "ban", [put(BOB, MuteRecord())])
    await store.unlink_room(ROOM, event_id="unlink-1")
    assert await store.linked_rooms() == {}
    state = await store.load_room(ROOM)
    assert state.link is None and BOB in state.mutes


async def test_bad_input_is_refused_before_redis(store: StateStore) -> None:
    with pytest.raises(ValueError):
        await store.apply(ROOM, "", [MUTE])
    with pytest.raises(ValueError):
        await store.apply("bad{room}", "x", [MUTE])
    with pytest.raises(ValueError):
        await store.apply(ROOM, "x", [Delete("meta", "version")])
    with pytest.raises(ValueError):
        await store.link_room(ROOM, "not-a-jid", event_id="x")


async def test_restart_restores_and_reapplies(
    redis_server: RedisServer, make_store: Callable[..., StateStore], engine: MirrorEngine
) -> None:
    """Links, mutes, bans and roles survive a Redis restart (AOF) and a bridge restart."""
    await engine.handle(joined("leg-bob", BOB))
    await engine.handle(
        joined("leg-alice", "sip:alice@pbx", bound_jid="alice@localhost", verified_by="config")
    )
    await engine.handle(
        ev(OccupantVoiceChanged, "muc", occupant_jid="leg-bob@bridge.localhost", voiced=False)
    )
    await engine.handle(
        ev(OccupantPrivilegeChanged, "muc", occupant_jid="alice@localhost", privilege="moderator")
    )
    await engine.handle(ev(OccupantBanned, "muc", occupant_jid="mallory@localhost"))
    await engine.handle(joined("leg-eve", "sip:eve@pbx"))
    await engine.handle(ev(OccupantBanned, "muc", occupant_jid="leg-eve@bridge.localhost"))
    before = engine.cached(ROOM)

    redis_server.restart()
    fresh = MirrorEngine(make_store())  # a restarted bridge: empty cache
    assert await fresh.store.linked_rooms() == {ROOM: MUC}
    outcome = await fresh.restore(ROOM, live_legs=frozenset({"leg-bob", "leg-alice"}))
    after = fresh.cached(ROOM)
    assert after is not None and before is not None
    assert (after.mutes, after.bans, after.roles, after.legs) == (
        before.mutes,
        before.bans,
        before.roles,
        before.legs,
    )
    assert MuteLeg("leg-bob", True) in outcome.actions
    assert (
        JoinPuppet("leg-bob", "leg-bob@bridge.localhost", "leg-bob", "visitor") in outcome.actions
    )
    assert SetConferenceRoles("leg-alice", ("moderator",)) in outcome.actions
    # a banned caller still gets 403; a muted caller who calls again is muted
    assert (await fresh.admit_invite(ROOM, "<sip:eve@PBX;transport=tcp>")).status == 403
    assert (await fresh.admit_invite(ROOM, BOB)).muted
    await fresh.handle(ev(CallerLeft, "sip", leg_id="leg-bob"))
    again = await fresh.handle(joined("leg-bob-2", BOB))
    assert MuteLeg("leg-bob-2", True) in again.actions


async def test_restore_removes_ghost_legs(engine: MirrorEngine, store: StateStore) -> None:
    await engine.handle(joined("leg-bob", BOB))
    await engine.handle(joined("leg-dead", "sip:dead@pbx"))
    fresh = MirrorEngine(store)
    outcome = await fresh.restore(ROOM, live_legs=frozenset({"leg-bob"}))
    assert outcome.status == "applied"
    assert set((await store.load_room(ROOM)).legs) == {"leg-bob"}


def test_pure_state_apply_keeps_the_first_setter() -> None:
    state, changed = RoomState(ROOM).apply([MUTE])
    again, changed_again = state.apply([put(BOB, MuteRecord(kind="moderator", actor="dave"))])
    assert changed and not changed_again and again.mutes[BOB].actor == "carol"
