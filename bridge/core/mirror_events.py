"""Inputs and outputs of the mirror policy (DESIGN §4), independent of the XMPP/SIP adapters.

*Events* are facts or requests reported by one side, each tagged with its ``origin``:

- ``"muc"``: something already happened in the room (voice revoked, kick, ban, subject…);
- ``"sip"``: something already happened in the call (join, leave, MESSAGE) or a caller asked
  the bridge for something (DTMF keys, a SIP-side moderator);
- ``"restore"``: the bridge re-applies the stored truth after a restart or a takeover.

*Actions* are what the supervisor must do on one side. SIP-side actions reuse the worker
commands of :mod:`bridge.core.events` (MuteLeg, HangupLeg, SendSipMessage, PlayTone) plus
conference-info updates defined here; room-side actions are defined here. :func:`side_of`
says where an action goes.

Mapping notes for the adapters (the lead wires them):

- An occupant is named by its JID: a puppet's JID (``<id>@<component>``) or a real occupant's
  bare JID. The policy resolves puppets to their leg through the stored legs.
- A role change to or from ``visitor`` is a *voice* event (:class:`OccupantVoiceChanged`);
  moderator ↔ participant role changes and owner/admin affiliation changes are *privilege*
  events (:class:`OccupantPrivilegeChanged`); affiliation ``outcast`` is
  :class:`OccupantBanned`, leaving ``outcast`` is :class:`OccupantUnbanned`.
- ``event_id`` must be stable for one fact (stanza id, Call-ID + CSeq, …): a replayed or
  duplicated event with the same id changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from bridge.core.events import HangupLeg, MuteLeg, PlayTone, SendSipMessage

Origin = Literal["sip", "muc", "restore"]
Side = Literal["sip", "muc"]
Privilege = Literal["owner", "moderator", "participant"]
MucRole = Literal["visitor", "participant", "moderator"]
DtmfCommandKind = Literal["self-mute", "mute-all", "unmute-all"]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    #: Queued while Redis is down (True: a fact that already happened, losing it would
    #: desynchronise the sides) or refused with a message (False: a request we may decline).
    DURABLE: ClassVar[bool] = True

    event_id: str
    room: str  # conference name: the user part of sip:<room>@<domain>
    origin: Origin
    actor: str = ""  # who did it (nick, JID or caller URI), recorded with the change
    at: float = 0.0  # wall-clock seconds, recorded with the change


# ---- happened in the room (origin "muc") ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OccupantVoiceChanged(_Event):
    """Role changed to ``visitor`` (voiced=False) or from ``visitor`` (voiced=True)."""

    occupant_jid: str
    voiced: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class OccupantKicked(_Event):
    """Status 307."""

    occupant_jid: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OccupantBanned(_Event):
    """Status 301 / affiliation ``outcast``."""

    occupant_jid: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OccupantUnbanned(_Event):
    """Affiliation changed from ``outcast`` to anything else."""

    occupant_jid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OccupantPrivilegeChanged(_Event):
    """Occupant made (or no longer) moderator/owner."""

    occupant_jid: str
    privilege: Privilege


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectChanged(_Event):
    subject: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupchatReceived(_Event):
    """A groupchat message. ``from_bridge``: sent by our control occupant (never relayed)."""

    sender_jid: str
    sender_nick: str
    body: str
    subject: str = ""
    language: str = ""
    thread: str = ""
    from_bridge: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomDestroyed(_Event):
    """Room destroyed or unlinked: end the conference politely."""

    reason: str = ""


# ---- happened in (or asked from) the call (origin "sip") -----------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerJoined(_Event):
    """A leg is up. ``bound_jid`` only when :mod:`bridge.core.identity` verified it."""

    leg_id: str
    caller_uri: str
    nick: str  # readable nick (display name, else masked number)
    puppet_jid: str  # the puppet this caller gets when not bound
    call_id: str = ""
    node: str = ""
    bound_jid: str = ""
    verified_by: str = ""
    accepts_messages: bool = True
    #: unverified callers only: where a ban on them lands (caller_identity.ban_keys)
    ban_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerLeft(_Event):
    leg_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfCommand(_Event):
    """A complete DTMF key sequence from a leg (see :func:`bridge.core.policy.parse_dtmf`)."""

    leg_id: str
    command: DtmfCommandKind

    @property
    def durable(self) -> bool:
        """A self-mute is never refused (privacy); moderator keys are refused when down."""
        return self.command == "self-mute"


@dataclass(frozen=True, slots=True, kw_only=True)
class SipMessageIn(_Event):
    leg_id: str
    body: str
    content_type: str = "text/plain"
    subject: str = ""
    language: str = ""
    thread: str = ""  # Call-ID → thread


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerPrivilegeChanged(_Event):
    """A SIP-side grant (moderator PIN, operator API): mirrored to the room."""

    DURABLE: ClassVar[bool] = False
    leg_id: str
    privilege: Privilege


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerBanned(_Event):
    """A SIP-side moderator or operator bans a caller: BYE + outcast in the room."""

    DURABLE: ClassVar[bool] = False
    leg_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceSubjectChanged(_Event):
    """Conference subject set from the SIP side (operator API): mirrored to the room."""

    DURABLE: ClassVar[bool] = False
    subject: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceEnded(_Event):
    """The conference is over on the SIP side: every puppet leaves, the control stays."""

    reason: str = ""


# ---- re-apply the stored truth (origin "restore") ------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Restore(_Event):
    """After a restart or takeover. ``live_legs``: legs that are really up on this node
    (stored legs that are not are ghosts and get removed); None = keep them all."""

    live_legs: frozenset[str] | None = None


MucEvent = (
    OccupantVoiceChanged
    | OccupantKicked
    | OccupantBanned
    | OccupantUnbanned
    | OccupantPrivilegeChanged
    | SubjectChanged
    | GroupchatReceived
    | RoomDestroyed
)
SipSideEvent = (
    CallerJoined
    | CallerLeft
    | DtmfCommand
    | SipMessageIn
    | CallerPrivilegeChanged
    | CallerBanned
    | ConferenceSubjectChanged
    | ConferenceEnded
)
MirrorEvent = MucEvent | SipSideEvent | Restore


def is_durable(event: MirrorEvent) -> bool:
    """Queue (True) or refuse (False) this event when its change cannot be recorded."""
    if isinstance(event, DtmfCommand):
        return event.durable
    return event.DURABLE


# ---- SIP-side actions beyond the worker commands -------------------------------------------


@dataclass(frozen=True, slots=True)
class SetConferenceRoles:
    """conference-info ``<roles>`` of the leg's user (RFC 4575); moderators may use keys."""

    leg_id: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SetConferenceMediaStatus:
    """conference-info endpoint ``<media><status>``: ``muted-via-focus`` when muted."""

    leg_id: str
    muted_via_focus: bool


@dataclass(frozen=True, slots=True)
class SetConferenceSubject:
    subject: str


# ---- room-side actions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JoinPuppet:
    leg_id: str
    puppet_jid: str
    nick: str
    role: MucRole = "participant"


@dataclass(frozen=True, slots=True)
class LeavePuppet:
    leg_id: str
    puppet_jid: str
    status: str = ""


@dataclass(frozen=True, slots=True)
class SetOccupantRole:
    """XEP-0045 role change by the control occupant (puppet or bound occupant)."""

    occupant_jid: str
    role: MucRole
    reason: str = ""


@dataclass(frozen=True, slots=True)
class BanJid:
    """Affiliation ``outcast``."""

    jid: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SetRoomSubject:
    subject: str


@dataclass(frozen=True, slots=True)
class SendGroupchat:
    """Groupchat from a puppet; ``as_jid`` empty = from the control occupant on behalf of
    ``nick`` (a bound caller is a real occupant: we cannot speak as them)."""

    as_jid: str
    nick: str
    body: str
    subject: str = ""
    language: str = ""
    thread: str = ""


@dataclass(frozen=True, slots=True)
class ShowOccupantInCall:
    """A bound participant (one person, text and audio): show their audio involvement on
    their own occupant (status/occupant-id) instead of adding a second, puppet occupant."""

    occupant_jid: str
    leg_id: str
    in_call: bool
    muted: bool = False


SipAction = (
    MuteLeg
    | HangupLeg
    | SendSipMessage
    | PlayTone
    | SetConferenceRoles
    | SetConferenceMediaStatus
    | SetConferenceSubject
)
RoomAction = (
    JoinPuppet
    | LeavePuppet
    | SetOccupantRole
    | BanJid
    | SetRoomSubject
    | SendGroupchat
    | ShowOccupantInCall
)
Action = SipAction | RoomAction

_SIP_ACTIONS = (
    MuteLeg,
    HangupLeg,
    SendSipMessage,
    PlayTone,
    SetConferenceRoles,
    SetConferenceMediaStatus,
    SetConferenceSubject,
)


def side_of(action: Action) -> Side:
    return "sip" if isinstance(action, _SIP_ACTIONS) else "muc"


__all__ = [
    "Action",
    "BanJid",
    "CallerBanned",
    "CallerJoined",
    "CallerLeft",
    "CallerPrivilegeChanged",
    "ConferenceEnded",
    "ConferenceSubjectChanged",
    "DtmfCommand",
    "DtmfCommandKind",
    "GroupchatReceived",
    "JoinPuppet",
    "LeavePuppet",
    "MirrorEvent",
    "MucEvent",
    "MucRole",
    "OccupantBanned",
    "OccupantKicked",
    "OccupantPrivilegeChanged",
    "OccupantUnbanned",
    "OccupantVoiceChanged",
    "Origin",
    "Privilege",
    "Restore",
    "RoomAction",
    "RoomDestroyed",
    "SendGroupchat",
    "SetConferenceMediaStatus",
    "SetConferenceRoles",
    "SetConferenceSubject",
    "SetOccupantRole",
    "SetRoomSubject",
    "ShowOccupantInCall",
    "Side",
    "SipAction",
    "SipMessageIn",
    "SipSideEvent",
    "SubjectChanged",
    "is_durable",
    "side_of",
]
