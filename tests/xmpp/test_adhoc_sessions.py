"""XEP-0050 session storage: finished sessions are not kept, unfinished ones expire."""

from __future__ import annotations

from bridge.xmpp.adhoc_sessions import SessionStore


def test_session_store_keeps_only_unfinished_sessions_and_expires_them() -> None:
    now = [0.0]
    store = SessionStore(ttl=10, max_sessions=2, clock=lambda: now[0])
    store["done"] = {"next": None}
    assert len(store) == 0
    store["a"] = {"next": print}
    store["b"] = {"next": print}
    store["c"] = {"next": print}  # over the cap: the oldest goes
    assert list(store) == ["b", "c"]
    del store["missing"]  # tolerated: slixmpp deletes after awaiting a handler
    now[0] = 10.0
    assert len(store) == 0
