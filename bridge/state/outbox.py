"""Changes that already happened while Redis was down, kept in order until it is back.

Only *facts* are queued (a kick done in the room, a caller who hung up, a caller's own *6):
they happened whatever we say, and losing them would leave Redis contradicting both sides.
*Requests* the bridge may decline (moderator DTMF keys, SIP-side bans or grants, link and
unlink) are refused with :class:`StateUnavailable` instead. Replay uses the original event
ids, so an item whose write did reach Redis before the connection broke is a harmless
duplicate. With a ``path`` the queue is also an append-only JSON-lines file that survives a
restart of the bridge itself.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bridge.core.records import Change, change_from_wire, change_to_wire
from bridge.state.errors import OutboxFull


@dataclass(frozen=True, slots=True)
class PendingWrite:
    room: str
    event_id: str
    changes: tuple[Change, ...]
    queued_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "room": self.room,
                "event_id": self.event_id,
                "queued_at": self.queued_at,
                "changes": [change_to_wire(c) for c in self.changes],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> PendingWrite:
        data = json.loads(text)
        return cls(
            room=data["room"],
            event_id=data["event_id"],
            changes=tuple(change_from_wire(c) for c in data["changes"]),
            queued_at=float(data.get("queued_at", 0.0)),
        )


class Outbox:
    """FIFO of pending writes, bounded; optionally mirrored to a JSON-lines file."""

    def __init__(self, path: Path | None = None, max_items: int = 10000) -> None:
        self.path = path
        self.max_items = max_items
        self._items: deque[PendingWrite] = deque()
        if path is not None and path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    self._items.append(PendingWrite.from_json(line))

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[PendingWrite]:
        return iter(tuple(self._items))

    def put(self, item: PendingWrite, where: str = "redis") -> None:
        if len(self._items) >= self.max_items:
            raise OutboxFull(
                "queue the change",
                where,
                f"{len(self._items)} changes already wait for it (outbox full)",
            )
        self._items.append(item)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as file:
                file.write(item.to_json() + "\n")
                file.flush()
                os.fsync(file.fileno())

    def peek(self) -> PendingWrite | None:
        return self._items[0] if self._items else None

    def pop(self) -> PendingWrite:
        item = self._items.popleft()
        self._persist()
        return item

    def _persist(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text("".join(i.to_json() + "\n" for i in self._items), encoding="utf-8")
        os.replace(tmp, self.path)


__all__ = ["Outbox", "PendingWrite"]
