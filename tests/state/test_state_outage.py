"""Redis paused or killed: calls stay up, requests are refused with a message, facts are
queued and caught up when Redis returns (also across a restart of the bridge)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.core.events import HangupLeg, MuteLeg, PlayTone, SendSipMessage
from bridge.core.mirror_events import (
    CallerBanned,
    CallerLeft,
    DtmfCommand,
    GroupchatReceived,
    OccupantKicked,
    OccupantVoiceChanged,
)
from bridge.core.records import MuteRecord, put
from bridge.devstack.redis_server import RedisServer
from bridge.node.mirror import MirrorEngine
from bridge.state.errors import OutboxFull, StateUnavailable
from bridge.state.outbox import Outbox, PendingWrite
from bridge.state.store import StateStore
from tests.state.state_helpers import OP_TIMEOUT, ROOM, ev, joined

BOB = "sip:bob@pbx"
BOB_PUPPET = "leg-bob@bridge.localhost"


async def test_paused_redis_raises_a_clear_error(
    redis_server: RedisServer, store: StateStore
) -> None:
    assert redis_server.process is not None
    redis_server.process.pause()
    try:
        with pytest.raises(StateUnavailable) as error:
            await store.apply(ROOM, "e1", [put(BOB, MuteRecord())], what="mute bob")
        text = str(error.value)
        assert text.startswith("cannot mute bob: the moderation store (redis at 127.0.0.1:")
        assert "unreachable" in text and "nothing was changed" in text
        assert not await store.ping()
    finally:
        redis_server.process.resume()
    assert await store.ping()


async def test_pause_refuses_requests_queues_facts_and_catches_up(
    redis_server: RedisServer, make_store: Callable[..., StateStore], store: StateStore
) -> None:
    # deadline margin small so the refused write, still in Redis' socket buffer when it is
    # resumed, is dropped by the script instead of happening behind the moderator's back
    engine = MirrorEngine(make_store(deadline_margin=0.05))
    await engine.handle(joined("leg-bob", BOB))
    await engine.handle(joined("leg-mod", "sip:mod@pbx"))
    await engine.handle(joined("leg-eve", "sip:eve@pbx"))
    assert redis_server.process is not None
    redis_server.process.pause()
    try:
        refused = await engine.handle(ev(CallerBanned, "sip", leg_id="leg-eve"))
        assert refused.status == "refused" and "unreachable" in refused.message
        assert refused.message.startswith("cannot ban this caller: ")
        assert PlayTone("leg-eve", "beep") in refused.actions
        assert SendSipMessage("leg-eve", refused.message) in refused.actions
        assert not any(isinstance(a, HangupLeg) for a in refused.actions)  # calls stay up

        muted = await engine.handle(
            ev(OccupantVoiceChanged, "muc", occupant_jid=BOB_PUPPET, voiced=False)
        )
        assert muted.status == "queued" and MuteLeg("leg-bob", True) in muted.actions
        assert "queued" in muted.message
        left = await engine.handle(ev(CallerLeft, "sip", leg_id="leg-mod"))
        assert left.status == "queued"
        self_mute = await engine.handle(
            ev(DtmfCommand, "sip", leg_id="leg-eve", command="self-mute")
        )
        assert self_mute.status == "queued"  # a caller's own *6 is never refused (privacy)
        chat = await engine.handle(
            ev(
                GroupchatReceived,
                "muc",
                sender_jid="carol@localhost",
                sender_nick="carol",
                body="still here?",
            )
        )
        assert chat.status == "unchanged" and len(chat.actions) == 2  # messages keep flowing
        assert len(engine.outbox) == 3
        await asyncio.sleep(OP_TIMEOUT + 0.3)  # past the refused write's deadline
    finally:
        redis_server.process.resume()

    assert await engine.catch_up() == 3
    assert not len(engine.outbox)
    stored = await store.load_room(ROOM)
    assert stored.mutes[BOB].kind == "moderator"
    assert stored.mutes["sip:eve@pbx"].kind == "self"
    assert "leg-mod" not in stored.legs
    assert "sip:eve@pbx" not in stored.bans  # the refused ban did not happen later
    assert stored == engine.cached(ROOM)


async def test_killed_redis_and_restarted_bridge_lose_nothing(
    redis_server: RedisServer, make_store: Callable[..., StateStore], tmp_path: Path
) -> None:
    path = tmp_path / "outbox.jsonl"
    engine = MirrorEngine(make_store(), Outbox(path))
    await engine.store.link_room(ROOM, "standup@conference.localhost", event_id="link")
    await engine.handle(joined("leg-bob", BOB))
    await engine.handle(joined("leg-eve", "sip:eve@pbx"))
    assert redis_server.process is not None
    redis_server.process.kill()

    kicked = await engine.handle(ev(OccupantKicked, "muc", occupant_jid="leg-eve@bridge.localhost"))
    assert kicked.status == "queued" and any(isinstance(a, HangupLeg) for a in kicked.actions)
    await engine.handle(ev(OccupantVoiceChanged, "muc", occupant_jid=BOB_PUPPET, voiced=False))
    with pytest.raises(StateUnavailable):
        await engine.catch_up()
    assert len(engine.outbox) == 2

    # the bridge restarts too: the queue is read back from its file
    reborn = MirrorEngine(make_store(), Outbox(path))
    assert len(reborn.outbox) == 2
    redis_server.start()
    assert await reborn.catch_up() == 2
    stored = await reborn.store.load_room(ROOM)
    assert "leg-eve" not in stored.legs and BOB in stored.mutes
    assert path.read_text() == ""
    assert reborn.cached(ROOM) == stored


async def test_replayed_write_that_already_landed_is_a_duplicate(store: StateStore) -> None:
    """The write reached Redis but its reply was lost: the replay with the same id is a no-op."""
    engine = MirrorEngine(store)
    await engine.handle(joined("leg-bob", BOB))
    event = ev(DtmfCommand, "sip", leg_id="leg-bob", command="self-mute")  # a toggle
    first = await engine.handle(event)
    assert first.status == "applied"
    outbox = Outbox()
    outbox.put(PendingWrite(ROOM, event.event_id, (put(BOB, MuteRecord(kind="self")),)))
    replayer = MirrorEngine(store, outbox)
    assert await replayer.catch_up() == 1
    assert (await store.load_room(ROOM)).version == first.version
    assert (await engine.handle(event)).status == "duplicate"  # and the toggle is not undone
    assert BOB in (await store.load_room(ROOM)).mutes


async def test_full_outbox_refuses_loudly(
    redis_server: RedisServer, make_store: Callable[..., StateStore]
) -> None:
    engine = MirrorEngine(make_store(), Outbox(max_items=1))
    await engine.store.link_room(ROOM, "standup@conference.localhost", event_id="link")
    await engine.handle(joined("leg-bob", BOB))
    await engine.handle(joined("leg-eve", "sip:eve@pbx"))
    assert redis_server.process is not None
    redis_server.process.kill()
    assert (await engine.handle(ev(CallerLeft, "sip", leg_id="leg-bob"))).status == "queued"
    with pytest.raises(OutboxFull) as error:
        await engine.handle(ev(CallerLeft, "sip", leg_id="leg-eve"))
    assert "outbox full" in str(error.value)
