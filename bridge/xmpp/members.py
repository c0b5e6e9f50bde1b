"""Who is in a bridged room: puppets (one per SIP caller), other occupants, join failures.

Plain records shared by the room's membership logic (:mod:`bridge.xmpp.room`) and its text
relay (:mod:`bridge.xmpp.relay`).
"""

from __future__ import annotations

from dataclasses import dataclass

from slixmpp import JID

from bridge.core.events import LegJoined
from bridge.xmpp import muc

PUPPET_STATUS = "on the phone (SIP caller)"
VOICED_ROLES = frozenset({"participant", "moderator"})
# Join errors after which a puppet is not retried until the caller calls again.
FINAL_JOIN_ERRORS = frozenset(
    {"forbidden", "not-authorized", "registration-required", "not-allowed", "jid-malformed"}
)


class JoinError(Exception):
    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(f"{condition}: {text or muc.join_error_hint(condition)}")
        self.condition = condition
        self.text = text


@dataclass
class Occupant:
    nick: str
    role: str
    affiliation: str
    jid: str  # real full JID when visible to the bridge, else ''


@dataclass
class Puppet:
    """One caller's occupant in the room: wanted and actual nick, presence, why removed."""

    leg: LegJoined
    jid: JID
    wanted_nick: str
    nick: str = ""
    role: str = ""
    present: bool = False
    joining: bool = False
    leaving: bool = False
    removed: str = ""  # "kicked", "banned", "refused": not rejoined automatically

    @property
    def leg_id(self) -> str:
        return self.leg.leg_id


__all__ = ["FINAL_JOIN_ERRORS", "PUPPET_STATUS", "VOICED_ROLES", "JoinError", "Occupant", "Puppet"]
