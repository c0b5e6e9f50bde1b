"""Builders shared by the policy tests: a linked room with a puppet caller and a bound caller."""

from __future__ import annotations

import itertools
from typing import Any

from bridge.core.mirror_events import CallerJoined, MirrorEvent
from bridge.core.policy import decide
from bridge.core.records import LinkRecord, RoomState, put

ROOM = "standup"
MUC = "standup@conference.localhost"
BOB_URI = "sip:+4912345@pbx.example"  # not bound: shown by a puppet
BOB_PUPPET = "leg-bob@bridge.localhost"
ALICE_URI = "sip:alice@pbx.example"  # bound to her JID: one person, text and audio
ALICE_JID = "alice@localhost"
CAROL_JID = "carol@localhost"  # chat only

_ids = itertools.count()


def ev(cls: type[Any], origin: str, **kw: Any) -> Any:
    kw.setdefault("event_id", f"e{next(_ids)}")
    kw.setdefault("room", ROOM)
    kw.setdefault("actor", "tester")
    kw.setdefault("at", 1000.0)
    return cls(origin=origin, **kw)


def linked() -> RoomState:
    state, _ = RoomState(ROOM).apply([put("link", LinkRecord(muc_jid=MUC))])
    return state


def run(state: RoomState, event: MirrorEvent) -> RoomState:
    """Apply one event's changes (as the store would) and return the new state."""
    new, _ = state.apply(decide(event, state).changes)
    return new


def bob_joins(state: RoomState, leg_id: str = "leg-bob") -> RoomState:
    return run(
        state,
        ev(
            CallerJoined,
            "sip",
            leg_id=leg_id,
            caller_uri=f"Bob <{BOB_URI};user=phone>",
            nick="Bob",
            puppet_jid=BOB_PUPPET if leg_id == "leg-bob" else f"{leg_id}@bridge.localhost",
        ),
    )


def alice_joins(state: RoomState, leg_id: str = "leg-alice") -> RoomState:
    return run(
        state,
        ev(
            CallerJoined,
            "sip",
            leg_id=leg_id,
            caller_uri=ALICE_URI,
            nick="alice",
            puppet_jid=f"{leg_id}@bridge.localhost",
            bound_jid=ALICE_JID,
            verified_by="config",
        ),
    )


def full_room() -> RoomState:
    return alice_joins(bob_joins(linked()))
