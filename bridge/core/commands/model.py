"""What the command planner works on and produces: the room as the supervisor sees it
(:class:`RoomView`, :class:`Participant`, :class:`Issuer`), the command-only actions the mirror
vocabulary has no word for, and the :class:`CommandPlan` with its :class:`CommandReply`. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bridge.core.commands.table import shorten
from bridge.core.mirror_events import Action, MirrorEvent

# ---- what a room looks like to the planner ------------------------------------------------

MuteState = Literal["", "self", "moderator"]


@dataclass(frozen=True, slots=True)
class Participant:
    """One person in the room or on the call, as the supervisor sees them.

    ``jid``: the puppet's JID for a caller shown by a puppet, else the occupant's real bare
    JID (a bound caller, a chat user). ``leg_ids`` empty: chat only.
    """

    nick: str
    jid: str = ""
    role: str = "participant"
    affiliation: str = "none"
    puppet: bool = False
    leg_ids: tuple[str, ...] = ()
    privilege: str = "participant"  # stored mirror privilege (owner/moderator/participant)
    mute: MuteState = ""
    talking: bool = False
    codec: str = ""
    since: float = 0.0  # wall-clock seconds the first leg joined
    accepts_messages: bool = True

    @property
    def in_call(self) -> bool:
        return bool(self.leg_ids)


@dataclass(frozen=True, slots=True)
class RoomView:
    """Snapshot the planner reads. ``conference``: the state key (``sip:<conference>@…``),
    empty while not linked."""

    room_jid: str
    conference: str = ""
    sip_uri: str = ""
    external_uri: str = ""
    locked: bool = False
    pin_set: bool = False
    control_nick: str = ""
    participants: tuple[Participant, ...] = ()

    @property
    def linked(self) -> bool:
        return bool(self.conference)

    def by_nick(self, nick: str) -> Participant | None:
        for p in self.participants:
            if p.nick == nick:
                return p
        return None


@dataclass(frozen=True, slots=True)
class Issuer:
    """Who typed the command; affiliation/role from the MUC service (presence or admin list)."""

    nick: str
    jid: str
    affiliation: str = "none"
    role: str = "none"

    @property
    def actor(self) -> str:
        return self.jid or self.nick


# ---- new actions (what the mirror vocabulary has no word for) -----------------------------


@dataclass(frozen=True, slots=True)
class KickOccupant:
    """XEP-0045 kick (role ``none``) by the control occupant."""

    room_jid: str
    nick: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LinkConference:
    """Link the room: ``external_uri`` empty = create the room's own conference (advertise
    ``sip:<conference>@<domain>``); else the bridge dials into that external conference.
    Record with ``StateStore.link_room`` and advertise in the room configuration."""

    room_jid: str
    external_uri: str
    actor: str


@dataclass(frozen=True, slots=True)
class UnlinkConference:
    """Unlink: ``StateStore.unlink_room`` and stop advertising the SIP URI in the room."""

    room_jid: str
    conference: str
    actor: str


@dataclass(frozen=True, slots=True)
class SetLocked:
    """Refuse (locked) or accept new INVITEs; must be stored with the room (survives restarts)
    and pushed to the workers' admission snapshot. Refused callers hear 403 Locked."""

    conference: str
    locked: bool
    actor: str


@dataclass(frozen=True, slots=True)
class SetPin:
    """Set (``pin``) or remove (None) the dial-in PIN: store it with the room; new legs go
    through :class:`bridge.core.pin.PinEntry` before they join the mix."""

    conference: str
    pin: str | None = field(repr=False)  # never in logs
    actor: str


@dataclass(frozen=True, slots=True)
class DialOut:
    """Call ``target`` (sip URI, or a number to route through the configured trunk/domain)
    into the conference; report progress and failure in the room (reply to ``report_to``)."""

    conference: str
    target: str
    is_number: bool
    actor: str
    report_to: str  # issuer's nick in the room, for the progress messages


CommandAction = KickOccupant | LinkConference | UnlinkConference | SetLocked | SetPin | DialOut
Effect = Action | CommandAction


@dataclass(frozen=True, slots=True)
class CommandReply:
    """What the issuer is told. ``refused``/``invalid`` → XEP-0050 ``forbidden``/``bad-request``;
    ``failed`` → a completed command with an error note; ``ok`` → an info note."""

    status: Literal["ok", "refused", "invalid", "failed"]
    text: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class CommandPlan:
    """The result of a command: tell the issuer ``reply``; if accepted, record ``events``
    through the mirror engine (in order, performing each outcome's actions), then perform
    ``actions``. ``summary`` is the audit line (actor, command, result) to log."""

    command: str
    reply: CommandReply
    events: tuple[MirrorEvent, ...] = ()
    actions: tuple[Effect, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.reply.ok

    def audit(self, issuer: Issuer) -> dict[str, str | int]:
        """Fields for the ``command.executed`` / ``command.refused`` log line."""
        return {
            "command": self.command,
            "actor": issuer.actor,
            "affiliation": issuer.affiliation,
            "role": issuer.role,
            "result": self.reply.status,
            "detail": shorten(self.reply.text, 200),
            "effects": len(self.events) + len(self.actions),
        }
