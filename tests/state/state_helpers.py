"""Helpers of the state tests (importable by name; fixtures live in conftest)."""

from __future__ import annotations

import itertools
from typing import Any

from bridge.core.mirror_events import CallerJoined

ROOM = "standup"
MUC = "standup@conference.localhost"
OP_TIMEOUT = 0.3  # short, so outage tests do not wait long; no assertion depends on it
_ids = itertools.count()


def ev(cls: type[Any], origin: str, **kw: Any) -> Any:
    kw.setdefault("event_id", f"t{next(_ids)}")
    kw.setdefault("room", ROOM)
    kw.setdefault("actor", "tester")
    kw.setdefault("at", 1700000000.0)
    return cls(origin=origin, **kw)


def joined(leg_id: str, caller: str, **kw: Any) -> CallerJoined:
    kw.setdefault("nick", leg_id)
    kw.setdefault("puppet_jid", f"{leg_id}@bridge.localhost")
    result: CallerJoined = ev(CallerJoined, "sip", leg_id=leg_id, caller_uri=caller, **kw)
    return result
