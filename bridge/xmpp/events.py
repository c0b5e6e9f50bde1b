"""What a bridged room reports to the supervisor (room side → mirror policy).

Frozen dataclasses, like ``bridge.core.events``. Every event names its ``room`` (the room's
bare JID) and, for puppets, the SIP ``leg_id`` they stand for. ``by_bridge`` is True when the
change was made by the bridge's own control occupant (for instance mirroring a SIP-side mute),
so the policy does not mirror it back: every change carries its origin (DESIGN §4).

Alongside these, a room also emits ``bridge.core.events.SendSipMessage`` (chat → caller).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.events import SendSipMessage


@dataclass(frozen=True, slots=True)
class PuppetJoined:
    """A caller's puppet is in the room under ``nick`` (also after a rejoin)."""

    room: str
    leg_id: str
    nick: str
    jid: str


@dataclass(frozen=True, slots=True)
class PuppetLeft:
    """A caller's puppet left because the caller left (not kicked/banned: see below)."""

    room: str
    leg_id: str
    nick: str


@dataclass(frozen=True, slots=True)
class PuppetJoinFailed:
    """The room refused a puppet (e.g. ``forbidden``: the caller is banned; ``conflict``)."""

    room: str
    leg_id: str
    condition: str
    text: str = ""


@dataclass(frozen=True, slots=True)
class PuppetVoiceChanged:
    """A puppet's voice was revoked (role visitor) or given back: mute/unmute the leg."""

    room: str
    leg_id: str
    nick: str
    has_voice: bool
    actor: str = ""
    reason: str = ""
    by_bridge: bool = False


@dataclass(frozen=True, slots=True)
class PuppetKicked:
    """Status 307: a moderator kicked the caller's puppet; hang up the leg."""

    room: str
    leg_id: str
    nick: str
    actor: str = ""
    reason: str = ""
    by_bridge: bool = False


@dataclass(frozen=True, slots=True)
class PuppetBanned:
    """Status 301 (affiliation outcast): hang up and refuse this caller while the ban stands.

    ``jid`` is the puppet's bare JID, stable per caller identity, on which the ban is set.
    """

    room: str
    leg_id: str
    nick: str
    jid: str
    actor: str = ""
    reason: str = ""
    by_bridge: bool = False


@dataclass(frozen=True, slots=True)
class OccupantRoleChanged:
    """An occupant's role or affiliation changed (chat user or puppet; ``leg_id`` for puppets).

    ``jid`` is the occupant's real bare JID when the room shows it to the bridge (the control
    occupant is a moderator, so in semi-anonymous rooms it does).
    """

    room: str
    nick: str
    role: str
    affiliation: str
    previous_role: str
    previous_affiliation: str
    jid: str = ""
    leg_id: str = ""
    by_bridge: bool = False


@dataclass(frozen=True, slots=True)
class OccupantsChanged:
    """Someone entered or left the room (the conference-info shows chat-only occupants)."""

    room: str


@dataclass(frozen=True, slots=True)
class SubjectChanged:
    """The room subject (``initial`` when received on (re)joining, not a change)."""

    room: str
    subject: str
    by_nick: str = ""
    initial: bool = False


@dataclass(frozen=True, slots=True)
class RoomJoined:
    """The control occupant is in the room (start or rejoin) with this ``affiliation``.

    ``advertised`` says how the SIP URI is published: ``"audio-video-uri"`` (our Prosody
    module), ``"description"`` (fallback) or ``""`` (could not configure the room).
    """

    room: str
    affiliation: str
    advertised: str


@dataclass(frozen=True, slots=True)
class RoomLost:
    """The control occupant is out of the room (kicked, banned, destroyed, server gone)."""

    room: str
    reason: str
    will_rejoin: bool


@dataclass(frozen=True, slots=True)
class CommandTyped:
    """An occupant typed a ``!command`` in the room (given to ``BridgedRoom.on_command``,
    never relayed to callers). ``jid``/``role``/``affiliation``: what the MUC service last
    said about that occupant (``jid`` empty when the room hides real JIDs from the bridge).
    ``key``: who typed it for rate limits (:func:`bridge.core.ratelimit.occupant_key`)."""

    room: str
    nick: str
    body: str
    stanza_id: str = ""
    jid: str = ""
    role: str = "none"
    affiliation: str = "none"
    key: str = ""


RoomEvent = (
    SendSipMessage
    | PuppetJoined
    | PuppetLeft
    | PuppetJoinFailed
    | PuppetVoiceChanged
    | PuppetKicked
    | PuppetBanned
    | OccupantRoleChanged
    | OccupantsChanged
    | SubjectChanged
    | RoomJoined
    | RoomLost
)

__all__ = [
    "CommandTyped",
    "OccupantRoleChanged",
    "OccupantsChanged",
    "PuppetBanned",
    "PuppetJoinFailed",
    "PuppetJoined",
    "PuppetKicked",
    "PuppetLeft",
    "PuppetVoiceChanged",
    "RoomEvent",
    "RoomJoined",
    "RoomLost",
    "SendSipMessage",
    "SubjectChanged",
]
