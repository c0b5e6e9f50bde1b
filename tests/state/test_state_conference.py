"""Issue 8: the room's ``conference`` record (lock, PIN hash, external URI) in Redis.

It is one more meta field: the APPLY script needs nothing new (it compares the record's
token ``s`` like any other), rooms stored before the record existed read as before, and the
pure model and Redis agree on it.
"""

from __future__ import annotations

from bridge.core.pin import hash_pin, pin_hash_matches
from bridge.core.records import ConferenceRecord, RoomState, put
from bridge.node.mirror import MirrorEngine
from bridge.state.store import StateStore
from tests.state.state_helpers import MUC, ROOM


async def test_rooms_without_the_record_read_as_unlocked(store: StateStore) -> None:
    state = await store.load_room(ROOM)
    assert state.link is not None and state.link.muc_jid == MUC
    assert state.conference is None


async def test_lock_and_pin_survive_a_fresh_reader_and_match_the_model(
    engine: MirrorEngine, store: StateStore, make_store: object
) -> None:
    stored = hash_pin("1234")
    record = ConferenceRecord(locked=True, pin_hash=stored, actor="alice@localhost", at=1.0)
    outcome = await engine.record(ROOM, "cmd-lock", (put("conference", record),), what="lock")
    assert outcome.status == "applied"
    again = await engine.record(ROOM, "cmd-lock-2", (put("conference", record),), what="lock")
    assert again.status == "unchanged"  # same token: nothing changes, version stays

    fresh = await store.load_room(ROOM)  # what a restarted node reads
    assert fresh.conference is not None and fresh.conference.locked
    assert pin_hash_matches("1234", fresh.conference.pin_hash)
    assert "1234" not in fresh.conference.to_json()
    assert fresh.conference == engine.cached(ROOM).conference  # type: ignore[union-attr]
    assert fresh.version == engine.cached(ROOM).version  # type: ignore[union-attr]

    off = ConferenceRecord(locked=False, pin_hash=stored, actor="alice@localhost", at=2.0)
    await engine.record(ROOM, "cmd-unlock", (put("conference", off),), what="unlock")
    assert not (await store.load_room(ROOM)).conference.locked  # type: ignore[union-attr]


def test_pure_apply_of_the_record() -> None:
    empty = RoomState(ROOM)
    locked = ConferenceRecord(locked=True, actor="a")
    state, changed = empty.apply([put("conference", locked)])
    assert changed and state.conference == locked and state.version == 1
    same, changed = state.apply([put("conference", ConferenceRecord(locked=True, actor="b"))])
    assert not changed and same.conference is not None and same.conference.actor == "a"
