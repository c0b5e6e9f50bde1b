"""Who is in a bridged room: puppets (one per SIP caller), other occupants, join failures.

Plain records shared by the room's membership logic (:mod:`bridge.xmpp.room`) and its text
relay (:mod:`bridge.xmpp.relay`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from slixmpp import JID

from bridge.core.events import LegJoined, SipMessageReceived
from bridge.core.ratelimit import occupant_key
from bridge.xmpp import muc

PUPPET_STATUS = "on the phone (SIP caller)"
WAITING_MAX = 20  # a caller's messages kept while its puppet joins
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
    occupant_id: str = ""  # XEP-0421 id when the service gives one

    @property
    def key(self) -> str:
        """Rate-limit key: real JID, else occupant id, else nick (bridge.core.ratelimit)."""
        return occupant_key(self.jid, self.occupant_id, self.nick)


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
    #: the room has sent this puppet its self-presence: from then on, in room order, every
    #: groupchat line is the caller's too, even before ``present`` is set (the join's
    #: coroutine resumes a loop turn later, after lines read in the same socket read)
    seated: bool = False
    #: the caller's MESSAGEs that came while its puppet was joining (sent once it is in)
    waiting: deque[SipMessageReceived] = field(default_factory=lambda: deque(maxlen=WAITING_MAX))

    @property
    def hears_room(self) -> bool:
        """Groupchat lines are relayed to this caller (joined, or seated in the room)."""
        return self.present or self.seated

    @property
    def leg_id(self) -> str:
        return self.leg.leg_id


__all__ = [
    "FINAL_JOIN_ERRORS",
    "PUPPET_STATUS",
    "VOICED_ROLES",
    "WAITING_MAX",
    "JoinError",
    "Occupant",
    "Puppet",
]
