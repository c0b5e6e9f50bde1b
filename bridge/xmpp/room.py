"""One bridged MUC room: the control occupant, one puppet per SIP caller, the text relay.

The supervisor drives a room with SIP-side events (``caller_joined``, ``caller_left``,
``relay_from_sip``, ``set_voice``) and consumes what the room side produces through
``events()`` (or a ``sink`` callback): ``SendSipMessage`` per leg and the typed events of
``bridge.xmpp.events`` for the mirror policy.

State is desired-versus-actual: ``puppets`` holds every caller the supervisor says is in the
call; whether each is *present* in the room is what the server last told us. ``sync()``
(start, reconnect, lost self-ping) rejoins the control occupant, re-advertises the SIP URI,
removes ghosts (occupants from our component that are not current callers, left by a crash)
and rejoins missing puppets. Callers removed by the room (kick, ban) are not rejoined.

This module is the room's membership (control occupant, puppets, presence, self-ping); the
text relay is :mod:`bridge.xmpp.relay`, the room configuration :mod:`bridge.xmpp.room_config`,
and what the room needs from the component :class:`bridge.xmpp.host.RoomHost`.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout

from bridge.core.commands import is_command
from bridge.core.events import LegJoined, LegLeft, SipMessageReceived
from bridge.core.ratelimit import occupant_key
from bridge.core.speaking import SpeakingStatus
from bridge.logs import bound, get_logger
from bridge.protocol.nicks import caller_nick, unique_nick
from bridge.protocol.stox import ChatText
from bridge.xmpp import muc
from bridge.xmpp.events import (
    CommandTyped,
    OccupantRoleChanged,
    OccupantsChanged,
    PuppetBanned,
    PuppetJoined,
    PuppetJoinFailed,
    PuppetKicked,
    PuppetLeft,
    PuppetVoiceChanged,
    RoomEvent,
    RoomJoined,
    RoomLost,
    SubjectChanged,
)
from bridge.xmpp.forms import Advertised, dial_in_line
from bridge.xmpp.host import RoomHost
from bridge.xmpp.jids import puppet_jid
from bridge.xmpp.members import (
    FINAL_JOIN_ERRORS,
    PUPPET_STATUS,
    VOICED_ROLES,
    WAITING_MAX,
    JoinError,
    Occupant,
    Puppet,
)
from bridge.xmpp.relay import Relay, RelayOutcome
from bridge.xmpp.room_config import advertise

log = get_logger(__name__)

_JOIN_ATTEMPTS = 4
_BRIDGE_ACTION_TTL = 30.0
NS_CORRECT = "urn:xmpp:message-correct:0"  # XEP-0308
SPEAKING_STATUS = f"{PUPPET_STATUS} · speaking"


class BridgedRoom:
    """A MUC room linked to a SIP conference (see the module docstring)."""

    def __init__(
        self,
        component: RoomHost,
        room_jid: str,
        sip_uri: str,
        *,
        sink: Callable[[RoomEvent], None] | None = None,
    ) -> None:
        self.xmpp = component
        self.settings = component.settings
        self.jid = JID(room_jid)
        if not self.jid.user or self.jid.resource:
            raise ValueError(f"room JID must be a bare room@service JID: {room_jid!r}")
        self.sip_uri = sip_uri
        self._sink = sink
        #: ``!commands`` typed in the room go here instead of to the callers (issue 8)
        self.on_command: Callable[[CommandTyped], None] | None = None
        self.command_prefix = "!"
        self._queue: asyncio.Queue[RoomEvent] = asyncio.Queue()
        self.puppets: dict[str, Puppet] = {}
        self.occupants: dict[str, Occupant] = {}
        self.joined = False
        self.control_nick = self.settings.control_nick
        self.affiliation = "none"
        self.advertised = Advertised.NONE
        self.subject = ""
        self._subject_pending_initial = False
        self._joins: dict[str, asyncio.Future[muc.MucPresence]] = {}
        self._sync_lock = asyncio.Lock()
        self._sync_task: asyncio.Task[None] | None = None
        self._ping_task: asyncio.Task[None] | None = None
        self._bridge_actions: dict[tuple[str, str], float] = {}
        self.relay = Relay(component, self.jid, self._emit, lambda: self.control_nick)
        self._dial_in_subject = ""  # the subject we set ("Join by phone: …"), if any
        self._speaking: dict[str, SpeakingStatus] = {}
        self._speaking_timers: dict[str, asyncio.TimerHandle] = {}
        self._closed = False
        self._warned_no_jids = False
        #: bare JIDs of puppets another node left behind (its calls died with it): removed
        #: from the room at the next reconcile, when the occupant list is known
        self._expelled: dict[str, str] = {}

    # ---- supervisor API ------------------------------------------------------------------

    def events(self) -> AsyncIterator[RoomEvent]:
        """What the room side produces, in order (unused when a ``sink`` was given)."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RoomEvent]:
        while True:
            yield await self._queue.get()

    def pending_events(self) -> list[RoomEvent]:
        """Everything queued so far, without waiting (handy for tests and draining)."""
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    @property
    def present_puppets(self) -> dict[str, str]:
        """leg_id → nick of the puppets in the room right now."""
        return {p.leg_id: p.nick for p in self.puppets.values() if p.present}

    async def caller_joined(self, leg: LegJoined) -> PuppetJoined | None:
        """A caller is in the call: its puppet joins (now, or at the next sync if offline).

        Returns the PuppetJoined event when the puppet is in the room on return.
        """
        existing = self.puppets.get(leg.leg_id)
        if existing is not None:
            return self._joined_event(existing) if existing.present else None
        jid = JID(
            puppet_jid(self.xmpp.puppet_key, self.xmpp.boundjid.bare, leg.from_uri, leg.leg_id)
        )
        wanted = caller_nick(
            leg.display_name, leg.from_uri, show_raw_numbers=self.settings.show_raw_numbers
        )
        puppet = Puppet(leg=leg, jid=jid, wanted_nick=wanted)
        self.puppets[leg.leg_id] = puppet
        if not self.joined:
            log.info("puppet.deferred", room=str(self.jid), leg_id=leg.leg_id)
            return None
        return await self._join_puppet(puppet)

    async def caller_left(self, event: LegLeft) -> None:
        """The caller hung up (or was hung up): its puppet leaves the room."""
        puppet = self.puppets.pop(event.leg_id, None)
        self.relay.forget(event.leg_id)
        self._speaking.pop(event.leg_id, None)
        timer = self._speaking_timers.pop(event.leg_id, None)
        if timer is not None:
            timer.cancel()
        if puppet is None:
            return
        if puppet.present or puppet.joining:
            self._leave(puppet, status=f"left the call ({event.reason})" if event.reason else "")
        if puppet.present:
            puppet.present = False
            self._emit(PuppetLeft(room=str(self.jid), leg_id=puppet.leg_id, nick=puppet.nick))

    def expel(self, puppet_jid: str, reason: str) -> None:
        """Remove a puppet of a call this node does not carry (a dead replica's, found in
        the stored state at takeover): kicked by the control occupant at the next reconcile
        (a component cannot send presence for another component's JIDs)."""
        bare = JID(puppet_jid).bare
        if any(p.jid.bare == bare for p in self.puppets.values()):
            return  # ours and live: not a ghost
        self._expelled[bare] = reason
        if self.joined:
            self.schedule_sync()

    async def relay_from_sip(self, message: SipMessageReceived) -> RelayOutcome:
        """A caller's SIP MESSAGE → a groupchat message from its puppet (and to other callers).

        Only messages tied to a leg are relayed: in-dialog ones, and out-of-dialog ones the
        node matched to a leg (``bridge.core.identity.sender_leg``); a From header alone
        proves nothing, and a puppet must never speak for someone else.
        """
        puppet = self.puppets.get(message.leg_id) if message.leg_id else None
        if puppet is None:
            return RelayOutcome.NOT_IN_ROOM
        if not puppet.present and not puppet.removed:
            # the caller is in the call before its puppet is in the room (joining, or the
            # bridge is rejoining): keep the text and send it, in order, once it is in
            if len(puppet.waiting) == WAITING_MAX:
                return RelayOutcome.NOT_JOINED
            puppet.waiting.append(message)
            return RelayOutcome.QUEUED
        return self.relay.from_caller(puppet, message, list(self.puppets.values()))

    def _send_waiting(self, puppet: Puppet) -> None:
        """The puppet is in the room: what its caller said meanwhile goes out now."""
        while puppet.waiting and puppet.present:
            message = puppet.waiting.popleft()
            outcome = self.relay.from_caller(puppet, message, list(self.puppets.values()))
            log.info("relay.sent_after_join", leg_id=puppet.leg_id, outcome=outcome)

    async def set_voice(self, leg_id: str, voice: bool, reason: str = "") -> None:
        """Mirror a SIP-side mute into the room: the puppet's role becomes visitor/participant.

        The resulting room events carry ``by_bridge=True`` so the policy does not mirror
        them back.
        """
        puppet = self.puppets.get(leg_id)
        if puppet is None or not puppet.present:
            raise KeyError(f"no puppet in the room for leg {leg_id!r}")
        role: Literal["participant", "visitor"] = "participant" if voice else "visitor"
        self._bridge_actions[(puppet.nick, role)] = time.monotonic() + _BRIDGE_ACTION_TTL
        await self.xmpp.plugin["xep_0045"].set_role(
            self.jid, puppet.nick, role, reason=reason, ifrom=self.xmpp.control_jid
        )

    def set_speaking(self, leg_id: str, talking: bool) -> None:
        """The mixer says this caller started or stopped talking: show it as the puppet's
        presence status ("… · speaking"), at most one change per ``speaking_min_interval``
        (bridge.core.speaking); docs/design.md says why a status and not something else."""
        if not self.settings.speaking_status or leg_id not in self.puppets:
            return
        state = self._speaking.setdefault(
            leg_id, SpeakingStatus(min_interval=self.settings.speaking_min_interval)
        )
        state.set(asyncio.get_running_loop().time(), talking)
        self._publish_speaking(leg_id)

    def _publish_speaking(self, leg_id: str) -> None:
        self._speaking_timers.pop(leg_id, None)
        state = self._speaking.get(leg_id)
        puppet = self.puppets.get(leg_id)
        if state is None or puppet is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if puppet.present and self.xmpp.online and not puppet.leaving:
            shown = state.due(now)
            if shown is not None:
                self.xmpp.send_presence(
                    pto=f"{self.jid}/{puppet.nick}",
                    pfrom=puppet.jid,
                    pstatus=SPEAKING_STATUS if shown else PUPPET_STATUS,
                )
                log.debug("puppet.speaking", room=str(self.jid), nick=puppet.nick, speaking=shown)
        wait = state.next_check(now)
        if wait is not None and leg_id not in self._speaking_timers:
            self._speaking_timers[leg_id] = loop.call_later(
                max(wait, 0.05), self._publish_speaking, leg_id
            )

    async def withdraw_sip_uri(self) -> None:
        """Stop advertising the conference but stay in the room (``!unlink``: the control
        occupant keeps listening for ``!link``)."""
        self.sip_uri = ""
        if self.joined and self.xmpp.online:
            try:
                self.advertised = await self._configure(created=False, sip_uri="")
            except (IqError, IqTimeout) as error:
                log.warning("room.unadvertise_failed", room=str(self.jid), error=str(error))
            self._update_dial_in_subject()

    def announce(self, text: str) -> None:
        """A groupchat line from the control occupant (ours: never relayed to callers)."""
        if self.joined and self.xmpp.online:
            self.xmpp.make_message(
                mto=self.jid, mfrom=self.xmpp.control_jid, mtype="groupchat", mbody=text
            ).send()

    def tell(self, nick: str, text: str) -> None:
        """A private message from the control occupant to occupant ``nick`` (a command
        reply meant for the issuer only)."""
        self.relay.tell_occupant(nick, text)

    async def close(self, *, unlink: bool = False) -> None:
        """Leave: puppets first, then the control occupant (``unlink`` also un-advertises)."""
        self._closed = True
        for task in (self._ping_task, self._sync_task):
            if task is not None:
                task.cancel()
        for timer in self._speaking_timers.values():
            timer.cancel()
        self._speaking_timers.clear()
        if unlink and self.joined and self.xmpp.online:
            try:
                await self._configure(created=False, sip_uri="")
            except (IqError, IqTimeout) as error:
                log.warning("room.unadvertise_failed", room=str(self.jid), error=str(error))
            self.sip_uri = ""
            self._update_dial_in_subject()
        for puppet in self.puppets.values():
            if puppet.present or puppet.joining:
                self._leave(puppet, status="bridge shutting down")
                puppet.present = False
        if self.joined and self.xmpp.online:
            self.xmpp.send_presence(
                pto=f"{self.jid}/{self.control_nick}",
                pfrom=self.xmpp.control_jid,
                ptype="unavailable",
            )
        self.joined = False

    async def _configure(self, created: bool, sip_uri: str) -> Advertised:
        """Advertise ``sip_uri`` through the owner form (``""``: withdraw it)."""
        if self.affiliation != "owner":
            return Advertised.NONE
        return await advertise(self.xmpp, self.jid, sip_uri, created=created)

    def _update_dial_in_subject(self) -> None:
        """Every client shows a room's subject on joining, few show anything else of its
        configuration: when the room has no subject, ours says how to join by phone. A
        subject someone else set is never replaced; ours goes when the room is unlinked.

        Needs the subject the room sent on joining: call after a round trip (the config
        form), which the server answers after it sent the subject.
        """
        if not (self.joined and self.xmpp.online) or self.affiliation not in {"owner", "admin"}:
            return
        label = self.settings.dial_in_label
        ours = self.subject.strip() == self._dial_in_subject.strip() or self.subject.startswith(
            label
        )
        if self.subject.strip() and not ours:
            return  # the meeting's own subject
        wanted = (
            dial_in_line(self.sip_uri, label)
            if self.sip_uri and self.settings.dial_in_subject
            else ""
        )
        if wanted == self.subject:
            self._dial_in_subject = wanted
            return
        self._dial_in_subject = wanted
        self.subject = wanted
        message = self.xmpp.make_message(
            mto=self.jid, mfrom=self.xmpp.control_jid, mtype="groupchat"
        )
        message["subject"] = wanted
        if not wanted:
            message.xml.append(message.xml.makeelement(f"{{{message.namespace}}}subject", {}))
        message.send()
        log.info("room.dial_in_subject", room=str(self.jid), set=bool(wanted))

    # ---- lifecycle driven by the component -----------------------------------------------

    def schedule_sync(self, delay: float = 0.0) -> None:
        """Start a sync unless one is running (start, reconnect, lost self-ping)."""
        if self._closed or (self._sync_task is not None and not self._sync_task.done()):
            return
        # A fresh context: log fields bound by the caller must not leak into the task.
        self._sync_task = asyncio.get_running_loop().create_task(
            self._sync_after(delay), context=contextvars.Context()
        )

    async def _sync_after(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            await self.sync()
        except Exception:  # a bug here must not kill the component's loop silently
            log.exception("room.sync_crashed", room=str(self.jid))

    async def sync(self) -> None:
        """Rejoin, re-advertise, remove ghosts, rejoin puppets (idempotent)."""
        async with self._sync_lock:
            if self._closed or not self.xmpp.online:
                return
            with bound(room=str(self.jid)):
                if not self.joined:
                    created = await self._join_control()
                    if created is None:
                        return
                    try:
                        self.advertised = await self._configure(created, self.sip_uri)
                    except (IqError, IqTimeout) as error:
                        log.warning("room.configure_failed", error=str(error))
                        self.advertised = Advertised.NONE
                    self._update_dial_in_subject()
                    self._emit(RoomJoined(str(self.jid), self.affiliation, str(self.advertised)))
                    self._start_pinging()
                await self._reconcile()

    def went_offline(self, reason: str) -> None:
        """The component lost its connection: nothing is in the room as far as we know."""
        was_joined = self.joined
        self._mark_out()
        if was_joined:
            self._emit(RoomLost(str(self.jid), reason, will_rejoin=not self._closed))

    def _mark_out(self) -> None:
        self.joined = False
        self.occupants.clear()
        for puppet in self.puppets.values():
            puppet.present = puppet.seated = False
        for future in self._joins.values():
            if not future.done():
                future.set_exception(JoinError("remote-server-not-found", "connection lost"))
        if self._ping_task is not None:
            self._ping_task.cancel()
            self._ping_task = None

    # ---- joining ---------------------------------------------------------------------------

    async def _join(self, jid: JID, nick: str, status: str) -> muc.MucPresence:
        key = str(jid)
        future: asyncio.Future[muc.MucPresence] = asyncio.get_running_loop().create_future()
        self._joins[key] = future
        stanza = self.xmpp.plugin["xep_0045"].make_join_stanza(
            self.jid, nick, maxstanzas=0, presence_options={"pfrom": jid, "pstatus": status}
        )
        stanza.send()
        try:
            # not asyncio.wait_for: on 3.11 it returns the result when the presence and a
            # cancel arrive in the same loop turn, and the cancelled task runs on (issue 22)
            async with asyncio.timeout(self.settings.join_timeout):
                return await future
        except TimeoutError:
            raise JoinError("remote-server-timeout", "no answer from the room") from None
        finally:
            if self._joins.get(key) is future:
                del self._joins[key]

    async def _join_control(self) -> bool | None:
        """Join as the control occupant; True if we created the room, None on failure."""
        nick = self.settings.control_nick
        refused: set[str] = set()
        for _ in range(_JOIN_ATTEMPTS):
            self._subject_pending_initial = True  # the room sends its subject right after
            try:
                info = await self._join(
                    self.xmpp.control_jid, nick, status=f"SIP conference bridge: {self.sip_uri}"
                )
            except JoinError as error:
                if error.condition == "conflict":
                    refused.add(nick)
                    nick = unique_nick(self.settings.control_nick, refused)
                    continue
                transient = error.condition not in FINAL_JOIN_ERRORS
                log.error(
                    "room.join_failed",
                    condition=error.condition,
                    hint=error.text or muc.join_error_hint(error.condition),
                    control_jid=str(self.xmpp.control_jid),
                    will_retry=transient,
                )
                self._emit(RoomLost(str(self.jid), f"join failed: {error}", transient))
                if transient:
                    self.schedule_sync_later()
                return None
            self.control_nick = info.nick
            self.affiliation = info.affiliation
            self.joined = True
            log.info(
                "room.joined",
                nick=info.nick,
                affiliation=info.affiliation,
                role=info.role,
                created=muc.ROOM_CREATED in info.status_codes,
            )
            if info.affiliation not in {"owner", "admin"}:
                log.warning(
                    "room.not_moderator",
                    affiliation=info.affiliation,
                    hint=f"grant {self.xmpp.control_jid.bare} the owner affiliation so the "
                    "bridge can advertise the call and mirror moderation",
                )
            return muc.ROOM_CREATED in info.status_codes
        log.error("room.join_failed", condition="conflict", hint="no free nick for the bridge")
        return None

    def schedule_sync_later(self) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(self.settings.join_timeout, self.schedule_sync)

    async def _join_puppet(self, puppet: Puppet) -> PuppetJoined | None:
        refused: set[str] = set()
        with bound(room=str(self.jid), leg_id=puppet.leg_id):
            for _ in range(_JOIN_ATTEMPTS):
                # Occupants whose JID we cannot see may be this very puppet (left from before
                # a restart): try the nick; the room answers "conflict" if it is someone else.
                taken = (
                    {n for n, o in self.occupants.items() if o.jid and o.jid != str(puppet.jid)}
                    | {p.nick for p in self.puppets.values() if p is not puppet and p.nick}
                    | {self.control_nick}
                    | refused
                )
                puppet.nick = unique_nick(puppet.wanted_nick, taken)
                puppet.joining = True
                try:
                    info = await self._join(puppet.jid, puppet.nick, status=PUPPET_STATUS)
                except JoinError as error:
                    if error.condition == "conflict":
                        refused.add(puppet.nick)
                        continue
                    if error.condition in FINAL_JOIN_ERRORS:
                        puppet.removed = "refused"
                        if puppet.waiting:
                            puppet.waiting.clear()
                            self.relay.notice(
                                puppet, "Your messages were not delivered: the chat room "
                                f"refused you ({error.condition}).",
                            )  # fmt: skip
                    log.warning(
                        "puppet.join_failed",
                        condition=error.condition,
                        hint=error.text or muc.join_error_hint(error.condition),
                    )
                    self._emit(
                        PuppetJoinFailed(str(self.jid), puppet.leg_id, error.condition, error.text)
                    )
                    return None
                finally:
                    puppet.joining = False
                if self.puppets.get(puppet.leg_id) is not puppet:
                    self._leave(puppet, status="left the call")  # hung up while joining
                    return None
                puppet.present = True
                puppet.nick = info.nick
                puppet.role = info.role
                self._speaking.pop(puppet.leg_id, None)  # (re)joined with the plain status
                log.info("puppet.joined", nick=info.nick, role=info.role)
                joined = self._joined_event(puppet)
                self._emit(joined)
                self._send_waiting(puppet)
                if info.role not in VOICED_ROLES:
                    self._emit(
                        PuppetVoiceChanged(
                            str(self.jid), puppet.leg_id, puppet.nick, has_voice=False
                        )
                    )
                return joined
            self._emit(PuppetJoinFailed(str(self.jid), puppet.leg_id, "conflict", "no free nick"))
            return None

    def _joined_event(self, puppet: Puppet) -> PuppetJoined:
        return PuppetJoined(str(self.jid), puppet.leg_id, puppet.nick, str(puppet.jid))

    def _leave(self, puppet: Puppet, status: str = "") -> None:
        puppet.leaving = True
        if self.xmpp.online and puppet.nick:
            self.xmpp.send_presence(
                pto=f"{self.jid}/{puppet.nick}",
                pfrom=puppet.jid,
                ptype="unavailable",
                pstatus=status or None,
            )

    async def _reconcile(self) -> None:
        """Make the room's puppets match the callers: drop ghosts, add who is missing."""
        domain = self.xmpp.boundjid.bare
        by_jid = {str(p.jid): p for p in self.puppets.values()}
        saw_jids = False
        for occupant in list(self.occupants.values()):
            if not occupant.jid:
                continue
            saw_jids = True
            real = JID(occupant.jid)
            if real.domain != domain or real.bare == self.xmpp.control_jid.bare:
                continue
            puppet = by_jid.get(occupant.jid)
            if puppet is not None and not puppet.removed and not puppet.present:
                puppet.present, puppet.nick, puppet.role = True, occupant.nick, occupant.role
                log.info("puppet.still_present", leg_id=puppet.leg_id, nick=occupant.nick)
                self._emit(self._joined_event(puppet))
                self._send_waiting(puppet)
                continue
            if puppet is not None and puppet.present and puppet.nick == occupant.nick:
                continue
            log.info("puppet.ghost_removed", nick=occupant.nick, jid=occupant.jid)
            self.xmpp.send_presence(
                pto=f"{self.jid}/{occupant.nick}", pfrom=real, ptype="unavailable"
            )
        await self._kick_expelled()
        if self.occupants and not saw_jids and not self._warned_no_jids:
            self._warned_no_jids = True
            log.warning(
                "room.cannot_see_jids",
                hint="the bridge is not a moderator: ghost puppets cannot be detected",
            )
        missing = [p for p in self.puppets.values() if not (p.present or p.joining or p.removed)]
        if missing:
            await asyncio.gather(*(self._join_puppet(p) for p in missing))

    async def _kick_expelled(self) -> None:
        """Kick the occupants ``expel`` named (the occupant list is complete after a join)."""
        expelled, self._expelled = self._expelled, {}
        own = self.xmpp.boundjid.bare
        for occupant in list(self.occupants.values()):
            real = JID(occupant.jid) if occupant.jid else None
            if real is None or real.bare not in expelled or real.domain == own:
                continue  # our own domain's ghosts were sent "unavailable" above
            log.warning("puppet.ghost_kicked", nick=occupant.nick, jid=real.bare,
                        reason=expelled[real.bare])  # fmt: skip
            try:
                await self.xmpp.plugin["xep_0045"].set_role(
                    self.jid, occupant.nick, "none", reason=expelled[real.bare],
                    ifrom=self.xmpp.control_jid,
                )  # fmt: skip
            except (IqError, IqTimeout) as error:
                log.warning("puppet.ghost_kick_failed", nick=occupant.nick, error=str(error))

    # ---- self-ping (XEP-0410) ------------------------------------------------------------

    def _start_pinging(self) -> None:
        if self._ping_task is None or self._ping_task.done():
            self._ping_task = asyncio.get_running_loop().create_task(
                self._ping_loop(), context=contextvars.Context()
            )

    async def _ping_loop(self) -> None:
        from slixmpp.plugins.xep_0410 import PingStatus

        plugin = self.xmpp.plugin["xep_0410"]
        interval = self.settings.self_ping_interval
        timeout = min(30.0, max(2.0, interval))
        while True:
            await asyncio.sleep(interval)
            if not (self.joined and self.xmpp.online):
                continue
            status = await plugin.send_self_ping(
                JID(f"{self.jid}/{self.control_nick}"), self.xmpp.control_jid, timeout=timeout
            )
            if status == PingStatus.DISCONNECTED:
                log.warning("room.self_ping_lost", room=str(self.jid), nick=self.control_nick)
                self.went_offline("self-ping: no longer in the room")
                self.schedule_sync()
                return
            if status == PingStatus.TIMEOUT:
                log.warning("room.self_ping_timeout", room=str(self.jid))
                self.xmpp.connection_suspect("self-ping timed out")
                return
            for puppet in list(self.puppets.values()):
                if not puppet.present:
                    continue
                status = await plugin.send_self_ping(
                    JID(f"{self.jid}/{puppet.nick}"), puppet.jid, timeout=timeout
                )
                if status == PingStatus.DISCONNECTED and puppet.present:
                    log.warning("puppet.self_ping_lost", room=str(self.jid), nick=puppet.nick)
                    puppet.present = puppet.seated = False
            if any(not (p.present or p.removed or p.joining) for p in self.puppets.values()):
                self.schedule_sync()

    # ---- incoming stanzas (dispatched by the component) ----------------------------------

    def handle_presence(self, presence: Any) -> None:
        nick = presence["from"].resource
        to = str(presence["to"])
        if presence["type"] == "error":
            error = muc.parse_error(presence.xml)
            future = self._joins.get(to)
            if future is not None and not future.done():
                future.set_exception(JoinError(error.condition, error.text))
            else:
                log.warning(
                    "room.presence_error", room=str(self.jid), to=to, condition=error.condition
                )
            return
        if not nick or presence["type"] not in {"available", "unavailable"} | set(
            presence.showtypes
        ):
            return
        info = muc.parse_muc_presence(presence.xml, nick)
        if to == str(self.xmpp.control_jid):
            self._control_view(info)
            return
        for puppet in self.puppets.values():
            if str(puppet.jid) == to:
                self._puppet_view(puppet, info)
                return

    def _by_bridge(self, nick: str, role: str) -> bool:
        now = time.monotonic()
        for key, deadline in list(self._bridge_actions.items()):
            if deadline < now:
                del self._bridge_actions[key]
        return (nick, role) in self._bridge_actions

    def _control_view(self, info: muc.MucPresence) -> None:
        if info.is_self:
            future = self._joins.get(str(self.xmpp.control_jid))
            if info.available:
                if future is not None and not future.done():
                    future.set_result(info)
                self.affiliation = info.affiliation
                return
            if muc.NICK_CHANGED in info.status_codes:
                self.control_nick = info.new_nick or self.control_nick
                return
            self._control_removed(info)
            return
        old = self.occupants.get(info.nick)
        if not info.available:
            if self.occupants.pop(info.nick, None) is not None:
                self._emit(OccupantsChanged(str(self.jid)))
            return
        occupant = Occupant(info.nick, info.role, info.affiliation, info.jid, info.occupant_id)
        self.occupants[info.nick] = occupant
        if old is None:
            self._emit(OccupantsChanged(str(self.jid)))
        if old is None or not self.joined:
            return
        if (old.role, old.affiliation) == (occupant.role, occupant.affiliation):
            return
        puppet = next((p for p in self.puppets.values() if p.present and p.nick == info.nick), None)
        self._emit(
            OccupantRoleChanged(
                room=str(self.jid),
                nick=info.nick,
                role=info.role,
                affiliation=info.affiliation,
                previous_role=old.role,
                previous_affiliation=old.affiliation,
                jid=JID(info.jid).bare if info.jid else "",
                leg_id=puppet.leg_id if puppet else "",
                by_bridge=info.actor == self.control_nick or self._by_bridge(info.nick, info.role),
            )
        )

    def _control_removed(self, info: muc.MucPresence) -> None:
        if self._closed:
            self._mark_out()
            return
        codes = info.status_codes
        if info.destroyed:
            reason, rejoin = f"room destroyed {info.destroy_reason}".strip(), False
        elif muc.BANNED in codes:
            reason, rejoin = "bridge banned from the room", False
        elif muc.KICKED in codes:
            reason, rejoin = "bridge kicked from the room", True
        elif muc.SHUTDOWN in codes:
            reason, rejoin = "MUC service shutting down", True
        else:
            reason, rejoin = "removed from the room", True
        log.warning(
            "room.lost", room=str(self.jid), reason=reason, actor=info.actor, will_rejoin=rejoin
        )
        self._mark_out()
        self._emit(RoomLost(str(self.jid), reason, will_rejoin=rejoin))
        if rejoin:
            self.schedule_sync_later()

    def _puppet_view(self, puppet: Puppet, info: muc.MucPresence) -> None:
        if not info.is_self:
            return
        room = str(self.jid)
        if info.available:
            future = self._joins.get(str(puppet.jid))
            if future is not None and not future.done():
                puppet.seated = True  # lines after this one are the caller's (room order)
                future.set_result(info)
                return
            previous = puppet.role
            puppet.role, puppet.nick = info.role, info.nick
            had_voice, has_voice = previous in VOICED_ROLES, info.role in VOICED_ROLES
            if puppet.present and previous and had_voice != has_voice:
                self._emit(
                    PuppetVoiceChanged(
                        room,
                        puppet.leg_id,
                        puppet.nick,
                        has_voice=has_voice,
                        actor=info.actor,
                        reason=info.reason,
                        by_bridge=info.actor == self.control_nick
                        or self._by_bridge(puppet.nick, info.role),
                    )
                )
            return
        codes = info.status_codes
        if muc.NICK_CHANGED in codes:
            puppet.nick = info.new_nick or puppet.nick
            return
        was_present = puppet.present
        puppet.present = puppet.seated = False
        by_bridge = info.actor == self.control_nick
        if muc.BANNED in codes:
            puppet.removed = "banned"
            self._emit(
                PuppetBanned(
                    room,
                    puppet.leg_id,
                    puppet.nick,
                    puppet.jid.bare,
                    info.actor,
                    info.reason,
                    by_bridge,
                )
            )
        elif codes & {muc.KICKED, muc.REMOVED_AFFILIATION, muc.REMOVED_MEMBERS_ONLY}:
            puppet.removed = "kicked"
            reason = info.reason or ("" if muc.KICKED in codes else "affiliation change")
            self._emit(
                PuppetKicked(room, puppet.leg_id, puppet.nick, info.actor, reason, by_bridge)
            )
        elif was_present and not puppet.leaving and not self._closed:
            log.info("puppet.dropped", room=room, nick=puppet.nick, codes=sorted(codes))
            if self.joined:
                self.schedule_sync()

    def handle_message(self, message: Any) -> None:
        to = str(message["to"])
        mtype = message["type"]
        nick = message["from"].resource
        if to == str(self.xmpp.control_jid):
            if mtype == "groupchat":
                self._groupchat(message, nick)
            return
        puppet = next((p for p in self.puppets.values() if str(p.jid) == to), None)
        if puppet is None:
            return
        if mtype == "error":
            self.relay.rejected(puppet, muc.parse_error(message.xml).condition)
        elif mtype in {"chat", "normal"} and nick and message["body"] and puppet.present:
            chat = ChatText(body=message["body"], thread=message["thread"], lang=message["lang"])
            self.relay.private_to_caller(puppet, nick, chat, self.sender_key(nick, message.xml))

    def sender_key(self, nick: str, xml: Any) -> str:
        """Who sent a message from ``room/nick``, for rate limits: the real JID the room
        showed us, else the XEP-0421 occupant id, else (anonymous room) the nick."""
        occupant = self.occupants.get(nick)
        stamped = muc.occupant_id(xml) if xml is not None else ""
        return occupant_key(
            occupant.jid if occupant else "",
            stamped or (occupant.occupant_id if occupant else ""),
            nick,
        )

    def _own_nicks(self) -> set[str]:
        return {self.control_nick} | {p.nick for p in self.puppets.values() if p.nick}

    def _groupchat(self, message: Any, nick: str) -> None:
        xml = message.xml
        subject = xml.find(f"{{{message.namespace}}}subject")
        body = message["body"]
        if muc.is_delayed(xml) and not (subject is not None and not body):
            return  # history, not live (the subject sent on joining is delayed too: kept)
        if subject is not None and not body and not message["thread"]:
            initial = self._subject_pending_initial
            self._subject_pending_initial = False
            self.subject = subject.text or ""
            if nick == self.control_nick and self.subject == self._dial_in_subject:
                return  # our "Join by phone" line: not the meeting's subject
            self._emit(SubjectChanged(str(self.jid), self.subject, nick, initial=initial))
            return
        if not nick or not body:
            return
        if nick in self._own_nicks() or self.relay.sent_by_us(message["id"]):
            return  # our own puppets and control: never echo, never loop
        key = self.sender_key(nick, xml)
        if self.on_command is not None and is_command(body, self.command_prefix):
            occupant = self.occupants.get(nick)
            self.on_command(
                CommandTyped(
                    room=str(self.jid), nick=nick, body=body, stanza_id=message["id"] or "",
                    jid=occupant.jid if occupant else "",
                    role=occupant.role if occupant else "none",
                    affiliation=occupant.affiliation if occupant else "none",
                    key=key,
                )
            )  # fmt: skip
            return  # addressed to the bridge: not relayed to the callers
        self.relay.to_callers(
            nick,
            ChatText(
                body=body,
                subject=message["subject"],
                thread=message["thread"],
                lang=message["lang"],
                correction=xml.find(f"{{{NS_CORRECT}}}replace") is not None,
            ),
            [p for p in self.puppets.values() if p.hears_room],
            key=key,
        )

    def _emit(self, event: RoomEvent) -> None:
        if self._sink is not None:
            self._sink(event)
        else:
            self._queue.put_nowait(event)


def rooms_summary(rooms: Iterable[BridgedRoom]) -> list[dict[str, Any]]:
    """Plain data for health endpoints and logs."""
    return [
        {
            "room": str(room.jid),
            "joined": room.joined,
            "advertised": str(room.advertised),
            "puppets": room.present_puppets,
        }
        for room in rooms
    ]
