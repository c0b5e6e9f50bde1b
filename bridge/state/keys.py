"""Redis key layout. Every key of one room shares the hash tag ``{r:<room>}`` so that one Lua
script may touch them all, also on Redis Cluster (one slot per room)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.core.records import Table

_ROOM = re.compile(r"^[^\s{}]{1,200}$")


def check_room(room: str) -> str:
    """Room names are SIP user parts; braces would break the hash tag, so refuse them."""
    if not _ROOM.match(room):
        raise ValueError(f"invalid room name {room!r}: 1-200 characters, no spaces or braces")
    return room.lower()


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "sipmuc"

    def room(self, room: str, part: str) -> str:
        return f"{self.prefix}:{{r:{check_room(room)}}}:{part}"

    def table(self, room: str, table: Table) -> str:
        return self.room(room, table)

    def event(self, room: str, event_id: str) -> str:
        return self.room(room, "ev:" + event_id)

    def changes(self, room: str) -> str:
        """Stream of applied changes (audit log, bounded)."""
        return self.room(room, "changes")

    def lease(self, room: str) -> str:
        return self.room(room, "lease")

    def fence(self, room: str) -> str:
        """Monotonic fencing-token counter; never deleted."""
        return self.room(room, "fence")

    def node(self, node_id: str) -> str:
        """A replica's heartbeat: present while that node runs (its calls are live)."""
        return f"{self.prefix}:{{nodes}}:{node_id}"

    @property
    def links(self) -> str:
        """Hash conference → MUC room JID (index of linked rooms, for restore at start)."""
        return f"{self.prefix}:{{links}}:by-conference"

    @property
    def links_by_muc(self) -> str:
        return f"{self.prefix}:{{links}}:by-muc"


__all__ = ["Keys", "check_room"]
