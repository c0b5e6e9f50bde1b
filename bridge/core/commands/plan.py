"""The planner of owner commands: a parsed command, its issuer and a room view → a
:class:`~bridge.core.commands.model.CommandPlan` (mirror events, actions, reply). Pure.

Effects reuse the mirror vocabulary (:mod:`bridge.core.mirror_events` events and actions,
:mod:`bridge.core.events` worker commands); only what the mirror has no word for is new
(:mod:`bridge.core.commands.model`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from bridge.core.commands.grammar import NickError, ParsedCommand, resolve_nick
from bridge.core.commands.model import (
    CommandPlan,
    CommandReply,
    DialOut,
    Effect,
    Issuer,
    KickOccupant,
    LinkConference,
    Participant,
    RoomView,
    SetLocked,
    SetPin,
    UnlinkConference,
)
from bridge.core.commands.status import status_text
from bridge.core.commands.table import COMMANDS, authorize, help_text
from bridge.core.events import HangupLeg, SendSipMessage
from bridge.core.mirror_events import (
    MirrorEvent,
    MucRole,
    OccupantKicked,
    OccupantVoiceChanged,
    RoomDestroyed,
    SetOccupantRole,
    ShowOccupantInCall,
)

# ---- planning -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ctx:
    parsed: ParsedCommand
    issuer: Issuer
    view: RoomView
    now: float
    event_id: str
    prefix: str

    def event_ids(self) -> Iterable[str]:
        n = 0
        while True:
            yield f"{self.event_id}:{n}"
            n += 1


def _fail(ctx: _Ctx, text: str, status: Literal["invalid", "failed"] = "invalid") -> CommandPlan:
    return CommandPlan(ctx.parsed.name, CommandReply(status, text))


def _ok(ctx: _Ctx, text: str, events: Sequence[MirrorEvent] = (),
        actions: Sequence[Effect] = ()) -> CommandPlan:  # fmt: skip
    return CommandPlan(ctx.parsed.name, CommandReply("ok", text), tuple(events), tuple(actions))


def plan_command(
    parsed: ParsedCommand,
    issuer: Issuer,
    view: RoomView,
    *,
    now: float,
    event_id: str,
    prefix: str = "!",
) -> CommandPlan:
    """Decide what an issued command does (authorization included). Pure; never raises for
    any parsed command, issuer or view. ``event_id`` must be stable for this one command
    (stanza id / ad-hoc session id): the mirror events derive theirs from it, so a replay
    changes nothing."""
    spec = COMMANDS.get(parsed.name)
    if spec is None:
        return CommandPlan(parsed.name, CommandReply("invalid", f"No command {parsed.name!r}."))
    refusal = authorize(spec, issuer.affiliation, issuer.role)
    if refusal is not None:
        return CommandPlan(spec.name, CommandReply("refused", refusal.message))
    ctx = _Ctx(parsed, issuer, view, now, event_id, prefix)
    if spec.needs_link and not view.linked:
        return _fail(ctx, f"This room is not linked to a conference; an owner can "
                     f"{prefix}link it.")  # fmt: skip
    return _PLANNERS[spec.name](ctx)


def _help(ctx: _Ctx) -> CommandPlan:
    return _ok(ctx, help_text(ctx.parsed.arg("command"), ctx.prefix))


def _status(ctx: _Ctx) -> CommandPlan:
    return _ok(ctx, status_text(ctx.view, ctx.now, ctx.prefix))


def _target(ctx: _Ctx, query: str, *, in_call: bool) -> Participant | CommandPlan:
    """The participant ``query`` names (callers only when ``in_call``), or the error plan."""
    view = ctx.view
    if view.control_nick and query == view.control_nick:
        return _fail(ctx, "That is the bridge itself.")
    everyone = [p.nick for p in view.participants if p.nick != view.control_nick]
    pool = [p.nick for p in view.participants if p.in_call] if in_call else everyone
    found = resolve_nick(query, pool)
    if isinstance(found, NickError):
        if in_call and not found.candidates:
            elsewhere = resolve_nick(query, everyone)
            if isinstance(elsewhere, str):
                return _fail(ctx, f"{elsewhere} is in the chat only, not on the call.")
        return _fail(ctx, found.message)
    target = view.by_nick(found)
    assert target is not None
    return target


def _outranks(target: Participant, issuer: Issuer) -> bool:
    """XEP-0045 §8.2/§9.2: nobody may kick or devoice an admin or owner at or above their own
    affiliation (the MUC would refuse it anyway; we say why first)."""
    rank = {"owner": 2, "admin": 1}
    level = rank.get(target.affiliation, 0)
    return level > 0 and level >= rank.get(issuer.affiliation, 0)


def _voiced_role(p: Participant) -> MucRole:
    return "participant" if p.privilege == "participant" else "moderator"


def _mute_effects(ctx: _Ctx, targets: Sequence[Participant], muted: bool,
                  ids: Iterable[str]) -> tuple[list[MirrorEvent], list[Effect]]:  # fmt: skip
    """Record each (un)mute as the room-side voice change it is, and make it in the room.

    The mirror policy turns the event into the SIP side (MuteLeg, conference-info status, a
    tone and a note to the caller) and the Redis record; the room side is ours to do: the
    puppet's role, or the bound occupant's in-call status (never their text voice)."""
    events: list[MirrorEvent] = []
    actions: list[Effect] = []
    reason = f"{'muted' if muted else 'unmuted'} by {ctx.issuer.nick or ctx.issuer.actor}"
    for p, event_id in zip(targets, ids, strict=False):
        events.append(OccupantVoiceChanged(
            event_id=event_id, room=ctx.view.conference, origin="muc", actor=ctx.issuer.actor,
            at=ctx.now, occupant_jid=p.jid, voiced=not muted,
        ))  # fmt: skip
        if p.puppet:
            role: MucRole = "visitor" if muted else _voiced_role(p)
            actions.append(SetOccupantRole(p.jid, role, reason))
        else:
            actions += [ShowOccupantInCall(p.jid, leg, True, muted) for leg in p.leg_ids]
    return events, actions


def _mute(ctx: _Ctx) -> CommandPlan:
    muted = ctx.parsed.name == "mute"
    query = ctx.parsed.arg("nick")
    word = "mute" if muted else "unmute"
    if query.casefold() == "all":  # always everyone: a troll nicknamed "all" changes nothing
        if muted:  # like *7: everyone without privilege who is not muted yet
            targets = [p for p in ctx.view.participants if p.in_call and not p.mute
                       and p.privilege == "participant" and p.role != "moderator"
                       and p.affiliation not in ("owner", "admin")
                       and p.jid != ctx.issuer.jid]  # fmt: skip
        else:  # like *8: only moderator mutes (a self-mute is the caller's own choice)
            targets = [p for p in ctx.view.participants if p.in_call and p.mute == "moderator"]
        if not targets:
            return _ok(ctx, f"Nobody to {word}.")
        events, actions = _mute_effects(ctx, targets, muted, ctx.event_ids())
        names = ", ".join(p.nick for p in targets)
        return _ok(ctx, f"{word.capitalize()}d {len(targets)}: {names}.", events, actions)
    target = _target(ctx, query, in_call=True)
    if isinstance(target, CommandPlan):
        return target
    if _outranks(target, ctx.issuer):
        return _fail(ctx, f"You may not {word} {target.nick}: they are a room "
                     f"{target.affiliation}.")  # fmt: skip
    if muted and target.mute:
        return _ok(ctx, f"{target.nick} is already muted.")
    if not muted:
        if not target.mute:
            return _ok(ctx, f"{target.nick} is not muted.")
        if target.mute == "self":
            return _fail(ctx, f"{target.nick} muted themself; only they can unmute (*6).")
    events, actions = _mute_effects(ctx, [target], muted, ctx.event_ids())
    return _ok(ctx, f"{word.capitalize()}d {target.nick}.", events, actions)


def _kick(ctx: _Ctx) -> CommandPlan:
    target = _target(ctx, ctx.parsed.arg("nick"), in_call=False)
    if isinstance(target, CommandPlan):
        return target
    if (target.jid and target.jid == ctx.issuer.jid) or target.nick == ctx.issuer.nick:
        return _fail(ctx, "You cannot kick yourself.")
    if _outranks(target, ctx.issuer):
        return _fail(ctx, f"You may not kick {target.nick}: they are a room "
                     f"{target.affiliation}.")  # fmt: skip
    reason = ctx.parsed.arg("reason")
    shown = f"kicked by {ctx.issuer.nick or ctx.issuer.actor}" + (f": {reason}" if reason else "")
    events: list[MirrorEvent] = []
    if target.jid:
        events.append(OccupantKicked(
            event_id=f"{ctx.event_id}:0", room=ctx.view.conference, origin="muc",
            actor=ctx.issuer.actor, at=ctx.now, occupant_jid=target.jid, reason=shown,
        ))  # fmt: skip
    actions: list[Effect] = [KickOccupant(ctx.view.room_jid, target.nick, shown)]
    note = " (their call is hung up)" if target.in_call else ""
    return _ok(ctx, f"Kicked {target.nick}{note}.", events, actions)


def _hangup(ctx: _Ctx) -> CommandPlan:
    target = _target(ctx, ctx.parsed.arg("nick"), in_call=True)
    if isinstance(target, CommandPlan):
        return target
    if _outranks(target, ctx.issuer):
        return _fail(ctx, f"You may not hang up on {target.nick}: they are a room "
                     f"{target.affiliation}.")  # fmt: skip
    why = f"hung up by {ctx.issuer.nick or ctx.issuer.actor}"
    actions: list[Effect] = []
    for leg in target.leg_ids:
        if target.accepts_messages:
            actions.append(SendSipMessage(leg, "A moderator ended your call."))
        actions.append(HangupLeg(leg, why))
    return _ok(ctx, f"Hanging up {target.nick}.", (), actions)


def _link(ctx: _Ctx) -> CommandPlan:
    view = ctx.view
    uri = ctx.parsed.arg("uri")
    if view.linked:
        current = view.external_uri or view.sip_uri or view.conference
        return _fail(ctx, f"This room is already linked to {current}; {ctx.prefix}unlink first.")
    action = LinkConference(view.room_jid, uri, ctx.issuer.actor)
    text = (
        f"Linking to {uri}: the bridge dials in."
        if uri
        else "Linking: creating the room's SIP URI."
    )
    return _ok(ctx, text, (), [action])


def _unlink(ctx: _Ctx) -> CommandPlan:
    view = ctx.view
    reason = f"unlinked by {ctx.issuer.nick or ctx.issuer.actor}"
    event = RoomDestroyed(event_id=f"{ctx.event_id}:0", room=view.conference, origin="muc",
                          actor=ctx.issuer.actor, at=ctx.now, reason=reason)  # fmt: skip
    on_call = sum(1 for p in view.participants if p.in_call)
    extra = f"; {on_call} caller(s) are told and hung up" if on_call else ""
    return _ok(ctx, f"Unlinked from {view.conference}{extra}.", [event],
               [UnlinkConference(view.room_jid, view.conference, ctx.issuer.actor)])  # fmt: skip


def _lock(ctx: _Ctx) -> CommandPlan:
    locked = ctx.parsed.name == "lock"
    if ctx.view.locked == locked:
        return _ok(ctx, f"The conference is already {'locked' if locked else 'unlocked'}.")
    text = ("Locked: new callers are refused." if locked
            else "Unlocked: new callers may join.")  # fmt: skip
    return _ok(ctx, text, (), [SetLocked(ctx.view.conference, locked, ctx.issuer.actor)])


def _pin(ctx: _Ctx) -> CommandPlan:
    value = ctx.parsed.arg("pin")
    if value == "off":
        if not ctx.view.pin_set:
            return _ok(ctx, "No PIN was set.")
        return _ok(ctx, "PIN removed: callers join directly.", (),
                   [SetPin(ctx.view.conference, None, ctx.issuer.actor)])  # fmt: skip
    return _ok(
        ctx,
        f"PIN set ({len(value)} digits): new callers must enter it followed by #. "
        "Callers already on the call stay.",
        (),
        [SetPin(ctx.view.conference, value, ctx.issuer.actor)],
    )


def _dial(ctx: _Ctx) -> CommandPlan:
    target = ctx.parsed.arg("target")
    is_number = not target.lower().startswith(("sip:", "sips:"))
    action = DialOut(ctx.view.conference, target, is_number, ctx.issuer.actor,
                     ctx.issuer.nick)  # fmt: skip
    return _ok(ctx, f"Dialling {target}; progress will be reported here.", (), [action])


_PLANNERS = {
    "help": _help,
    "status": _status,
    "link": _link,
    "unlink": _unlink,
    "mute": _mute,
    "unmute": _mute,
    "kick": _kick,
    "hangup": _hangup,
    "dial": _dial,
    "lock": _lock,
    "unlock": _lock,
    "pin": _pin,
}
assert set(_PLANNERS) == set(COMMANDS), "every command in the table needs a planner"

__all__ = ["plan_command"]
