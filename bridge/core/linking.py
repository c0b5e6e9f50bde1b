"""Which MUC rooms a command may link to a conference (issue 19).

Linking makes the node join a room and answer calls for it; on a hosted bridge that is a
resource any room owner on any reachable MUC service could otherwise claim. The operator
decides: self-service linking is off unless enabled, rooms must match an allow-list of JID
patterns (shell style, ``*@conference.example.org``), and a node serves at most a set number
of linked rooms. Pure: the caller passes the settings' values and the current count.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase


def room_allowed(room_jid: str, patterns: Sequence[str], muc_service: str) -> bool:
    """``room_jid`` (bare) matches one of ``patterns``; no patterns: any room of the
    node's own MUC service."""
    jid = room_jid.lower()
    if not patterns:
        return jid.rpartition("@")[2] == muc_service.lower()
    return any(fnmatchcase(jid, pattern.lower()) for pattern in patterns)


def link_refusal(
    room_jid: str,
    *,
    self_service: bool,
    patterns: Sequence[str],
    muc_service: str,
    linked: int,
    max_rooms: int,
    preapproved: bool = False,
) -> str:
    """Why a command may not link ``room_jid`` ('' = it may). ``linked``: rooms this node
    serves now (an unlinked room no longer counts); ``preapproved``: the operator listed
    the room in the node's settings, so its owner may link it again after ``!unlink``."""
    if preapproved:
        return ""
    if not self_service:
        return (
            "Linking rooms by command is turned off on this bridge; ask its operator "
            "(xmpp.linking.self_service)."
        )
    if not room_allowed(room_jid, patterns, muc_service):
        return f"This bridge may not link {room_jid}: the room is not on its allow-list."
    if max_rooms and linked >= max_rooms:
        return f"This bridge node serves its maximum of {max_rooms} linked rooms."
    return ""


__all__ = ["link_refusal", "room_allowed"]
