"""The supervisor of one node: SIP worker pool ⇄ mirror engine (Redis) ⇄ MUC rooms.

Every event from either side goes through :class:`bridge.node.mirror.MirrorEngine` (policy,
then the record in Redis, then the actions), and the actions are carried out here on the side
they name. Text relay is the room's own business (:class:`bridge.xmpp.room.BridgedRoom`
splits, rate-limits and never echoes); moderation always goes through the engine so that the
stored truth comes first and loops are impossible (DESIGN §4).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout

from bridge import metrics
from bridge.config import Settings
from bridge.core.admission import RoomDirectory
from bridge.core.caller_identity import shown_nick
from bridge.core.events import (
    DialOutCall,
    DialProgress,
    DtmfReceived,
    HangupLeg,
    HoldLeg,
    LegJoined,
    LegLeft,
    MuteLeg,
    PlayTone,
    SendSipMessage,
    SipMessageReceived,
    TalkingChanged,
)
from bridge.core.identity import leg_identity, normalize_trusted, sender_leg, verify_binding
from bridge.core.mirror_events import (
    Action,
    BanJid,
    CallerJoined,
    CallerLeft,
    DtmfCommand,
    JoinPuppet,
    LeavePuppet,
    MirrorEvent,
    OccupantBanned,
    OccupantKicked,
    OccupantPrivilegeChanged,
    OccupantUnbanned,
    OccupantVoiceChanged,
    Privilege,
    SendGroupchat,
    SetConferenceMediaStatus,
    SetConferenceRoles,
    SetConferenceSubject,
    SetOccupantRole,
    SetRoomSubject,
    ShowOccupantInCall,
    SubjectChanged,
)
from bridge.core.policy import parse_dtmf
from bridge.core.ratelimit import RateLimiter
from bridge.logs import bound, get_logger
from bridge.node import metrics_feed
from bridge.node.mirror import MirrorEngine, Outcome
from bridge.node.pin_gate import PinGate
from bridge.node.services import StateServices
from bridge.node.tasks import cancel_all
from bridge.protocol.conference_info import (
    AudioLeg,
    ChatPresence,
    Participant,
    RoomView,
    conference_from_room,
)
from bridge.protocol.nicks import caller_nick
from bridge.sip.evsub import ConferenceInfoUpdate
from bridge.sip.pool import WorkerPool
from bridge.state.errors import Fenced, StateUnavailable
from bridge.state.lease import Lease, LeaseKeeper
from bridge.xmpp import events as room_events
from bridge.xmpp import room_config
from bridge.xmpp.component import BridgeComponent
from bridge.xmpp.jids import puppet_jid
from bridge.xmpp.room import BridgedRoom

log = get_logger(__name__)

EVSUB_HOOK = "bridge.sip.evsub:worker_hook"


@dataclass
class LinkedRoom:
    """One linked conference on this node (the command executor acts on it too)."""

    name: str  # conference name: sip:<name>@<sip.domain>
    muc_jid: str
    bridged: BridgedRoom
    dtmf: dict[str, str] = field(default_factory=dict)  # leg_id → DTMF buffer
    public: bool = False  # the MUC is public and open: who may subscribe to its events


class Node:
    """Wires the pool, the rooms and the engine; one instance per process."""

    def __init__(
        self,
        settings: Settings,
        component: BridgeComponent,
        pool: WorkerPool,
        services: StateServices,
    ) -> None:
        self.settings = settings
        self.component = component
        self.pool = pool
        self.services = services
        self.engine = services.engine
        self.leases = services.leases
        #: linked rooms another replica owns → the SIP URI INVITEs are redirected to
        self.remote: dict[str, str] = {}
        #: SIGTERM: new INVITEs get 503 while the calls in progress go on (drain)
        self.draining = False
        #: draining: room handed over → request id of the call that links our remaining
        #: callers to the new owner's mix (a "handover line"), and the legs of those calls
        self._handover_lines: dict[str, str] = {}
        self._line_legs: set[str] = set()
        self._keepers: dict[str, asyncio.Task[None]] = {}
        self.rooms: dict[str, LinkedRoom] = {}
        self.legs: dict[str, LegJoined] = {}
        self.talking: set[str] = set()
        self._trusted = normalize_trusted(settings.identity.trusted_bindings)
        self._room_events: asyncio.Queue[room_events.RoomEvent] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._conference_info = EVSUB_HOOK in settings.workers.hooks
        #: owner commands (set by bridge.node.command_executor; None = no commands)
        self.command_hook: Callable[[room_events.CommandTyped], None] | None = None
        self.dial_hook: Callable[[DialProgress], None] | None = None
        self.pins = PinGate(
            self.pool.send,
            self._leg_joined,
            on_refused=lambda: metrics.count_invite("rejected", "pin"),
        )
        limits = settings.xmpp.limits
        #: *6/*7/*8 per caller's participant: each one is a role change in the room
        self.dtmf_limiter = RateLimiter(limits.dtmf_command_burst, limits.dtmf_command_per_minute)

    # ---- naming ------------------------------------------------------------------------

    def sip_uri(self, name: str) -> str:
        return f"sip:{name}@{self.settings.sip.domain}"

    def room_of_muc(self, muc_jid: str) -> LinkedRoom | None:
        for room in self.rooms.values():
            if room.muc_jid == muc_jid:
                return room
        return None

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self, stop: asyncio.Event) -> None:
        """Take (lease) and restore every linked room nobody else owns, then serve events."""
        await self.leases.heartbeat()
        await self._claim_rooms()
        self._publish_directory()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._sip_loop(), name="node.sip-events"),
            loop.create_task(self._room_loop(), name="node.room-events"),
            loop.create_task(
                self.engine.run_catch_up(stop, self.settings.state.catch_up_interval),
                name="node.state-catch-up",
            ),
            loop.create_task(self._affiliation_loop(), name="node.affiliations"),
            loop.create_task(self._lease_loop(), name="node.leases"),
            loop.create_task(self._metrics_loop(), name="node.metrics"),
        ]

    async def close(self) -> None:
        """Stop serving; release our room leases so another replica takes them at once."""
        await cancel_all([*self._tasks, *self._keepers.values()])
        self._tasks = []
        self._keepers = {}
        self.pins.close()
        metrics_feed.legs_changed(dict.fromkeys(self.rooms, 0))  # this node serves nothing now
        for keeper in list(self.services.keepers.values()):
            await keeper.release()
        self.services.keepers.clear()
        try:
            await self.leases.stop_heartbeat()
        except StateUnavailable as error:  # it expires by itself after a lease TTL
            log.warning("lease.heartbeat_failed", error=str(error))

    async def drain(self) -> None:
        """Stop taking calls and hand the rooms over; calls in progress are not touched.

        Every room lease is released, so another replica takes each room within a lease
        loop (``state.lease_ttl``/3) and its new callers are redirected there (302) instead
        of being refused here for the whole drain. Until a new owner is known this node
        answers 503 with Retry-After. The rooms stay open here for the calls still up: they
        follow the room's moderation from this node's cache, never writing to Redis
        (:meth:`MirrorEngine.handle_locally`), since the new owner records the truth.
        """
        if self.draining:
            return
        self.draining = True
        log.warning("node.draining", legs=len(self.pool.legs()), rooms=sorted(self.rooms))
        self._publish_directory()
        for name in sorted(self.services.keepers):
            task = self._keepers.pop(name, None)
            if task is not None:
                await cancel_all([task])
            keeper = self.services.keepers.pop(name)
            self.services.handed_over[name] = keeper.token
            room = self.rooms.get(name)
            if room is not None:
                room.bridged.on_command = None  # the new owner answers the room's commands
            await keeper.release()
            log.info("room.handed_over", room=name, token=keeper.token)
        await self._claim_rooms()
        self._publish_directory()

    def _count_legs(self) -> None:
        per_room = {name: 0 for name in self.rooms}
        for leg in self.legs.values():
            per_room[leg.room.lower()] = per_room.get(leg.room.lower(), 0) + 1
        metrics_feed.legs_changed(per_room)

    async def _metrics_loop(self, interval: float = 5.0) -> None:
        sampler = metrics_feed.Sampler()
        clock_stats = getattr(self.pool.mixer, "clock_stats", None)
        durations = getattr(self.pool.mixer, "tick_durations", None)
        while True:
            sampler.sample(
                self.pool.slots(),
                clock_stats() if clock_stats else None,
                self.component.online,
                durations() if durations else (),
                self.pool.worker_stats(),
            )
            await asyncio.sleep(interval)

    # ---- room ownership across replicas (Redis leases) -----------------------------------

    async def _claim_rooms(self) -> None:
        """Own every linked room that is free (start, takeover); note who owns the others."""
        linked = await self.engine.store.linked_rooms()
        for name, muc_jid in sorted(linked.items()):
            if self.draining:  # take nothing; learn who took the rooms we handed over
                owner = await self.leases.owner(name)
                if owner is not None and not self.leases.owns(owner):
                    self.remote[name] = owner.contact
                else:
                    self.remote.pop(name, None)
                continue
            if name in self.rooms:
                if not self.engine.known(name):  # read it again: admission waits for it
                    try:
                        await self.engine.load(name)
                    except StateUnavailable as error:
                        log.warning("room.state_unavailable", room=name, error=str(error))
                    else:
                        log.info("room.state_recovered", room=name)
                continue
            lease = await self.leases.acquire(name)
            if not self.leases.owns(lease):
                self.remote[name] = lease.contact
                continue
            if self.remote.pop(name, None) is not None:
                log.warning("room.taken_over", room=name, token=lease.token)
            self._keep(lease)
            await self._open_room(name, muc_jid)
        for name in set(self.remote) - set(linked):
            del self.remote[name]
        if self.draining:
            self._link_handed_over()

    def calls_in_progress(self) -> int:
        """Calls up or being set up on this node, not counting handover lines."""
        return sum(1 for leg_id in self.pool.legs() if leg_id not in self._line_legs)

    def _link_handed_over(self) -> None:
        """Draining: once the new owner of a room we handed over is known, call it into our
        local mix of that room, so that our remaining callers and the callers it takes
        hear each other (one leg each side, mix-minus on both: no echo). Retried each round
        until it is up; it ends with the drain."""
        for name in sorted(self.services.handed_over):
            contact = self.remote.get(name)
            if contact is None or name in self._handover_lines:
                continue
            if not any(leg.room.lower() == name for leg in self.legs.values()):
                continue  # nobody left here to link
            request_id = f"handover:{name}:{uuid.uuid4().hex[:12]}"
            display = f"{self.settings.state.node_id} (handover)"
            if self.pool.dial(DialOutCall(name, contact, request_id, display, internal=True)):
                self._handover_lines[name] = request_id
                log.info("room.handover_line", room=name, target=contact)

    def _keep(self, lease: Lease) -> None:
        keeper = LeaseKeeper(self.leases, lease, on_lost=self._lease_lost)
        self.services.keepers[lease.room] = keeper
        self._keepers[lease.room] = asyncio.get_running_loop().create_task(
            keeper.run(), name=f"node.lease.{lease.room}"
        )

    async def _lease_lost(self, lease: Lease) -> None:
        """Another replica owns the room now: our calls there end, its INVITEs go there."""
        self.services.keepers.pop(lease.room, None)
        self._keepers.pop(lease.room, None)
        room = self.rooms.pop(lease.room, None)
        if room is not None:
            for leg in [leg for leg in self.legs.values() if leg.room.lower() == room.name]:
                self.pool.send(HangupLeg(leg.leg_id, "conference moved to another node"))
            self.component.rooms.pop(str(room.bridged.jid), None)
            await room.bridged.close()
        self.engine.forget(lease.room)
        owner = await self.leases.owner(lease.room)
        if owner is not None:
            self.remote[lease.room] = owner.contact
        self._publish_directory()

    async def _lease_loop(self) -> None:
        """Every ttl/3: take over rooms whose owner died, follow rooms linked elsewhere."""
        while True:
            await asyncio.sleep(self.settings.state.lease_ttl / 3)
            try:
                await self.leases.heartbeat()
                await self._claim_rooms()
                await self._sweep_ghost_legs()
            except StateUnavailable as error:
                log.warning("lease.claim_failed", error=str(error))
                continue
            except Exception:
                log.exception("node.lease_loop_failed")
                continue
            self._publish_directory()

    async def link(self, name: str, *, actor: str) -> None:
        """Glue conference ``name`` to its MUC room (recorded in Redis, then joined)."""
        name = name.strip().lower()
        await record_link(self.settings, self.engine, name, actor)
        await self._claim_rooms()
        self._publish_directory()

    async def _live_legs(self, name: str, here: Iterable[str]) -> frozenset[str]:
        """Legs of ``name`` that are really up: ours, and those of other replicas that are
        still alive (a draining replica's calls go on after it handed the room over)."""
        state = await self.engine.load(name)
        alive = await self.leases.alive(leg.node for leg in state.legs.values())
        foreign = {leg.leg_id for leg in state.legs.values() if leg.node and leg.node in alive
                   and leg.node != self.settings.state.node_id}  # fmt: skip
        return frozenset(here) | foreign

    async def _sweep_ghost_legs(self) -> None:
        """Every lease round, in the rooms we own: legs of replicas that are gone (crashed, or
        drained and stopped) leave the state and their puppets the room."""
        me = self.settings.state.node_id
        for room in list(self.rooms.values()):
            if room.name in self.services.handed_over:
                continue
            state = self.engine.cached(room.name)
            if state is None:
                continue
            others = {leg.node for leg in state.legs.values() if leg.node and leg.node != me}
            if not others:
                continue
            alive = await self.leases.alive(others)
            for leg in list(state.legs.values()):
                if leg.node in others and leg.node not in alive:
                    log.info("leg.ghost_removed", room=room.name, leg=leg.leg_id, node=leg.node)
                    await self._handle(room, CallerLeft(
                        event_id=f"left:{leg.leg_id}:{leg.call_id}", room=room.name,
                        origin="sip", actor=leg.node, at=time.time(), leg_id=leg.leg_id,
                        reason="call lost",
                    ))  # fmt: skip

    async def _open_room(self, name: str, muc_jid: str) -> None:
        live = [leg for leg in self.legs.values() if leg.room.lower() == name]
        try:
            live_ids: frozenset[str] | None = await self._live_legs(
                name, (leg.leg_id for leg in live)
            )
        except StateUnavailable:
            live_ids = None  # the restore below says so
        bridged = await self.component.link_room(
            muc_jid, self.sip_uri(name), legs=live, sink=self._room_events.put_nowait
        )
        bridged.on_command = self.command_hook
        self.rooms[name] = LinkedRoom(name, muc_jid, bridged)
        await self._check_public(self.rooms[name])
        try:
            if live_ids is None:
                live_ids = await self._live_legs(name, (leg.leg_id for leg in live))
            outcome = await self.engine.restore(name, live_ids)
        except StateUnavailable as error:  # served, but new callers get 503 until it reads
            log.error("room.state_unavailable", room=name, error=str(error))
            return
        log.info("room.linked", room=name, muc=muc_jid, restored=outcome.status)
        await self._perform(self.rooms[name], outcome)

    # ---- SIP side → engine ---------------------------------------------------------------

    async def _sip_loop(self) -> None:
        async for event in self.pool.events():
            try:
                await self._on_sip_event(event)
            except Exception:  # one bad event must not stop the node
                log.exception("node.sip_event_failed", kind=type(event).__name__)
                metrics.count_error("core", "node.sip_event_failed")

    async def _on_sip_event(self, event: object) -> None:
        if isinstance(event, LegJoined):
            await self._leg_joined(event)
        elif isinstance(event, LegLeft):
            await self._leg_left(event)
        elif isinstance(event, DtmfReceived):
            await self._dtmf(event)
        elif isinstance(event, SipMessageReceived):
            await self._sip_message(event)
        elif isinstance(event, TalkingChanged):
            (self.talking.add if event.talking else self.talking.discard)(event.leg_id)
            linked = self.rooms.get(event.room.lower())
            if linked is not None:  # live "who is talking" for chat users (rate-limited)
                linked.bridged.set_speaking(event.leg_id, event.talking)
        elif isinstance(event, DialProgress) and event.request_id.startswith("handover:"):
            self._handover_progress(event)
        elif isinstance(event, DialProgress) and self.dial_hook is not None:
            self.dial_hook(event)

    def _handover_progress(self, event: DialProgress) -> None:
        if event.leg_id:
            self._line_legs.add(event.leg_id)
            self.pins.trust(event.leg_id)
        log.info("room.handover_line_progress", room=event.room, status=event.status,
                 reason=event.reason)  # fmt: skip
        if event.status == "failed":  # try again at the next lease round
            self._handover_lines.pop(event.room.lower(), None)

    async def _leg_joined(self, leg: LegJoined) -> None:
        room = self.rooms.get(leg.room.lower())
        if leg.leg_id in self._line_legs:  # our handover line: in the mix, not in the room
            self.pool.send(HoldLeg(leg.leg_id, False))  # a PIN room holds new legs out
            log.info("room.handover_line_up", room=leg.room, leg=leg.leg_id)
            return
        with bound(room=leg.room, call_id=leg.call_id, participant=leg.leg_id):
            if room is None:  # admission said yes from an older directory
                self.pool.send(HangupLeg(leg.leg_id, "conference not linked", 404))
                return
            if self._pin_hold(room, leg):
                return  # out of the mix until its PIN is right (bridge.node.pin_gate)
            self.legs[leg.leg_id] = leg
            metrics.CALLS.labels(outcome="answered").inc()
            self._count_legs()
            ident = leg_identity(leg)
            binding = verify_binding(
                ident.key, verified=ident.verified, trusted=self._trusted,
                impp_uris=leg.impp_uris, xmpp_contacts=leg.xmpp_contacts,
                verified_by="config" if ident.level == "authenticated" else "asserted-identity",
            )  # fmt: skip
            if binding.hints or binding.jid:
                log.info("identity.checked", bound=bool(binding.jid), why=binding.reason)
            jid = puppet_jid(
                self.component.puppet_key, self.component.boundjid.bare,
                ident.key if ident.verified else "", leg.leg_id,
            )  # fmt: skip
            nick = shown_nick(
                caller_nick(
                    leg.display_name, leg.from_uri,
                    show_raw_numbers=self.settings.xmpp.show_raw_numbers,
                ),
                ident,
            )  # fmt: skip
            event = CallerJoined(
                event_id=f"join:{leg.leg_id}:{leg.call_id}", room=room.name, origin="sip",
                actor=ident.key, at=time.time(), leg_id=leg.leg_id, caller_uri=ident.key,
                nick=nick, puppet_jid=jid, call_id=leg.call_id,
                node=self.settings.state.node_id, bound_jid=binding.jid,
                verified_by=binding.verified_by, ban_keys=ident.ban_keys(),
            )  # fmt: skip
            log.info(
                "leg.joined", nick=nick, codec=leg.codec, encrypted=leg.encrypted,
                level=ident.level, identity=ident.key, verified_by=ident.verified_by,
            )  # fmt: skip
            await self._handle(room, event)
            if not leg.encrypted and self.settings.xmpp.announce_unencrypted_calls:
                room.bridged.announce(
                    f"{nick} is on the call over an unencrypted connection "
                    f"({leg.transport.upper()} signalling, "
                    f"{'SRTP audio keyed in the clear' if leg.srtp else 'plain RTP audio'}): "
                    "what is said in "
                    "the call can be overheard on the network."
                )

    def _pin_hold(self, room: LinkedRoom, leg: LegJoined) -> bool:
        if not self.engine.known(room.name):  # PIN, lock, bans unknown: fail closed
            log.warning("leg.refused_state_unknown", room=room.name)
            self.pool.send(HangupLeg(leg.leg_id, "conference state unavailable", 503))
            return True
        state = self.engine.cached(room.name)
        pin_hash = state.conference.pin_hash if state and state.conference else ""
        record = self.pool.legs().get(leg.leg_id)
        return self.pins.hold(leg, pin_hash, held_by_pool=record is not None and record.held)

    async def _leg_left(self, event: LegLeft) -> None:
        if event.leg_id in self._line_legs:
            self._line_legs.discard(event.leg_id)
            self._handover_lines.pop(event.room.lower(), None)  # relinked next round if needed
            log.info("room.handover_line_down", room=event.room, reason=event.reason)
            return
        self.pins.forget(event.leg_id)
        if self.legs.pop(event.leg_id, None) is not None:
            metrics.LEGS_ENDED.labels(reason=metrics_feed.leg_end_reason(event.reason)).inc()
            self._count_legs()
        self.talking.discard(event.leg_id)
        room = self.rooms.get(event.room.lower())
        with bound(room=event.room, call_id=event.call_id, participant=event.leg_id):
            log.info("leg.left", reason=event.reason)
            if room is None:
                return
            room.dtmf.pop(event.leg_id, None)
            mirror = CallerLeft(
                event_id=f"left:{event.leg_id}:{event.call_id}", room=room.name, origin="sip",
                actor=event.call_id, at=time.time(), leg_id=event.leg_id, reason=event.reason,
            )  # fmt: skip
            await self._handle(room, mirror)
            await room.bridged.caller_left(event)  # idempotent: also when state was unknown
            self._refresh_conference(room)

    async def _dtmf(self, event: DtmfReceived) -> None:
        room = self.rooms.get(event.room.lower())
        if room is None or await self.pins.feed(event.leg_id, event.digit):
            return
        buffer, command = parse_dtmf(room.dtmf.get(event.leg_id, ""), event.digit)
        room.dtmf[event.leg_id] = buffer
        if command is None:
            return
        with bound(room=room.name, participant=event.leg_id):
            state = self.engine.cached(room.name)
            record = state.legs.get(event.leg_id) if state is not None else None
            key = f"{room.name}|{record.participant if record else 'leg:' + event.leg_id}"
            allowed, warn = self.dtmf_limiter.allow(key, time.monotonic())
            if not allowed:
                log.info("dtmf.rate_limited", command=command)
                if warn:
                    self.pool.send(SendSipMessage(
                        leg_id=event.leg_id, sender_display=room.bridged.control_nick,
                        body="You are pressing keypad commands too fast; wait a moment.",
                    ))  # fmt: skip
                return
            log.info("dtmf.command", command=command)
            await self._handle(
                room,
                DtmfCommand(
                    event_id=f"dtmf:{event.leg_id}:{uuid.uuid4().hex}", room=room.name,
                    origin="sip", actor=event.leg_id, at=time.time(), leg_id=event.leg_id,
                    command=command,
                ),
            )  # fmt: skip

    async def _sip_message(self, event: SipMessageReceived) -> None:
        room = self.rooms.get(event.room.lower())
        if room is None:
            return
        if not event.leg_id:
            leg_id = sender_leg(self.legs.values(), event.room, event.sender_key)
            if not leg_id:  # the SIP filter checked presence; the leg left meanwhile
                log.info("relay.from_sip_dropped", room=room.name, why="sender not in the room")
                return
            event = replace(event, leg_id=leg_id)  # a caller's phone chatting out of dialog
        outcome = await room.bridged.relay_from_sip(event)
        log.info("relay.from_sip", room=room.name, participant=event.leg_id, outcome=outcome)

    # ---- room side → engine --------------------------------------------------------------

    async def _room_loop(self) -> None:
        while True:
            event = await self._room_events.get()
            try:
                await self._on_room_event(event)
            except Exception:
                log.exception("node.room_event_failed", kind=type(event).__name__)
                metrics.count_error("core", "node.room_event_failed")

    async def _on_room_event(self, event: room_events.RoomEvent) -> None:
        if isinstance(event, SendSipMessage):
            self.pool.send(event)
            return
        room = self.room_of_muc(event.room)
        if room is None:
            return
        mirror = self._mirror_event(room, event)
        if mirror is not None:
            await self._handle(room, mirror)
        if isinstance(event, room_events.PuppetJoinFailed):
            # nobody stays in the mix without being in the room (issue 18)
            status, why = join_failure_status(event.condition)
            log.warning("leg.ended_join_failed", participant=event.leg_id,
                        condition=event.condition, status=status)  # fmt: skip
            self.pool.send(HangupLeg(event.leg_id, why, status))
        self._refresh_conference(room)

    def _mirror_event(self, room: LinkedRoom, event: room_events.RoomEvent) -> MirrorEvent | None:
        """Translate what the room reports into the policy's events (origin "muc")."""
        if getattr(event, "by_bridge", False):
            return None  # our own mirroring coming back: the state already holds it
        base: dict[str, Any] = {
            "event_id": f"muc:{room.name}:{uuid.uuid4().hex}",
            "room": room.name,
            "origin": "muc",
            "at": time.time(),
        }
        if isinstance(event, room_events.PuppetVoiceChanged):
            return OccupantVoiceChanged(
                **base, actor=event.actor, occupant_jid=self._puppet_jid(room, event.leg_id),
                voiced=event.has_voice,
            )  # fmt: skip
        if isinstance(event, room_events.PuppetKicked):
            return OccupantKicked(
                **base, actor=event.actor, occupant_jid=self._puppet_jid(room, event.leg_id),
                reason=event.reason,
            )  # fmt: skip
        if isinstance(event, room_events.PuppetBanned):
            return OccupantBanned(
                **base, actor=event.actor, occupant_jid=event.jid, reason=event.reason
            )
        if isinstance(event, room_events.OccupantRoleChanged) and event.jid and not event.leg_id:
            privilege = _privilege(event.role, event.affiliation)
            if privilege != _privilege(event.previous_role, event.previous_affiliation):
                return OccupantPrivilegeChanged(
                    **base, actor=event.nick, occupant_jid=event.jid, privilege=privilege
                )
        if isinstance(event, room_events.SubjectChanged) and not event.initial:
            if event.by_nick == room.bridged.control_nick:
                return None
            return SubjectChanged(**base, actor=event.by_nick, subject=event.subject)
        return None

    async def _affiliation_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.xmpp.affiliation_sync_interval)
            for room in list(self.rooms.values()):
                if await self._check_public(room):
                    self._publish_directory()
                try:
                    await self.sync_bans(room)
                except (IqError, IqTimeout) as error:
                    log.warning("room.outcasts_unreadable", room=room.name, error=str(error))
                except Exception:
                    log.exception("node.ban_sync_failed", room=room.name)

    async def _check_public(self, room: LinkedRoom) -> bool:
        """Re-read whether the room is public and open; True when that changed."""
        public = await room_config.is_public(self.component, JID(room.muc_jid))
        changed, room.public = public != room.public, public
        return changed

    async def sync_bans(self, room: LinkedRoom) -> None:
        """Mirror bans lifted in the room while the banned caller was absent (no presence
        tells us then): a stored ban whose JIDs are no longer outcast is removed."""
        state = self.engine.cached(room.name)
        if state is None or not state.bans or not room.bridged.joined:
            return
        outcasts = {
            str(jid).lower()
            for jid in await self.component.plugin["xep_0045"].get_affiliation_list(
                room.bridged.jid, "outcast", ifrom=self.component.control_jid
            )
        }
        settled = time.time() - 5.0  # a ban we just mirrored may not be listed yet
        for key, ban in state.bans.items():
            jids = ban.puppet_jids or ((key[5:],) if key.startswith("xmpp:") else ())
            if not jids or ban.at > settled or outcasts & {j.lower() for j in jids}:
                continue
            await self._handle(
                room,
                OccupantUnbanned(
                    event_id=f"unban:{room.name}:{key}:{ban.at}", room=room.name,
                    origin="muc", actor="room", at=time.time(), occupant_jid=jids[0],
                ),
            )  # fmt: skip

    def _puppet_jid(self, room: LinkedRoom, leg_id: str) -> str:
        state = self.engine.cached(room.name)
        leg = state.legs.get(leg_id) if state is not None else None
        if leg is not None and leg.puppet_jid:
            return leg.puppet_jid
        joined = self.legs.get(leg_id)
        if joined is None:
            return ""
        ident = leg_identity(joined)
        subject = ident.key if ident.verified else ""
        return puppet_jid(
            self.component.puppet_key, self.component.boundjid.bare, subject, leg_id
        ).split("/", 1)[0]

    # ---- engine → actions ----------------------------------------------------------------

    async def _handle(self, room: LinkedRoom, event: MirrorEvent) -> None:
        if room.name in self.services.handed_over:
            await self._perform(room, await self.engine.handle_locally(event))
            return
        try:
            outcome = await self.engine.handle(event)
        except Fenced as error:  # the lease keeper will notice and hand the room over
            log.error("state.fenced", room=room.name, kind=type(event).__name__,
                      error=str(error))  # fmt: skip
            return
        except StateUnavailable as error:  # e.g. the outbox is full: nothing was applied
            log.error("state.refused", room=room.name, kind=type(event).__name__,
                      error=str(error))  # fmt: skip
            return
        if outcome.message:
            log.warning("mirror.degraded", room=room.name, status=outcome.status,
                        message=outcome.message)  # fmt: skip
        await self._perform(room, outcome)

    async def _perform(self, room: LinkedRoom, outcome: Outcome) -> None:
        metrics_feed.count_actions(outcome.actions)
        for action in outcome.actions:
            try:
                await self._act(room, action)
            except (IqError, IqTimeout, KeyError) as error:
                log.warning("mirror.action_failed", room=room.name,
                            action=type(action).__name__, error=str(error))  # fmt: skip
            else:
                log.info("mirror.action", room=room.name, action=type(action).__name__)
        if outcome.status in ("applied", "queued", "local"):
            self._publish_directory()
        self._refresh_conference(room)

    async def _act(self, room: LinkedRoom, action: Action) -> None:
        bridged = room.bridged
        muc = self.component.plugin["xep_0045"]
        control = self.component.control_jid
        if isinstance(action, MuteLeg | HangupLeg | SendSipMessage | PlayTone):
            self.pool.send(action)
        elif isinstance(action, SetConferenceRoles | SetConferenceMediaStatus):
            pass  # derived from the stored state by _refresh_conference
        elif isinstance(action, SetConferenceSubject):
            pass  # idem
        elif isinstance(action, JoinPuppet):
            leg = self.legs.get(action.leg_id)
            if leg is None:
                return  # the caller is gone already
            joined = await bridged.caller_joined(leg)
            if joined is not None and action.role == "visitor":
                await bridged.set_voice(action.leg_id, False, "muted")
        elif isinstance(action, LeavePuppet):
            leg = self.legs.get(action.leg_id)
            if action.leg_id not in bridged.puppets and action.puppet_jid:
                # a call this node never carried: a dead replica's puppet (takeover)
                bridged.expel(action.puppet_jid, action.status or "call lost")
            await bridged.caller_left(
                LegLeft(action.leg_id, room.name, leg.call_id if leg else "", action.status)
            )
        elif isinstance(action, SetOccupantRole):
            await self._set_role(room, action)
        elif isinstance(action, BanJid):
            await muc.set_affiliation(
                bridged.jid, "outcast", jid=action.jid, reason=action.reason, ifrom=control
            )
        elif isinstance(action, SetRoomSubject):
            message = self.component.make_message(
                mto=bridged.jid, mfrom=f"{control}", mtype="groupchat"
            )
            message["subject"] = action.subject
            message.send()
        elif isinstance(action, SendGroupchat):
            message = self.component.make_message(
                mto=bridged.jid, mfrom=action.as_jid or str(control), mtype="groupchat",
                mbody=action.body if action.as_jid else f"{action.nick}: {action.body}",
            )  # fmt: skip
            message.send()
        elif isinstance(action, ShowOccupantInCall):
            log.info("occupant.in_call", room=room.name, occupant=action.occupant_jid,
                     in_call=action.in_call, muted=action.muted)  # fmt: skip

    async def _set_role(self, room: LinkedRoom, action: SetOccupantRole) -> None:
        state = self.engine.cached(room.name)
        leg = state.leg_by_puppet(action.occupant_jid) if state is not None else None
        if leg is not None:
            if leg.leg_id in room.bridged.present_puppets:
                await room.bridged.set_voice(leg.leg_id, action.role != "visitor", action.reason)
            return
        for occupant in room.bridged.occupants.values():
            if occupant.jid.split("/", 1)[0] == action.occupant_jid:
                await self.component.plugin["xep_0045"].set_role(
                    room.bridged.jid, occupant.nick, action.role, reason=action.reason,
                    ifrom=self.component.control_jid,
                )  # fmt: skip
                return

    # ---- derived views: admission snapshot and conference-info ---------------------------

    def _publish_directory(self) -> None:
        bans: dict[str, Iterable[str]] = {}
        locked: list[str] = []
        held: list[str] = []
        present: dict[str, list[str]] = {}
        for leg in self.legs.values():  # who may chat out of dialog: verified, in the call
            ident = leg_identity(leg)
            if ident.verified:
                present.setdefault(leg.room.lower(), []).append(ident.key)
        unknown: list[str] = []
        for name in self.rooms:
            state = self.engine.cached(name)
            if state is None or not self.engine.known(name):
                unknown.append(name)  # fail closed: 503 until Redis answers
            else:
                bans[name] = state.banned_callers()
                if state.conference is not None:
                    locked += [name] if state.conference.locked else []
                    held += [name] if state.conference.pin_hash else []
        self.pool.set_directory(
            RoomDirectory.create(
                [*self.rooms, *self.remote],
                bans=bans,
                owners=self.remote,
                locked=locked,
                held=held,
                draining=self.draining,
                public=[name for name, room in self.rooms.items() if room.public],
                present=present,
                unknown=unknown,
            )
        )

    def room_view(self, room: LinkedRoom) -> RoomView:
        """The conference as RFC 4575 subscribers see it, built from the stored truth."""
        state = self.engine.cached(room.name)
        people: list[Participant] = []
        puppet_nicks = set(room.bridged.present_puppets.values())
        bound_jids: set[str] = set()
        subject = room.bridged.subject
        if state is not None:
            subject = state.subject.text if state.subject is not None else subject
            for leg in state.legs.values():
                privilege = state.privilege(leg.participant)
                chat = None
                if leg.bound_jid:
                    bound_jids.add(leg.bound_jid)
                    chat = ChatPresence(nick=leg.nick, real_jid=leg.bound_jid)
                people.append(
                    Participant(
                        display_text=leg.nick or "Caller",
                        # never the caller's number: the leg id names the endpoint
                        audio=AudioLeg(
                            endpoint_uri=f"sip:{leg.leg_id}@{self.settings.sip.domain}",
                            muted_by_focus=leg.participant in state.mutes,
                        ),
                        chat=chat,
                        entity=f"sip:{leg.leg_id}@{self.settings.sip.domain}",
                        roles=(privilege,),
                    )
                )
        for occupant in room.bridged.occupants.values():
            bare = occupant.jid.split("/", 1)[0]
            if occupant.nick in puppet_nicks or occupant.nick == room.bridged.control_nick:
                continue
            if bare and bare in bound_jids:
                continue
            people.append(
                Participant(
                    display_text=occupant.nick,
                    chat=ChatPresence(nick=occupant.nick, real_jid=bare or None),
                    roles=(_privilege(occupant.role, occupant.affiliation),),
                )
            )
        return RoomView(
            focus_uri=self.sip_uri(room.name),
            room_jid=room.muc_jid,
            participants=tuple(people),
            subject=subject,
            show_real_jids=False,
        )

    # ---- for the owner commands (bridge.node.command_executor) ----------------------------

    async def handle_event(self, room: LinkedRoom, event: MirrorEvent) -> None:
        """Record a mirror event and perform its actions (as for events from either side)."""
        await self._handle(room, event)

    async def perform(self, room: LinkedRoom, actions: Iterable[Action]) -> None:
        await self._perform(room, Outcome("unchanged", tuple(actions)))

    def publish_directory(self) -> None:
        self._publish_directory()

    async def unlink(self, name: str, *, event_id: str) -> LinkedRoom | None:
        """Detach conference ``name`` on this node: the link leaves Redis, the lease is
        released, INVITEs get 404. The room occupant is the caller's to keep or close."""
        room = self.rooms.get(name)
        fence = self.services.fence(name)
        await self.engine.store.unlink_room(name, event_id=event_id, fence=fence)
        self.rooms.pop(name, None)
        task = self._keepers.pop(name, None)
        if task is not None:
            await cancel_all([task])
        keeper = self.services.keepers.pop(name, None)
        if keeper is not None:
            await keeper.release()
        self._publish_directory()
        return room

    def _refresh_conference(self, room: LinkedRoom) -> None:
        if self._conference_info:
            update = ConferenceInfoUpdate(room.name, conference_from_room(self.room_view(room)))
            self.pool.send_extension(update)


async def record_link(settings: Settings, engine: MirrorEngine, name: str, actor: str) -> str:
    """Store the link conference ``name`` ⇄ ``name@<muc_service>``; returns the MUC JID."""
    muc_jid = f"{name}@{settings.xmpp.muc_service}"
    await engine.store.link_room(
        name, muc_jid, event_id=f"link:{name}:{muc_jid}:{uuid.uuid4().hex}", actor=actor,
        at=time.time(), origin="config",
    )  # fmt: skip
    return muc_jid


async def initial_directory(settings: Settings, services: StateServices) -> RoomDirectory:
    """Link the configured rooms and read every linked room's bans and owner before the SIP
    workers start, so that no INVITE is ever judged against an empty directory."""
    for name in settings.rooms:
        await record_link(settings, services.engine, name.strip().lower(), "config")
    linked = await services.engine.store.linked_rooms()
    states = {}
    unknown = []
    for name in linked:
        try:
            states[name] = await services.engine.load(name)
        except StateUnavailable as error:  # this room's callers get 503, not a free pass
            log.error("room.state_unavailable", room=name, error=str(error))
            unknown.append(name)
    bans = {name: state.banned_callers() for name, state in states.items()}
    locked = [n for n, s in states.items() if s.conference is not None and s.conference.locked]
    held = [n for n, s in states.items() if s.conference is not None and s.conference.pin_hash]
    owners: dict[str, str] = {}
    for name in linked:
        lease = await services.leases.owner(name)
        if lease is not None and not services.leases.owns(lease):
            owners[name] = lease.contact
    return RoomDirectory.create(
        linked, bans=bans, owners=owners, locked=locked, held=held, unknown=unknown
    )


def _privilege(role: str, affiliation: str) -> Privilege:
    if affiliation in ("owner", "admin"):
        return "owner"
    if role == "moderator":
        return "moderator"
    return "participant"


#: why a puppet could not join → (SIP status of the BYE's Reason / final response, text)
_JOIN_FAILURES = {
    "forbidden": (403, "banned from the chat room"),
    "registration-required": (403, "the chat room is members-only"),
    "not-authorized": (403, "the chat room needs a password"),
    "not-allowed": (403, "the chat room does not allow this caller"),
    "service-unavailable": (480, "the chat room is full"),
    "conflict": (480, "no free nickname in the chat room"),
}


def join_failure_status(condition: str) -> tuple[int, str]:
    """A call whose puppet the room refused ends: 403 when refused, 480 otherwise."""
    return _JOIN_FAILURES.get(condition, (480, f"cannot join the chat room ({condition})"))
