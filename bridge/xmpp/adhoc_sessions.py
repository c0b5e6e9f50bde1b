"""Where slixmpp keeps XEP-0050 command sessions: bounded, and finished ones not at all.

slixmpp's ``xep_0050`` stores every session it answers, completed ones included, and frees
one only on a ``complete`` or ``cancel`` from the requester: each ``help`` grew the
component's memory for good (issue 19). This mapping, installed with
``plugin.set_backend``, drops a session as soon as it is stored finished (no ``next``
step), forgets unfinished ones after ``ttl`` seconds (a form nobody submits) and keeps at
most ``max_sessions`` (the oldest go first). The clock is injectable for unit tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

Session = dict[str, Any]


class SessionStore(MutableMapping[str, Session]):
    """A drop-in for the plugin's ``sessions`` dict (see the module docstring)."""

    def __init__(
        self, ttl: float, max_sessions: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl <= 0 or max_sessions < 1:
            raise ValueError("ttl must be > 0 and max_sessions >= 1")
        self.ttl = ttl
        self.max_sessions = max_sessions
        self._clock = clock
        self._items: dict[str, tuple[float, Session]] = {}  # insertion order = age

    def __setitem__(self, key: str, session: Session) -> None:
        self._items.pop(key, None)
        if session.get("next") is None:  # finished: the reply is on its way, nothing to keep
            return
        self._expire()
        while len(self._items) >= self.max_sessions:
            del self._items[next(iter(self._items))]
        self._items[key] = (self._clock() + self.ttl, session)

    def __getitem__(self, key: str) -> Session:
        self._expire()
        return self._items[key][1]

    def __delitem__(self, key: str) -> None:
        # slixmpp deletes after awaiting the handler: the entry may have expired meanwhile
        self._items.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        self._expire()
        return iter(list(self._items))

    def __len__(self) -> int:
        self._expire()
        return len(self._items)

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, (deadline, _) in self._items.items() if deadline <= now]:
            del self._items[key]


__all__ = ["SessionStore"]
