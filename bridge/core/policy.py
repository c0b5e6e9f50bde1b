"""The mirror policy of DESIGN §4 as pure functions: (event, stored state) → decision.

A :class:`Decision` holds the *changes* to record in Redis (first) and the *actions* to
perform on each side (after the record succeeded). Two rules make loops impossible:

1. **Origin**: a fact reported by one side (everything from the room; joins, leaves and
   messages from the call) is mirrored to the *other* side only. The one exception is
   feedback to the very leg that caused the event (a rejoining muted caller is muted, a banned
   one is hung up, a tone acknowledges its own key press) — actions that never come back as
   events carrying a change.
2. **State**: the echo of an action we performed (the room reporting the puppet's voice we
   revoked, the BYE we sent coming back as a leave) finds the change already recorded and
   yields nothing.

Requests (DTMF moderator keys, SIP-side moderator/operator commands) are changes authored by
the bridge: they act on both sides, and their echoes are absorbed by rule 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypedDict

from bridge.core.events import HangupLeg, MuteLeg, PlayTone, SendSipMessage
from bridge.core.identity import bare_jid, caller_key, jid_key, participant_key
from bridge.core.mirror_events import (
    Action,
    BanJid,
    CallerBanned,
    CallerJoined,
    CallerLeft,
    CallerPrivilegeChanged,
    ConferenceEnded,
    ConferenceSubjectChanged,
    DtmfCommand,
    DtmfCommandKind,
    GroupchatReceived,
    JoinPuppet,
    LeavePuppet,
    MirrorEvent,
    MucRole,
    OccupantBanned,
    OccupantKicked,
    OccupantPrivilegeChanged,
    OccupantUnbanned,
    OccupantVoiceChanged,
    Origin,
    Restore,
    RoomDestroyed,
    SendGroupchat,
    SetConferenceMediaStatus,
    SetConferenceRoles,
    SetConferenceSubject,
    SetOccupantRole,
    SetRoomSubject,
    ShowOccupantInCall,
    Side,
    SipMessageIn,
    SubjectChanged,
    side_of,
)
from bridge.core.records import (
    BanRecord,
    BindingRecord,
    Change,
    Delete,
    LegRecord,
    MuteRecord,
    RoleRecord,
    RoomState,
    SubjectRecord,
    put,
)

#: DTMF sequences (``*`` then one key). Moderator keys need owner/moderator privilege.
DTMF_KEYS: dict[str, DtmfCommandKind] = {"*6": "self-mute", "*7": "mute-all", "*8": "unmute-all"}
MODERATOR_HELP = "You are a moderator: *7 mutes everyone else, *8 unmutes them, *6 mutes you."


@dataclass(frozen=True, slots=True)
class Decision:
    origin: Origin
    changes: tuple[Change, ...] = ()
    actions: tuple[Action, ...] = ()

    def to_side(self, side: Side) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if side_of(a) == side)


@dataclass(frozen=True, slots=True)
class InviteVerdict:
    """Answer to a new INVITE for a linked room (before the lease/redirect question)."""

    status: int  # 200 accept, 403 banned, 404 not linked
    reason: str
    muted: bool = False
    privilege: str = "participant"


def decide(event: MirrorEvent, state: RoomState) -> Decision:
    """The whole policy: one pure function per event type, dispatched here."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"no mirror rule for {type(event).__name__}")
    changes, actions = handler(event, state)
    return Decision(event.origin, tuple(changes), tuple(actions))


def refusal(event: MirrorEvent, message: str) -> Decision:
    """Feedback when a request cannot be recorded (state store down): nothing changes."""
    leg_id = getattr(event, "leg_id", "")
    actions: list[Action] = []
    if event.origin == "sip" and leg_id:
        actions = [PlayTone(leg_id, "beep"), SendSipMessage(leg_id, message)]
    return Decision(event.origin, (), tuple(actions))


def admit_invite(state: RoomState, caller_uri: str, bound_jid: str = "") -> InviteVerdict:
    """403 while a ban stands (by caller URI or by the verified JID); else accept, saying
    whether the caller starts muted and with which privilege."""
    if state.link is None:
        return InviteVerdict(404, "Conference not found")
    key = caller_key(caller_uri)
    participant = participant_key(key, bound_jid)
    binding = state.bindings.get(key)
    bound_p = jid_key(binding.jid) if binding is not None else ""
    if state.is_banned(participant, key, bound_p):
        return InviteVerdict(403, "Banned from this conference")
    return InviteVerdict(
        200, "OK", muted=participant in state.mutes, privilege=state.privilege(participant)
    )


def parse_dtmf(buffer: str, digit: str) -> tuple[str, DtmfCommandKind | None]:
    """Feed one DTMF digit; returns the new buffer and a complete command, if any."""
    if digit == "*":
        return "*", None
    if buffer == "*":
        return "", DTMF_KEYS.get("*" + digit)
    return "", None


# ---- helpers --------------------------------------------------------------------------------

_Out = tuple[list[Change], list[Action]]


def _none() -> _Out:
    return [], []


class _Stamp(TypedDict):
    actor: str
    at: float
    origin: str


def _stamp(event: MirrorEvent) -> _Stamp:
    return {"actor": event.actor, "at": event.at, "origin": event.origin}


def _resolve(state: RoomState, occupant_jid: str) -> tuple[str, LegRecord | None]:
    """Participant key behind an occupant JID (a puppet's caller, or the JID itself)."""
    try:
        bare = bare_jid(occupant_jid)
    except ValueError:
        return "", None
    leg = state.leg_by_puppet(bare)
    if leg is not None:
        return leg.participant, leg
    for key, ban in state.bans.items():
        if bare in ban.puppet_jids:
            return key, None
    return "xmpp:" + bare, None


def _roles(privilege: str) -> tuple[str, ...]:
    return ("owner", "moderator") if privilege == "owner" else (privilege,)


def _voiced_role(state: RoomState, participant: str) -> MucRole:
    return "participant" if state.privilege(participant) == "participant" else "moderator"


def _tell(leg: LegRecord, text: str) -> list[Action]:
    return [SendSipMessage(leg.leg_id, text)] if leg.accepts_messages and text else []


def _sip_mute(leg: LegRecord, muted: bool, note: str = "", tone: bool = True) -> list[Action]:
    out: list[Action] = [MuteLeg(leg.leg_id, muted), SetConferenceMediaStatus(leg.leg_id, muted)]
    if tone:
        out.append(PlayTone(leg.leg_id, "muted" if muted else "unmuted"))
    return out + _tell(leg, note)


def _room_mute(state: RoomState, leg: LegRecord, muted: bool) -> Action:
    if leg.puppet_jid:
        role: MucRole = "visitor" if muted else _voiced_role(state, leg.participant)
        return SetOccupantRole(leg.puppet_jid, role)
    return ShowOccupantInCall(leg.bound_jid, leg.leg_id, in_call=True, muted=muted)


def _room_leave(leg: LegRecord, status: str) -> Action:
    if leg.puppet_jid:
        return LeavePuppet(leg.leg_id, leg.puppet_jid, status)
    return ShowOccupantInCall(leg.bound_jid, leg.leg_id, in_call=False)


def _mute_all_legs(
    state: RoomState, participants: Iterable[str], muted: bool, event: MirrorEvent, note: str
) -> _Out:
    """Mute (by a moderator) or unmute participants on both sides, once per participant."""
    changes: list[Change] = []
    actions: list[Action] = []
    for p in dict.fromkeys(participants):
        if muted:
            changes.append(put(p, MuteRecord(kind="moderator", **_stamp(event))))
        else:
            changes.append(Delete("mutes", p))
        for leg in state.legs_of(p):
            actions += _sip_mute(leg, muted, note)
            actions.append(_room_mute(state, leg, muted))
    return changes, actions


# ---- happened in the room -------------------------------------------------------------------


def _voice(event: OccupantVoiceChanged, state: RoomState) -> _Out:
    p, _ = _resolve(state, event.occupant_jid)
    if not p:
        return _none()
    current = state.mutes.get(p)
    if not event.voiced:
        if current is not None:  # already muted (also the echo of our own revoke)
            return _none()
        change: Change = put(p, MuteRecord(kind="moderator", **_stamp(event)))
        note = "A moderator muted you from the chat room."
    else:
        if current is None:
            return _none()
        change = Delete("mutes", p)
        note = "A moderator unmuted you from the chat room."
    actions: list[Action] = []
    for leg in state.legs_of(p):
        actions += _sip_mute(leg, not event.voiced, note)
    return [change], actions


def _kick(event: OccupantKicked, state: RoomState) -> _Out:
    p, puppet_leg = _resolve(state, event.occupant_jid)
    legs = [puppet_leg] if puppet_leg is not None else state.legs_of(p)
    why = "kicked from the chat room" + (f": {event.reason}" if event.reason else "")
    changes: list[Change] = [Delete("legs", leg.leg_id) for leg in legs]
    actions: list[Action] = []
    for leg in legs:
        actions += _tell(leg, f"You were removed from the conference ({why}).")
        actions.append(HangupLeg(leg.leg_id, why))
    return changes, actions


def _ban(event: OccupantBanned, state: RoomState) -> _Out:
    p, _ = _resolve(state, event.occupant_jid)
    if not p:
        return _none()
    legs = state.legs_of(p)
    changes: list[Change] = []
    if p not in state.bans:
        puppets = tuple(leg.puppet_jid for leg in legs if leg.puppet_jid)
        record = BanRecord(reason=event.reason, puppet_jids=puppets, **_stamp(event))
        changes.append(put(p, record))
    why = "banned from the chat room" + (f": {event.reason}" if event.reason else "")
    actions: list[Action] = []
    for leg in legs:
        changes.append(Delete("legs", leg.leg_id))
        actions += _tell(leg, f"You were banned from the conference ({why}).")
        actions.append(HangupLeg(leg.leg_id, why))
    return changes, actions


def _unban(event: OccupantUnbanned, state: RoomState) -> _Out:
    p, _ = _resolve(state, event.occupant_jid)
    if p not in state.bans:
        return _none()
    return [Delete("bans", p)], []  # future INVITEs are admitted again; nothing to do now


def _privilege(event: OccupantPrivilegeChanged, state: RoomState) -> _Out:
    p, puppet_leg = _resolve(state, event.occupant_jid)
    current = state.privilege(p)
    if not p or current == event.privilege:
        return _none()
    if puppet_leg is not None and current == "owner" and event.privilege == "moderator":
        return _none()  # a puppet's role alone cannot say "owner": not a downgrade
    if event.privilege == "participant":
        change: Change = Delete("roles", p)
    else:
        change = put(p, RoleRecord(privilege=event.privilege, **_stamp(event)))
    actions: list[Action] = []
    for leg in state.legs_of(p):
        actions.append(SetConferenceRoles(leg.leg_id, _roles(event.privilege)))
        if event.privilege != "participant":
            actions += _tell(leg, MODERATOR_HELP)
    return [change], actions


def _subject(event: SubjectChanged, state: RoomState) -> _Out:
    if state.subject is not None and state.subject.text == event.subject:
        return _none()
    return [put("subject", SubjectRecord(text=event.subject, **_stamp(event)))], [
        SetConferenceSubject(event.subject)
    ]


def _groupchat(event: GroupchatReceived, state: RoomState) -> _Out:
    if event.from_bridge:
        return _none()
    sender, puppet_leg = _resolve(state, event.sender_jid) if event.sender_jid else ("", None)
    if puppet_leg is not None:
        return _none()  # our own puppet's message: it came from SIP, never echo it back
    actions: list[Action] = [
        SendSipMessage(
            leg.leg_id,
            event.body,
            subject=event.subject,
            thread=event.thread,
            language=event.language,
            sender_display=event.sender_nick,
        )
        for leg in state.legs.values()
        if leg.accepts_messages and leg.participant != sender
    ]
    return [], actions


def _destroyed(event: RoomDestroyed, state: RoomState) -> _Out:
    changes: list[Change] = [Delete("legs", leg_id) for leg_id in state.legs]
    if state.link is not None:
        changes.append(Delete("meta", "link"))
    why = "the chat room was closed" + (f": {event.reason}" if event.reason else "")
    actions: list[Action] = []
    for leg in state.legs.values():
        actions += _tell(leg, f"The conference has ended ({why}). Goodbye.")
        actions.append(HangupLeg(leg.leg_id, f"conference ended: {why}"))
    return changes, actions


# ---- happened in (or asked from) the call -------------------------------------------------


def _joined(event: CallerJoined, state: RoomState) -> _Out:
    if event.leg_id in state.legs:
        return _none()
    key = caller_key(event.caller_uri)
    p = participant_key(key, event.bound_jid)
    binding = state.bindings.get(key)
    bound_p = jid_key(binding.jid) if binding is not None else ""
    if state.is_banned(p, key, bound_p):  # admission should have said 403 already
        return [], [HangupLeg(event.leg_id, "banned from this conference", 403)]
    puppet = "" if event.bound_jid else bare_jid(event.puppet_jid)
    leg = LegRecord(
        leg_id=event.leg_id,
        caller_uri=key,
        participant=p,
        nick=event.nick,
        puppet_jid=puppet,
        call_id=event.call_id,
        node=event.node,
        accepts_messages=event.accepts_messages,
        **_stamp(event),
    )
    changes: list[Change] = [put(event.leg_id, leg)]
    if event.bound_jid:
        jid = bare_jid(event.bound_jid)
        verified = event.verified_by or "unknown"
        changes.append(put(key, BindingRecord(jid=jid, verified_by=verified, **_stamp(event))))
    mute = state.mutes.get(p)
    privilege = state.privilege(p)
    actions: list[Action] = []
    if puppet:
        role: MucRole = "visitor" if mute else _voiced_role(state, p)
        actions.append(JoinPuppet(event.leg_id, puppet, event.nick, role))
    else:
        jid = bare_jid(event.bound_jid)
        actions.append(ShowOccupantInCall(jid, event.leg_id, True, bool(mute)))
    # feedback to this leg only: the stored truth applies to a caller who calls again
    if mute is not None:
        who = "yourself" if mute.kind == "self" else "a moderator"
        actions += _sip_mute(leg, True, f"You are muted (by {who}).", tone=True)
    if privilege != "participant":
        actions.append(SetConferenceRoles(event.leg_id, _roles(privilege)))
        actions += _tell(leg, MODERATOR_HELP)
    return changes, actions


def _left(event: CallerLeft, state: RoomState) -> _Out:
    leg = state.legs.get(event.leg_id)
    if leg is None:
        return _none()
    return [Delete("legs", leg.leg_id)], [_room_leave(leg, event.reason)]


def _dtmf(event: DtmfCommand, state: RoomState) -> _Out:
    leg = state.legs.get(event.leg_id)
    if leg is None:
        return _none()
    p = leg.participant
    if event.command == "self-mute":
        current = state.mutes.get(p)
        if current is not None and current.kind == "moderator":
            return [], [PlayTone(leg.leg_id, "beep"), *_tell(leg, "A moderator muted you.")]
        muted = current is None
        change: Change = (
            put(p, MuteRecord(kind="self", **_stamp(event))) if muted else Delete("mutes", p)
        )
        actions: list[Action] = []
        for each in state.legs_of(p):
            actions += _sip_mute(each, muted)
            actions.append(_room_mute(state, each, muted))
        return [change], actions
    if state.privilege(p) == "participant":
        return [], [PlayTone(leg.leg_id, "beep"), *_tell(leg, "Only moderators may use *7/*8.")]
    if event.command == "mute-all":
        targets = [
            other.participant
            for other in state.legs.values()
            if other.participant != p
            and other.participant not in state.mutes
            and state.privilege(other.participant) == "participant"
        ]
        changes, actions = _mute_all_legs(
            state, targets, True, event, "A moderator muted everyone."
        )
    else:
        targets = [
            other.participant
            for other in state.legs.values()
            if (m := state.mutes.get(other.participant)) is not None and m.kind == "moderator"
        ]
        changes, actions = _mute_all_legs(state, targets, False, event, "A moderator unmuted you.")
    return changes, [*actions, PlayTone(leg.leg_id, "beep")]


def _sip_message(event: SipMessageIn, state: RoomState) -> _Out:
    leg = state.legs.get(event.leg_id)
    if leg is None:
        return _none()
    mute = state.mutes.get(leg.participant)
    if mute is not None and mute.kind == "moderator":
        return [], _tell(leg, "A moderator muted you: your messages are not relayed.")
    # a self-muted puppet is a visitor and may not speak in the room: the control occupant
    # relays on its behalf
    as_jid = leg.puppet_jid if mute is None else ""
    return [], [
        SendGroupchat(
            as_jid,
            leg.nick,
            event.body,
            subject=event.subject,
            language=event.language,
            thread=event.thread,
        )
    ]


def _caller_privilege(event: CallerPrivilegeChanged, state: RoomState) -> _Out:
    leg = state.legs.get(event.leg_id)
    if leg is None or state.privilege(leg.participant) == event.privilege:
        return _none()
    p = leg.participant
    if event.privilege == "participant":
        change: Change = Delete("roles", p)
    else:
        change = put(p, RoleRecord(privilege=event.privilege, **_stamp(event)))
    actions: list[Action] = [SetConferenceRoles(leg.leg_id, _roles(event.privilege))]
    if event.privilege != "participant":
        actions += _tell(leg, MODERATOR_HELP)
    if p not in state.mutes:  # a visitor stays a visitor until unmuted
        role: MucRole = "participant" if event.privilege == "participant" else "moderator"
        target = leg.puppet_jid or leg.bound_jid
        actions.append(SetOccupantRole(target, role))
    return [change], actions


def _caller_ban(event: CallerBanned, state: RoomState) -> _Out:
    leg = state.legs.get(event.leg_id)
    if leg is None:
        return _none()
    p = leg.participant
    legs = state.legs_of(p)
    puppets = tuple(each.puppet_jid for each in legs if each.puppet_jid)
    record = BanRecord(reason=event.reason, puppet_jids=puppets, **_stamp(event))
    changes: list[Change] = [put(p, record)]
    why = "banned" + (f": {event.reason}" if event.reason else "")
    actions: list[Action] = []
    for each in legs:
        changes.append(Delete("legs", each.leg_id))
        actions += _tell(each, f"You were banned from the conference ({why}).")
        actions.append(HangupLeg(each.leg_id, why))
        if each.puppet_jid:
            actions.append(BanJid(each.puppet_jid, why))
    if leg.bound_jid:
        actions.append(BanJid(leg.bound_jid, why))
    return changes, actions


def _conference_subject(event: ConferenceSubjectChanged, state: RoomState) -> _Out:
    if state.subject is not None and state.subject.text == event.subject:
        return _none()
    return [put("subject", SubjectRecord(text=event.subject, **_stamp(event)))], [
        SetRoomSubject(event.subject),
        SetConferenceSubject(event.subject),
    ]


def _ended(event: ConferenceEnded, state: RoomState) -> _Out:
    changes: list[Change] = [Delete("legs", leg_id) for leg_id in state.legs]
    return changes, [_room_leave(leg, event.reason) for leg in state.legs.values()]


# ---- re-apply the stored truth --------------------------------------------------------------


def _restore(event: Restore, state: RoomState) -> _Out:
    changes: list[Change] = []
    actions: list[Action] = []
    for ban_key, ban in state.bans.items():
        jids = [ban_key[5:]] if ban_key.startswith("xmpp:") else []
        for jid in [*jids, *ban.puppet_jids]:
            reused = state.leg_by_puppet(jid)
            if reused is None or reused.participant == ban_key:  # never ban a reused JID
                actions.append(BanJid(jid, ban.reason))
    if state.subject is not None:
        actions.append(SetConferenceSubject(state.subject.text))
    for leg in state.legs.values():
        if event.live_legs is not None and leg.leg_id not in event.live_legs:
            changes.append(Delete("legs", leg.leg_id))  # a ghost: its call died with a node
            actions.append(_room_leave(leg, "call lost"))
            continue
        binding = state.bindings.get(leg.caller_uri)
        bound_p = jid_key(binding.jid) if binding is not None else ""
        if state.is_banned(leg.participant, leg.caller_uri, bound_p):
            changes.append(Delete("legs", leg.leg_id))
            actions.append(HangupLeg(leg.leg_id, "banned from this conference"))
            continue
        muted = leg.participant in state.mutes
        privilege = state.privilege(leg.participant)
        if leg.puppet_jid:
            role: MucRole = "visitor" if muted else _voiced_role(state, leg.participant)
            actions.append(JoinPuppet(leg.leg_id, leg.puppet_jid, leg.nick, role))
            actions.append(SetOccupantRole(leg.puppet_jid, role))
        else:
            actions.append(ShowOccupantInCall(leg.bound_jid, leg.leg_id, True, muted))
        actions += [MuteLeg(leg.leg_id, muted), SetConferenceMediaStatus(leg.leg_id, muted)]
        actions.append(SetConferenceRoles(leg.leg_id, _roles(privilege)))
    return changes, actions


_HANDLERS: dict[type, Callable[[Any, RoomState], _Out]] = {
    OccupantVoiceChanged: _voice,
    OccupantKicked: _kick,
    OccupantBanned: _ban,
    OccupantUnbanned: _unban,
    OccupantPrivilegeChanged: _privilege,
    SubjectChanged: _subject,
    GroupchatReceived: _groupchat,
    RoomDestroyed: _destroyed,
    CallerJoined: _joined,
    CallerLeft: _left,
    DtmfCommand: _dtmf,
    SipMessageIn: _sip_message,
    CallerPrivilegeChanged: _caller_privilege,
    CallerBanned: _caller_ban,
    ConferenceSubjectChanged: _conference_subject,
    ConferenceEnded: _ended,
    Restore: _restore,
}

__all__ = [
    "DTMF_KEYS",
    "Decision",
    "InviteVerdict",
    "admit_invite",
    "decide",
    "parse_dtmf",
    "refusal",
]
