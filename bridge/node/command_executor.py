"""The one executor of owner commands (issue 8), behind both front ends.

``!commands`` typed in a room (``BridgedRoom.on_command``) and XEP-0050 ad-hoc commands
(:class:`bridge.xmpp.adhoc.AdhocCommands`) end in :meth:`CommandExecutor.execute`:

1. the issuer's affiliation from the MUC service's own lists (:func:`check_issuer`, never a
   nick) and role from their live presence; a refusal is a clear reply;
2. a :class:`~bridge.core.commands.RoomView` snapshot of the stored truth and the room;
3. :func:`~bridge.core.commands.plan_command`, then the plan: its mirror events through the
   engine (recorded in Redis first, then their actions), then its actions — the mirror
   vocabulary through the node, the command-only ones (kick, link, lock, PIN, dial) here;
4. the reply (in the room from the control occupant, or as the ad-hoc result) and one log
   line, ``command.executed`` or ``command.refused``, with actor and result.

Lock and PIN live in the room's ``conference`` record (:class:`ConferenceRecord`) so they
survive restarts and reach the workers' admission snapshot. After ``!unlink`` the control
occupant stays in the room (URI withdrawn, callers hung up) so that ``!link`` can be typed
there again; across a restart an unlinked room is forgotten and is linked with the ad-hoc
``link`` command on the component.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.jid import InvalidJID

from bridge.core.commands import (
    COMMANDS,
    CommandPlan,
    CommandReply,
    DialOut,
    Effect,
    Issuer,
    KickOccupant,
    LinkConference,
    ParsedCommand,
    ParseError,
    Participant,
    RoomView,
    SetLocked,
    SetPin,
    UnlinkConference,
    authorize,
    parse_command,
    plan_command,
)
from bridge.core.commands.delivery import reply_privately
from bridge.core.events import DialOutCall, DialProgress, LegLeft
from bridge.core.linking import link_refusal
from bridge.core.mirror_events import Action
from bridge.core.pin import hash_pin
from bridge.core.ratelimit import RateLimiter, occupant_key
from bridge.core.records import ConferenceRecord, put
from bridge.logs import bound, get_logger
from bridge.state.errors import StateUnavailable
from bridge.xmpp.adhoc import check_issuer
from bridge.xmpp.events import CommandTyped
from bridge.xmpp.room import BridgedRoom

if TYPE_CHECKING:
    from bridge.node.supervisor import LinkedRoom, Node

log = get_logger(__name__)

PREFIX = "!"


@dataclass
class _RoomLock:
    lock: asyncio.Lock
    users: int = 0


@dataclass(frozen=True, slots=True)
class _Dial:
    request_id: str
    conference: str
    room_jid: str
    target: str
    report_to: str
    actor: str


class CommandExecutor:
    """Owner commands of one node; see the module docstring."""

    def __init__(self, node: Node, *, prefix: str = PREFIX) -> None:
        self.node = node
        self.component = node.component
        self.prefix = prefix
        #: rooms unlinked by a command: the control occupant stays to hear ``!link``
        self.parked: dict[str, BridgedRoom] = {}
        self.dials: dict[str, _Dial] = {}
        #: one command at a time per room (each sees the previous one's result); rooms do
        #: not wait for each other. Link and unlink also take the node-wide lock.
        self._room_locks: dict[str, _RoomLock] = {}
        self._node_lock = asyncio.Lock()
        limits = node.settings.xmpp.limits
        self.limiter = RateLimiter(limits.command_burst, limits.command_per_minute)
        self._tasks: set[asyncio.Task[None]] = set()
        node.command_hook = self.on_typed
        node.dial_hook = self.on_dial_progress
        for room in node.rooms.values():
            room.bridged.on_command = self.on_typed

    # ---- front ends ---------------------------------------------------------------------

    def on_typed(self, typed: CommandTyped) -> None:
        """``BridgedRoom.on_command``: run it without blocking the stanza handler."""
        self._spawn(self._typed(typed))

    async def _typed(self, typed: CommandTyped) -> None:
        bridged = self._bridged(typed.room)
        if bridged is None:
            return
        parsed = parse_command(typed.body, self.prefix)
        if isinstance(parsed, ParseError) and parsed.code == "not-command":
            return
        key = typed.key or occupant_key(typed.jid, "", typed.nick)
        refusal = self.too_fast(typed.room, key, typed.nick)
        if refusal is not None:
            if refusal.text:
                bridged.tell(typed.nick, refusal.text)
            return
        if isinstance(parsed, ParseError):
            with bound(room=typed.room):
                log.info("command.refused", command=parsed.command or "?",
                         actor=_bare(typed.jid) or typed.nick, result="invalid",
                         detail=parsed.message[:200])  # fmt: skip
            bridged.tell(typed.nick, parsed.message)
            return
        event_id = f"cmd:{typed.room}:{typed.nick}:{typed.stanza_id or uuid.uuid4().hex}"
        reply = await self.execute(
            typed.room, parsed, nick=typed.nick, jid=_bare(typed.jid), role=typed.role,
            event_id=event_id,
        )  # fmt: skip
        target = self._bridged(typed.room) or bridged  # a new occupant after !link
        lines = self.node.settings.xmpp.limits.private_reply_lines
        if reply_privately(parsed.name, reply, lines):
            target.tell(typed.nick, reply.text)
        else:
            self.say(target, f"{typed.nick}: {reply.text}")

    def too_fast(self, room_jid: str, key: str, who: str) -> CommandReply | None:
        """None if the issuer ``key`` may run a command in ``room_jid`` now; else the
        refusal (its text is empty after the first one of a run: say it once)."""
        allowed, warn = self.limiter.allow(f"{room_jid}|{key}", time.monotonic())
        if allowed:
            return None
        with bound(room=room_jid):
            log.info("command.rate_limited", actor=who, key=key)
        text = "You are sending commands too fast; wait a moment and try again."
        return CommandReply("refused", text if warn else "")

    async def from_adhoc(
        self, room_jid: str, issuer_jid: str, parsed: ParsedCommand
    ) -> CommandReply:
        """The :data:`bridge.xmpp.adhoc.Executor` of :class:`AdhocCommands`.

        The IQ's ``from`` is the issuer's full JID; a command sent to the control occupant's
        room JID arrives from the issuer's occupant JID (``room@service/nick``) instead."""
        nick, jid, role = "", _bare(issuer_jid), "none"
        bridged = self._bridged(room_jid)
        try:
            sender = JID(issuer_jid)
        except InvalidJID:
            sender = JID()
        if sender.bare and sender.domain == JID(room_jid).domain:  # an occupant JID
            if sender.bare != room_jid or bridged is None:
                return CommandReply("refused", "Send the command from this room, or from your "
                                    "own account.")  # fmt: skip
            occupant = bridged.occupants.get(sender.resource)
            if occupant is None:
                return CommandReply("refused", "You are not in this room.")
            nick, jid, role = occupant.nick, _bare(occupant.jid), occupant.role
        elif bridged is not None:
            for occupant in bridged.occupants.values():
                if occupant.jid and _bare(occupant.jid) == jid:
                    nick, role = occupant.nick, occupant.role
                    break
        refusal = self.too_fast(room_jid, occupant_key(jid, "", nick), jid or nick)
        if refusal is not None:
            return CommandReply("refused", refusal.text or "You are sending commands too fast.")
        return await self.execute(
            room_jid, parsed, nick=nick, jid=jid, role=role,
            event_id=f"adhoc:{room_jid}:{uuid.uuid4().hex}",
        )  # fmt: skip

    # ---- the one implementation -----------------------------------------------------------

    async def execute(
        self, room_jid: str, parsed: ParsedCommand, *, nick: str, jid: str, role: str,
        event_id: str,
    ) -> CommandReply:  # fmt: skip
        spec = COMMANDS[parsed.name]
        if jid:
            affiliation, refusal = await check_issuer(
                self.component, room_jid, jid, spec, ifrom=self.component.control_jid, role=role
            )
        else:  # the room hides real JIDs from the bridge: the live role is all we know
            affiliation, refusal = "none", authorize(spec, "none", role)
        issuer = Issuer(nick=nick, jid=jid, affiliation=affiliation, role=role)
        with bound(room=room_jid):
            if refusal is not None:
                plan = CommandPlan(spec.name, CommandReply("refused", refusal.message))
                log.info("command.refused", **plan.audit(issuer))
                return plan.reply
            async with self.room_lock(room_jid):
                plan = plan_command(parsed, issuer, self.view(room_jid), now=time.time(),
                                    event_id=event_id, prefix=self.prefix)  # fmt: skip
                if not plan.accepted:
                    log.info("command.refused", **plan.audit(issuer))
                    return plan.reply
                try:
                    reply = await self._carry_out(room_jid, plan, event_id)
                except StateUnavailable as error:
                    reply = CommandReply("failed", f"Nothing was changed: {error}.")
                except (IqError, IqTimeout) as error:
                    reply = CommandReply("failed", f"The chat server refused it: {_why(error)}.")
            audit = plan.audit(issuer) | {"result": reply.status, "detail": reply.text[:200]}
            log.info("command.executed", **audit)
            return reply

    async def _carry_out(self, room_jid: str, plan: CommandPlan, event_id: str) -> CommandReply:
        room = self.node.room_of_muc(room_jid)
        if room is not None:
            for event in plan.events:
                await self.node.handle_event(room, event)
        reply = plan.reply
        mirror: list[Action] = []
        for n, action in enumerate(plan.actions):
            if isinstance(action, KickOccupant | LinkConference | UnlinkConference | SetLocked
                          | SetPin | DialOut):  # fmt: skip
                reply = await self._command_action(room, action, f"{event_id}:a{n}") or reply
            else:
                mirror.append(action)
        if mirror and room is not None:
            await self.node.perform(room, mirror)
        return reply

    async def _command_action(
        self, room: LinkedRoom | None, action: Effect, event_id: str
    ) -> CommandReply | None:
        """Carry out one command-only action; a reply replaces the plan's when it failed."""
        if isinstance(action, KickOccupant):
            await self.component.plugin["xep_0045"].set_role(
                JID(action.room_jid), action.nick, "none", reason=action.reason,
                ifrom=self.component.control_jid,
            )  # fmt: skip
        elif isinstance(action, LinkConference):
            async with self._node_lock:  # node.rooms and the leases are node-wide
                return await self._link(action)
        elif isinstance(action, UnlinkConference):
            async with self._node_lock:
                await self._unlink(room, action, event_id)
        elif isinstance(action, SetLocked):
            await self._set_conference(action.conference, event_id, action.actor,
                                       locked=action.locked)  # fmt: skip
        elif isinstance(action, SetPin):
            pin_hash = hash_pin(action.pin) if action.pin else ""
            await self._set_conference(action.conference, event_id, action.actor,
                                       pin_hash=pin_hash)  # fmt: skip
        elif isinstance(action, DialOut) and room is not None:
            return self._dial(room, action.target, action.is_number, action.report_to,
                              action.actor)  # fmt: skip
        return None

    # ---- link / unlink ----------------------------------------------------------------------

    async def _link(self, action: LinkConference) -> CommandReply | None:
        room_jid = JID(action.room_jid)
        name = room_jid.user.lower()
        xmpp = self.node.settings.xmpp
        if room_jid.domain != xmpp.muc_service:
            return CommandReply("failed", f"This bridge links rooms of "
                                f"{xmpp.muc_service} only.")  # fmt: skip
        refusal = link_refusal(
            str(room_jid.bare), self_service=xmpp.linking.self_service,
            patterns=xmpp.linking.allowed_rooms, muc_service=xmpp.muc_service,
            linked=len(self.node.rooms), max_rooms=xmpp.linking.max_rooms,
            preapproved=name in {r.strip().lower() for r in self.node.settings.rooms},
        )  # fmt: skip
        if refusal:
            log.info("link.refused", room=str(room_jid.bare), actor=action.actor,
                     reason=refusal)  # fmt: skip
            return CommandReply("refused", refusal)
        parked = self.parked.pop(str(room_jid.bare), None)
        if parked is not None:  # rejoin as a linked room (fresh puppets, advertised URI)
            await parked.close()
            # Our leave must come back before the new join goes out: its self-presence
            # would otherwise read as the new control occupant being removed.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.node.settings.xmpp.join_timeout):
                    while parked.occupants:  # noqa: ASYNC110 (cleared by that presence)
                        await asyncio.sleep(0.02)
            self.component.rooms.pop(str(parked.jid), None)
        await self.node.link(name, actor=action.actor)
        room = self.node.rooms.get(name)
        if room is None:
            return CommandReply("failed", f"{name} is served by another bridge node; "
                                "try again there.")  # fmt: skip
        room.bridged.on_command = self.on_typed
        if action.external_uri:
            await self._set_conference(name, f"link:{name}:{action.external_uri}", action.actor,
                                       external_uri=action.external_uri)  # fmt: skip
            return self._dial(room, action.external_uri, False, "", action.actor,
                              linked=True)  # fmt: skip
        return CommandReply("ok", f"Linked: callers dial {self.node.sip_uri(name)}.")

    async def _unlink(
        self, room: LinkedRoom | None, action: UnlinkConference, event_id: str
    ) -> None:
        if room is None:
            return
        await self.node.unlink(room.name, event_id=event_id)
        bridged = room.bridged
        for leg_id in list(bridged.puppets):  # the legs were hung up by the mirror event
            await bridged.caller_left(LegLeft(leg_id, room.name, "", "unlinked"))
        await bridged.withdraw_sip_uri()
        self.parked[str(bridged.jid)] = bridged

    # ---- lock, PIN, external URI: the room's conference record ------------------------------

    async def _set_conference(
        self, name: str, event_id: str, actor: str, *, locked: bool | None = None,
        pin_hash: str | None = None, external_uri: str | None = None,
    ) -> None:  # fmt: skip
        engine = self.node.engine
        state = engine.cached(name) or await engine.load(name)
        record = state.conference or ConferenceRecord()
        record = replace(
            record,
            locked=record.locked if locked is None else locked,
            pin_hash=record.pin_hash if pin_hash is None else pin_hash,
            external_uri=record.external_uri if external_uri is None else external_uri,
            actor=actor, at=time.time(), origin="muc",
        )  # fmt: skip
        await engine.record(name, event_id, (put("conference", record),),
                            what="record the conference settings")  # fmt: skip
        self.node.publish_directory()

    # ---- dial-out -------------------------------------------------------------------------

    def _dial(self, room: LinkedRoom, target: str, is_number: bool, report_to: str, actor: str,
              *, linked: bool = False) -> CommandReply | None:  # fmt: skip
        uri = f"sip:{target}@{self.node.settings.sip.domain}" if is_number else target
        request_id = uuid.uuid4().hex[:12]
        dial = _Dial(request_id, room.name, room.muc_jid, target, report_to, actor)
        self.dials[request_id] = dial
        if not self.node.pool.dial(DialOutCall(room.name, uri, request_id)):
            self.dials.pop(request_id, None)
            return CommandReply("failed", f"Cannot dial {target}: every call slot of this "
                                "node is taken.")  # fmt: skip
        log.info("dial.started", room=room.name, target=uri, request_id=request_id, actor=actor)
        if linked:
            return CommandReply("ok", f"Linked to {target}: the bridge dials in; progress "
                                "will be reported here.")  # fmt: skip
        return None

    def on_dial_progress(self, event: DialProgress) -> None:
        """Progress from a worker (called in order, before the answered leg's LegJoined)."""
        dial = self.dials.get(event.request_id)
        if dial is None:
            return
        if event.status == "answered" and event.leg_id:
            self.node.pins.trust(event.leg_id)  # we called them: no PIN
        if event.status in ("answered", "failed"):
            del self.dials[event.request_id]
        log.info("dial.progress", room=dial.conference, request_id=dial.request_id,
                 status=event.status, reason=event.reason)  # fmt: skip
        text = {
            "trying": "",
            "ringing": f"{dial.target} is ringing…",
            "answered": f"{dial.target} answered and joined the call.",
            "failed": f"Could not reach {dial.target}: {event.reason or 'call failed'}.",
        }.get(event.status, "")
        bridged = self._bridged(dial.room_jid)
        if text and bridged is not None:
            self.say(bridged, f"{dial.report_to}: {text}" if dial.report_to else text)

    # ---- what the planner sees ----------------------------------------------------------------

    def view(self, room_jid: str) -> RoomView:
        """Snapshot for :func:`plan_command`: stored legs, mutes and roles, the live room."""
        room = self.node.room_of_muc(room_jid)
        bridged = room.bridged if room is not None else self.parked.get(room_jid)
        if bridged is None:
            return RoomView(room_jid=room_jid)
        component_domain = self.component.boundjid.bare
        people: list[Participant] = []
        shown: set[str] = set()
        state = self.node.engine.cached(room.name) if room is not None else None
        if room is not None and state is not None:
            by_participant: dict[str, list[str]] = {}
            for leg in sorted(state.legs.values(), key=lambda leg: leg.at):
                by_participant.setdefault(leg.participant, []).append(leg.leg_id)
            for key, leg_ids in by_participant.items():
                first = state.legs[leg_ids[0]]
                nick = bridged.present_puppets.get(first.leg_id, "")
                if not nick and first.bound_jid:
                    nick = next((o.nick for o in bridged.occupants.values()
                                 if o.jid and _bare(o.jid) == first.bound_jid), "")  # fmt: skip
                nick = nick or first.nick
                occupant = bridged.occupants.get(nick)
                mute = state.mutes.get(key)
                live = [self.node.legs[i] for i in leg_ids if i in self.node.legs]
                people.append(Participant(
                    nick=nick, jid=first.puppet_jid or first.bound_jid,
                    role=occupant.role if occupant else "participant",
                    affiliation=occupant.affiliation if occupant else "none",
                    puppet=bool(first.puppet_jid), leg_ids=tuple(leg_ids),
                    privilege=state.privilege(key), mute=mute.kind if mute else "",
                    talking=any(i in self.node.talking for i in leg_ids),
                    codec=live[0].codec if live else "", since=first.at,
                    accepts_messages=first.accepts_messages,
                ))  # fmt: skip
                shown.add(nick)
        for occupant in bridged.occupants.values():
            if occupant.nick in shown or occupant.nick == bridged.control_nick:
                continue
            if occupant.jid and JID(occupant.jid).domain == component_domain:
                continue  # a puppet of ours not (or no longer) in the stored legs
            people.append(
                Participant(
                    nick=occupant.nick,
                    jid=_bare(occupant.jid),
                    role=occupant.role,
                    affiliation=occupant.affiliation,
                )
            )
        conf = state.conference if state is not None else None
        return RoomView(
            room_jid=room_jid,
            conference=room.name if room is not None else "",
            sip_uri=self.node.sip_uri(room.name) if room is not None else "",
            external_uri=conf.external_uri if conf else "",
            locked=bool(conf and conf.locked),
            pin_set=bool(conf and conf.pin_hash),
            control_nick=bridged.control_nick,
            participants=tuple(people),
        )

    # ---- helpers --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def room_lock(self, room_jid: str) -> AsyncIterator[None]:
        """Serialise commands of one room (the lock is dropped once nobody holds or waits
        for it: ad-hoc commands may name any room, and memory must not grow with them)."""
        entry = self._room_locks.get(room_jid)
        if entry is None:
            entry = self._room_locks[room_jid] = _RoomLock(asyncio.Lock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0 and self._room_locks.get(room_jid) is entry:
                del self._room_locks[room_jid]

    @property
    def room_locks_held(self) -> int:
        """Rooms with a command running or waiting (0 when idle: locks are not kept)."""
        return len(self._room_locks)

    def _bridged(self, room_jid: str) -> BridgedRoom | None:
        room = self.node.room_of_muc(room_jid)
        return room.bridged if room is not None else self.parked.get(room_jid)

    def say(self, bridged: BridgedRoom, text: str) -> None:
        """A groupchat message from the control occupant (never relayed to callers)."""
        bridged.announce(text)

    def _spawn(self, job: object) -> None:
        assert asyncio.iscoroutine(job)
        task = asyncio.get_running_loop().create_task(self._guard(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, job: object) -> None:
        try:
            assert asyncio.iscoroutine(job)
            await job
        except Exception:  # a bug in one command must not take the room listener down
            log.exception("command.failed")


def _bare(jid: str) -> str:
    return jid.split("/", 1)[0].lower() if jid else ""


def _why(error: IqError | IqTimeout) -> str:
    if isinstance(error, IqTimeout):
        return "no answer"
    return str(error.iq["error"]["condition"]) or "error"


__all__ = ["PREFIX", "CommandExecutor"]
