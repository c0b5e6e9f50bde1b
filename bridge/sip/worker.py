"""A SIP media worker process: one pjsua2 endpoint, ≤ ``calls`` legs, audio via shared memory.

Threads: the process's main thread owns pjsua2 (handles SIP, runs every job); a reader
thread only moves pipe messages into the job queue; the media clock thread runs the
:class:`~bridge.sip.pj.FramePort` callbacks — our :class:`~bridge.sip.pj.MediaClock` on the
node's tick grid (``media_clock='aligned'``, see docs/capacity.md) or pjmedia's null sound
device clock. Both the media clock and (``main_thread_priority``) the pjsua2 thread run
under SCHED_FIFO when permitted: a GIL holder preempted on a busy core makes ticks late.
An INVITE is decided locally from the pushed :class:`~bridge.core.admission.RoomDirectory`
(404/403/486/503/302 at once); an admitted one rings (180) while the pool reserves a
mixer slot, and is answered 200 as soon as the slot arrives, so the caller's audio is in
the mix from its first frame.

Extension hooks (``WorkerSettings.hooks``, ``"package.module:function"``) are called on
the pjsua2 thread right after ``libStart`` with a :class:`HookContext`: that is where the
RFC 4575 package registers its pjsip module on this endpoint.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import itertools
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from bridge import __version__
from bridge.core.admission import (
    Accept,
    Moved,
    Redirect,
    Reject,
    RoomDirectory,
    SlotBook,
    admit,
    redirect_contact,
)
from bridge.core.caller_gate import GateAction
from bridge.core.caller_identity import admits
from bridge.core.dialplan import LOOP_HEADER
from bridge.core.events import (
    DialOutCall,
    DtmfReceived,
    HangupLeg,
    MuteLeg,
    PlayTone,
    SendSipMessage,
    SipMessageReceived,
)
from bridge.core.limits import in_networks, limit_call, rate_refusal
from bridge.logs import bound, configure, get_logger
from bridge.privileges import is_fifo
from bridge.protocol.sip_reason import reason_header
from bridge.sip import byemsg, codecs, dialout, forensics
from bridge.sip import pj as pjw
from bridge.sip.dialogtap import DialogTap
from bridge.sip.floodguard import FloodGuard
from bridge.sip.leg import Leg
from bridge.sip.msgfilter import MessageFilter
from bridge.sip.protocol import (
    AttachLeg,
    DialogCSeq,
    DirectoryUpdate,
    ExtensionMessage,
    InviteAnswered,
    LegConfirmed,
    LegEnded,
    LegOffered,
    PeersUpdate,
    Shutdown,
    SlotsBusy,
    WorkerReady,
    WorkerSpec,
    WorkerStats,
    call_limits,
)
from bridge.sip.sipmsg import (
    CallerInfo,
    MessageInfo,
    SipParseError,
    SipRequest,
    authorizations,
    caller_info,
    message_info,
    parse_request,
    room_of,
    via_transport,
)
from bridge.sip.tones import TONE_KINDS, tone_frames
from mixer.rings import LegPort, StaleAttachmentError

log = get_logger(__name__)

#: pjsua call slots beyond the legs: INVITEs being refused or redirected (302) hold one
#: each until their transaction ends; pjsua answers 486 by itself when none is left.
REJECT_HEADROOM = 16
PJSUA_MAX_CALLS = 256  # pjsip/config_site.h

#: CPython's own generation thresholds, applied by hand on the pjsua2 thread
GC_THRESHOLDS = (700, 10, 10)


def _collect_garbage() -> None:
    """Generational collection as CPython would do it, but only on this thread: a full
    collection at every check cost 16 workers ~50 % of a core in the 60-caller soak."""
    young, middle, old = gc.get_count()
    if old > GC_THRESHOLDS[2]:
        gc.collect(2)
    elif middle > GC_THRESHOLDS[1]:
        gc.collect(1)
    elif young > GC_THRESHOLDS[0]:
        gc.collect(0)


ACCEPTED_MESSAGE_TYPES = ("text/plain",)
FOCUS_USER = "conference"
_DTMF_DIGITS = frozenset("0123456789*#ABCD")


class HookContext:
    """What an endpoint hook may use; every method is safe only on the pjsua2 thread
    unless it says otherwise."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self.endpoint: Any = worker.ep
        self.index = worker.spec.index
        self.is_front = worker.spec.is_front
        self.spec = worker.spec

    @property
    def directory(self) -> RoomDirectory:
        return self._worker.directory

    def library(self) -> Any:
        """ctypes.CDLL of the pjsua2 module (pjsip C API, our build: docs/pjsip.md)."""
        return pjw.shared_library()

    def emit(self, payload: object) -> None:
        """Send a picklable payload to the supervisor (any thread)."""
        self._worker.send(ExtensionMessage(self._worker.spec.index, payload))

    def post(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the pjsua2 thread (any thread may call this)."""
        self._worker.jobs.put(job)

    def on_control(self, kind: type, handler: Callable[[Any], None]) -> None:
        """Receive supervisor messages of type ``kind`` (``pool.send_extension``)."""
        self._worker.extension_handlers[kind] = handler

    def verified_subscriber(self, call_id: str) -> bool:
        """The SUBSCRIBE with this Call-ID comes from an authenticated or asserted sender
        (checked by the message filter just before the package sees it)."""
        identity = self._worker.message_filter.identity_of(call_id)
        return identity is not None and identity.verified

    def callers_of(self, room: str) -> frozenset[str]:
        """Source addresses with a call in ``room`` anywhere on the node (pool snapshot)."""
        return self._worker.node_load.room_sources.get(room.lower(), frozenset())

    def on_shutdown(self, fn: Callable[[], None]) -> None:
        """Called on the pjsua2 thread before the endpoint is destroyed."""
        self._worker.shutdown_hooks.append(fn)


class Worker:
    def __init__(self, spec: WorkerSpec, conn: Connection) -> None:
        self.spec = spec
        self.conn = conn
        self.jobs: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.directory = spec.directory
        self.slot_book = SlotBook()
        self.legs: dict[str, Leg] = {}
        self.pending_rejects: dict[int, Any] = {}
        self.graveyard: list[pjw.FramePort] = []
        self.dead_calls: list[Any] = []
        self.extension_handlers: dict[type, Callable[[Any], None]] = {}
        self.shutdown_hooks: list[Callable[[], None]] = []
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stopping: str = ""
        self._stop_deadline = 0.0
        self._supervisor_lost = threading.Event()
        self._orphan_deadline = 0.0  # > 0: the supervisor is gone, calls end at this time
        self._last_busy = -1
        self.ep: Any = None
        self.account: Any = None
        self.clock: pjw.MediaClock | None = None
        self._frame_errors_gone = 0  # errors of ports already released
        limits = spec.sip.limits
        self.flood_guard = FloodGuard(
            call_burst=limits.call_rate_burst,
            call_per_minute=limits.call_rate_per_minute,
            request_burst=limits.request_rate_burst,
            request_per_minute=limits.request_rate_per_minute,
            trusted=tuple(limits.trusted_sources),
        )
        self.call_limits = call_limits(spec.sip, spec.retry_after_s)
        self.dialog_tap = DialogTap(
            self._on_dialog_answer, self._on_dialog_request, self._on_dialog_ack
        )
        self.legs_by_call_id: dict[str, Leg] = {}  # the tap's view: our dialogs' Call-IDs
        self.node_load = PeersUpdate(())  # the front's view of the node's calls
        self._jb_gone = [0, 0, 0]  # jitter buffer lost/discard/empty of calls already ended
        self._next_stats = 0.0

    # ------------------------------------------------------------------ plumbing
    def send(self, message: object) -> None:
        with self._send_lock:
            if self._supervisor_lost.is_set():
                return  # an orphan: nobody reads (the returning supervisor starts afresh)
            try:
                self.conn.send(message)
            except (OSError, ValueError):
                self._lose_supervisor()

    def _lose_supervisor(self) -> None:
        """Any thread: the pipe to the supervisor is broken (it died or was killed)."""
        if not self._supervisor_lost.is_set():
            self._supervisor_lost.set()
            self.jobs.put(self._orphaned)

    def _orphaned(self) -> None:
        """The calls carry on for ``orphan_grace_s``, then end (also at once on SIGTERM)."""
        grace = self.spec.orphan_grace_s
        if self._orphan_deadline or self._stopping:
            return
        if grace <= 0:
            self._begin_shutdown("supervisor-gone")
            return
        self._orphan_deadline = time.monotonic() + grace
        log.warning("sip.worker.orphaned", worker=self.spec.index, legs=len(self.legs),
                    grace_s=grace)  # fmt: skip

    def _reader(self) -> None:
        pjw.register_thread("sip-ctl-reader")  # belt and braces: see the gc note in run()
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                self._lose_supervisor()
                return
            if isinstance(message, DirectoryUpdate):  # at once (one reference swap): an
                self.directory = message.directory  # INVITE may come before the queue drains
            self.jobs.put(message)
            if isinstance(message, Shutdown):
                return

    def run(self) -> None:
        spec = self.spec
        self.ep = pjw.create_endpoint(
            calls=min(spec.calls + REJECT_HEADROOM, PJSUA_MAX_CALLS),
            log_level=spec.pjsip_log_level,
            user_agent=f"sipmuc-bridge/{__version__}",
            jitter=spec.jitter,
            quality=spec.media_quality,
            bridge_rate=spec.bridge_rate,
        )
        cert = str(spec.sip.tls_certificate) if spec.sip.tls_certificate else None
        key = str(spec.sip.tls_private_key) if spec.sip.tls_private_key else None
        dial_ca = spec.sip.dialout.ca_file
        public = spec.advertise or spec.host
        pjw.add_transports(
            self.ep, host=spec.host, port=spec.port, tls_port=spec.tls_port, cert=cert, key=key,
            public=public,
            tls_min_version=spec.sip.tls_min_version,
            transports={str(t) for t in spec.sip.transports},
            ca_file=str(dial_ca) if dial_ca else None,
        )  # fmt: skip
        if spec.aligned_clock:
            self.clock = pjw.use_aligned_clock(
                self.ep, phase_s=spec.clock_phase_s, bridge_rate=spec.bridge_rate
            )
        else:
            self.ep.audDevManager().setNullDev()
        enabled_codecs = pjw.set_codec_priorities(self.ep)
        self.ep.libStart()
        if self.clock is not None:
            self.clock.start()
        self.account = pjw.BridgeAccount(self._on_incoming_call, self._on_ood_message)
        self.account.create(
            pjw.account_config(
                user=FOCUS_USER,
                domain=spec.sip.domain,
                rtp_start=spec.rtp_port_start,
                rtp_count=spec.rtp_port_count,
                host=spec.host,
                srtp=spec.sip.srtp,
                public=public,
                session_expires=spec.sip.session_expires,
                dialout=spec.sip.dialout,
            ),
            True,
        )
        self.flood_guard.install()
        self.dialog_tap.install()
        self.message_filter = MessageFilter(lambda: self.directory, spec.callers)
        self.message_filter.install()
        context = HookContext(self)
        for hook in spec.hooks:
            _load_hook(hook)(context)
        # The cyclic GC runs in whichever thread happens to allocate; collecting a pjsua2
        # object on an unregistered thread aborts the process (pj_thread_this assertion,
        # seen in a 10-minute soak). Collect only here, on the thread that owns pjsua2.
        gc.disable()
        gc.freeze()  # start-up objects (modules, pjsua2 wrappers) never need scanning again
        threading.Thread(target=self._reader, name="sip-ctl-reader", daemon=True).start()
        wanted = []
        if self.clock is not None:
            wanted.append((self.clock.thread_id, pjw.CLOCK_PRIORITY))
        if spec.main_priority:
            wanted.append((threading.get_native_id(), spec.main_priority))
        missing = tuple((tid, prio) for tid, prio in wanted if tid and not is_fifo(tid))
        self.send(
            WorkerReady(
                spec.index, spec.incarnation, os.getpid(), spec.port, spec.tls_port, missing
            )
        )
        self.report_busy()
        log.info("sip.worker.started", worker=spec.index, port=spec.port, codecs=enabled_codecs,
                 bridge_rate=spec.bridge_rate)  # fmt: skip
        next_check = time.monotonic() + 1.0
        try:
            while True:
                self.ep.libHandleEvents(10)
                self._drain_jobs()
                if self.graveyard:
                    self._bury_ports()
                if self.dead_calls:
                    self._sweep_dead_calls()
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + 0.5
                    self._periodic(now)
                    _collect_garbage()
                if self._orphan_deadline and now > self._orphan_deadline:
                    self._begin_shutdown("supervisor-gone")
                if self._stopping and not self.legs and not self.pending_rejects:
                    break
                if self._stopping and now > self._stop_deadline:
                    break
        finally:
            self._destroy()

    def _destroy(self) -> None:
        for fn in self.shutdown_hooks:
            with contextlib.suppress(Exception):
                fn()
        for leg in list(self.legs.values()):
            self._release_media(leg)
        self.legs.clear()
        self.pending_rejects.clear()
        self._bury_ports()
        self.dead_calls.clear()
        self.account = None
        gc.collect()
        if self.clock is not None:
            self.clock.stop()  # the bridge must not tick while libDestroy tears it down
        with contextlib.suppress(Exception):
            self.ep.libDestroy()
        pjw.route_pjlib_log(self.spec.pjsip_log_level)  # the writer is gone with the endpoint
        self.ep = None

    def _bury_ports(self) -> None:
        """Free the frame ports of ended legs, C++ half first (``pj.destroy_port``): never
        by dropping the last Python reference while the media clock may call them."""
        failed = pjw.bury_ports(self.graveyard)
        if failed:
            log.error("sip.worker.port_destroy_failed", ports=failed)

    def _sweep_dead_calls(self) -> None:
        """Free ended ``Call`` objects only while their call id is unused.

        pjsua reuses call ids, and pjsua2's ``~Call`` hangs up whatever call now holds
        its id: a wrapper is destroyed only while its id is not active, and at once
        (``destroy_call``), never by a later garbage collection.
        """
        keep = []
        for call in self.dead_calls:
            if pjw.is_active(call):
                keep.append(call)
            else:
                pjw.destroy_call(call)
        self.dead_calls = keep

    def _drain_jobs(self) -> None:
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            try:
                self._handle(job)
            except Exception:
                log.exception("sip.worker.job_failed", job=type(job).__name__)

    def _handle(self, job: object) -> None:
        if callable(job) and not isinstance(job, type):
            job()
        elif isinstance(job, AttachLeg):
            if not dialout.attached(self, job):  # a leg we dialled is not answered
                self._on_attach(job)
        elif isinstance(job, DialOutCall):
            dialout.start(self, job)
        elif isinstance(job, DirectoryUpdate):
            self.directory = job.directory
        elif isinstance(job, PeersUpdate):
            self.slot_book.update(p for p in job.peers if p.worker != self.spec.index)
            self.node_load = job
        elif isinstance(job, HangupLeg):
            leg = self.legs.get(job.leg_id)
            if leg is not None:
                self.hangup(leg, job.reason or "hangup", job.status_code)
        elif isinstance(job, SendSipMessage):
            self._send_message(job)
        elif isinstance(job, PlayTone):
            self._play(job)
        elif isinstance(job, MuteLeg):
            pass  # applied in the mixer by the pool; nothing to do in SIP
        elif isinstance(job, Shutdown):
            self._begin_shutdown(job.reason)
        else:
            handler = self.extension_handlers.get(type(job))
            if handler is None:
                log.warning("sip.worker.unknown_message", kind=type(job).__name__)
            else:
                handler(job)

    def _begin_shutdown(self, reason: str) -> None:
        if self._stopping:
            return
        self._stopping = reason
        self._stop_deadline = time.monotonic() + 3.0
        for leg in list(self.legs.values()):
            self.hangup(leg, reason, 503)

    @property
    def stopping(self) -> bool:
        """Shutting down: no new calls, in or out."""
        return bool(self._stopping)

    def new_leg_id(self) -> str:
        """A leg id unique across workers and their restarts."""
        return f"w{self.spec.index}.{self.spec.incarnation}.{next(self._ids)}"

    def report_busy(self) -> None:
        busy = len(self.legs)
        if busy != self._last_busy:
            self._last_busy = busy
            self.send(SlotsBusy(self.spec.index, busy))

    def _periodic(self, now: float) -> None:
        refused = self.flood_guard.refused
        if refused:  # one line per period, not one per refused request
            log.warning("sip.rate_limited", refused=sum(refused.values()),
                        sources=len(refused), top=dict(refused.most_common(5)))  # fmt: skip
            refused.clear()
        if self.spec.stats_interval_s and now >= self._next_stats:
            self._next_stats = now + self.spec.stats_interval_s
            self._send_stats()
        for leg in list(self.legs.values()):
            if leg.ended:
                continue
            if not leg.attached and now - leg.created > self.spec.attach_timeout_s:
                self.hangup(leg, "error", 503)
                continue
            if dialout.ring_expired(self, leg, now):
                continue
            if (
                leg.answered_at
                and not leg.confirmed
                and now - leg.answered_at > self.spec.sip.limits.ack_timeout
            ):  # a 200 never ACKed would hold the slot until pjsip gives up (~32 s)
                log.info("sip.leg.ack_timeout", leg=leg.leg_id, room=leg.room)
                self._end_unconfirmed(leg)
                continue
            if leg.confirmed and not pjw.is_active(leg.call):
                # pjsua ended the call without telling its wrapper: never keep a ghost leg
                log.warning("sip.leg.lost", leg=leg.leg_id, room=leg.room)
                self._leg_ended(leg, "error-lost")
                continue
            if leg.confirmed and self.spec.media_timeout_s > 0:
                pkts = pjw.rx_packets(leg.call)
                if pkts != leg.last_rx:
                    leg.last_rx, leg.last_rx_change = pkts, now
                elif now - leg.last_rx_change > self.spec.media_timeout_s:
                    log.info("sip.leg.media_timeout", leg=leg.leg_id)
                    self.hangup(leg, "timeout", 408)

    def _send_stats(self) -> None:
        c = self.clock.stats() if self.clock is not None else None
        lost = discard = empty = calls = 0
        delay = 0.0
        errors = self._frame_errors_gone
        for leg in self.legs.values():
            if leg.port is not None:
                errors += leg.port.errors
            if not leg.confirmed or leg.ended:
                continue
            jb = pjw.jitter_stats(leg.call)
            if jb is not None:
                leg.extra["jb"] = jb  # the last reading counts once the call has ended
                calls += 1
                lost, discard, empty = lost + jb[0], discard + jb[1], empty + jb[2]
                delay += jb[3]
        lost += self._jb_gone[0]
        discard += self._jb_gone[1]
        empty += self._jb_gone[2]
        self.send(
            WorkerStats(
                self.spec.index,
                c.ticks if c else 0,
                c.late if c else 0,
                c.skipped if c else 0,
                c.max_lateness_s if c else 0.0,
                c.realtime if c else False,
                errors,
                calls,
                lost,
                discard,
                empty,
                delay / calls if calls else 0.0,
                c.busy_s if c else 0.0,
                c.max_busy_s if c else 0.0,
            )
        )

    # ----------------------------------------------------------------- INVITE
    def _on_incoming_call(self, prm: Any) -> None:
        call = pjw.BridgeCall(self.account, prm.callId, self)
        source = pjw.source_host(prm.rdata)
        guard = self.flood_guard
        if not guard.installed and source and not in_networks(source, guard.trusted):
            wait = guard.calls.take(source, time.monotonic())  # the slow path: no guard module
            if wait:
                guard.refused[source] += 1
                self._reject(call, rate_refusal(wait))
                return
        try:
            request = parse_request(str(prm.rdata.wholeMsg))
        except SipParseError:
            self._reject(call, Reject(400, "Bad Request"))
            return
        room = room_of(request.uri)
        if request.get(LOOP_HEADER.lower()):
            log.warning("sip.invite.loop", room=room, call_id=request.get("call-id"))
            self._reject(call, Reject(482, "Loop Detected"))
            return
        policy = self.spec.callers
        gate = policy.gate(
            method="INVITE", room=room, request_uri=request.uri, from_uri=request.get("from"),
            source_addr=source, authorizations=authorizations(request), now=time.time(),
        )  # fmt: skip
        if gate.action is not GateAction.PASS:
            log.info("sip.invite.challenged", room=room, action=gate.action, why=gate.reason)
            if gate.action is GateAction.CHALLENGE:
                self.pending_rejects[call.getId()] = call
                call.answer(pjw.call_op(401, "Unauthorized", gate.headers))
            else:
                self._reject(call, Reject(403, "Authentication failed"))
            return
        trusted = bool(policy.peers.match(source))
        # the transport it really came on, never the Via header the caller wrote
        caller = replace(
            caller_info(request, trusted_peer=trusted),
            source_host=source,
            transport=pjw.rx_transport(prm.rdata) or "unknown",
        )
        leg_id = self.new_leg_id()
        identity = policy.identify(
            call_token=leg_id, gate=gate, from_uri=caller.from_uri,
            display=caller.display_name, source_addr=source,
            asserted_identity=caller.asserted_identity,
        )  # fmt: skip
        caller = replace(caller, identity=identity)
        if self._stopping or self._orphan_deadline:
            self._reject(call, Reject(503, "Shutting down", self.spec.retry_after_s, "draining"))
            return
        ctype = request.get("content-type").split(";", 1)[0].strip().lower()
        if request.body.strip() and ctype == "application/sdp" and "m=audio" not in request.body:
            self._reject(call, Reject(488, "No audio stream offered"))
            return
        sdp = request.body if ctype == "application/sdp" else ""
        has_slot = len(self.legs) < self.spec.calls
        redirect: Redirect | None = None
        now = time.monotonic()
        if self.spec.is_front:
            # a G.711 leg to a narrowband worker, a wideband one to a wideband worker
            offered_rate = codecs.codec_rate(sdp)
            route = self.slot_book.route(
                now, offered_rate, own_rate=self.spec.bridge_rate, own_has_slot=has_slot
            )
            has_slot = route.local
            peer = route.peer
            if peer is not None:  # a TLS caller goes to the worker's TLS listener
                tls = caller.transport == "tls" and peer.tls_port
                redirect = Redirect(peer.worker, peer.host, peer.tls_port if tls else peer.port)
            if route.spilled:
                log.info("sip.invite.spilled", room=room, rate=offered_rate,
                         bridge_rate=route.bridge_rate)  # fmt: skip
        decision = admit(
            self.directory,
            room,
            identity.admission_keys(),
            has_local_slot=has_slot,
            redirect=redirect,
            retry_after=self.spec.retry_after_s,
            is_front=self.spec.is_front,
            refuse_unverified=not admits(policy.mode(room), identity),
        )
        if isinstance(decision, Accept | Redirect) and self.spec.is_front:
            # the pool checks again when the leg is offered (authoritative, race-free); this
            # early look spares a capped caller a redirect that would end in a refusal
            load = self.node_load
            decision = limit_call(
                self.call_limits,
                source=source,
                source_calls=load.source_calls.get(source, 0)
                + self.slot_book.pending_from(source, now),
                room_calls=load.room_calls.get(room.lower(), 0),
            ) or decision
        with bound(room=room, call_id=caller.call_id):
            if isinstance(decision, Reject):
                log.info("sip.invite.rejected", status=decision.status, reason=decision.reason)
                self._reject(call, decision)
            elif isinstance(decision, Moved):
                log.info("sip.invite.moved", contact=decision.contact)
                op = pjw.call_op(302, "Moved Temporarily", {"Contact": f"<{decision.contact}>"})
                self.pending_rejects[call.getId()] = call
                call.answer(op)
                self.send(InviteAnswered(self.spec.index, "redirected", "owner"))
            elif isinstance(decision, Redirect):
                self.slot_book.hold(decision.worker, now, source)
                transport = caller.transport
                if transport not in ("udp", "tcp", "tls"):
                    transport = via_transport(request.get("via"))
                contact = redirect_contact(room, decision.host, decision.port, transport)
                log.info("sip.invite.redirected", worker=decision.worker, contact=contact)
                op = pjw.call_op(302, "Moved Temporarily", {"Contact": contact})
                self.pending_rejects[call.getId()] = call
                call.answer(op)
                self.send(InviteAnswered(self.spec.index, "redirected", "worker"))
            else:
                assert isinstance(decision, Accept)
                rate = codecs.leg_rate(sdp, self.spec.bridge_rate)
                seed = (request, pjw.source_address(prm.rdata))
                self._accept(call, room, caller, leg_id, rate, seed=seed)

    def _reject(self, call: Any, decision: Reject) -> None:
        headers = {"Retry-After": str(decision.retry_after)} if decision.retry_after else {}
        self.pending_rejects[call.getId()] = call
        call.answer(pjw.call_op(decision.status, decision.reason, headers))
        outcome = "busy" if decision.kind == "busy" else "rejected"
        self.send(InviteAnswered(self.spec.index, outcome, decision.kind))

    def _accept(
        self, call: Any, room: str, caller: CallerInfo, leg_id: str, rate: int,
        *, seed: tuple[SipRequest, tuple[str, int]] | None = None,
    ) -> None:  # fmt: skip
        try:
            port = pjw.FramePort(leg_id, rate)  # the codec's own rate (bridge.sip.codecs)
        except pjw.pj.Error as exc:  # the conference bridge is full (ports still being freed)
            log.error("sip.invite.no_media_port", room=room, error=pjw.error_text(exc))
            self._reject(call, Reject(503, "No media port", self.spec.retry_after_s, "busy"))
            return
        leg = Leg(leg_id, room, call, caller, time.monotonic())
        leg.port = port
        call.handler = _LegHandler(self, leg)
        self.legs[leg_id] = leg
        if seed is not None:
            leg.extra["invite"] = seed  # the dialog a BYE needs if we die (bridge.sip.byemsg)
            self.watch_dialog(leg)
        call.answer(pjw.call_op(180))
        self.send(LegOffered(leg_id, self.spec.index, room, caller, rate))
        self.report_busy()
        ident = caller.identity
        log.info(
            "sip.invite.accepted", leg=leg_id, room=room, caller=caller.from_uri,
            level=ident.level if ident else "", identity=ident.key if ident else "",
        )  # fmt: skip

    def _on_attach(self, msg: AttachLeg) -> None:
        leg = self.legs.get(msg.leg_id)
        if leg is None or leg.ended:
            return  # ended while the pool was busy; the pool frees the slot on LegEnded
        if msg.attachment is None:  # refused by the pool: a node-wide cap, or no mixer slot
            self.hangup(leg, msg.reason or "error", msg.status, msg.retry_after)
            return
        try:
            leg.port.leg_port = LegPort(
                msg.attachment,
                reserve=self.spec.ring_reserve,
                hold_ticks=self.spec.cushion_hold_ticks,
            )
        except (StaleAttachmentError, FileNotFoundError, OSError) as exc:
            log.warning("sip.leg.attach_failed", leg=leg.leg_id, error=str(exc))
            self.hangup(leg, "error", 503)
            return
        leg.attached = True
        leg.answered = True
        leg.answered_at = time.monotonic()
        try:
            leg.call.answer(pjw.call_op(200))
        except Exception as exc:  # the call died between 180 and now
            log.info("sip.leg.answer_failed", leg=leg.leg_id, error=pjw.error_text(exc))

    def hangup(self, leg: Leg, reason: str, status: int = 200, retry_after: int = 0) -> None:
        if leg.ended or leg.hangup_reason:
            return
        leg.hangup_reason = reason
        headers = {"Reason": reason_header(status if status >= 300 else 200, reason)}
        if retry_after and not leg.answered:
            headers["Retry-After"] = str(retry_after)
        code = status if status >= 300 else 603
        try:
            leg.call.hangup(pjw.call_op(code if not leg.answered else 0, "", headers))
        except Exception as exc:
            log.info("sip.leg.hangup_failed", leg=leg.leg_id, error=pjw.error_text(exc))
            self._leg_ended(leg, reason)

    def _end_unconfirmed(self, leg: Leg) -> None:
        """Free the slot of a call we answered that never sent its ACK: BYE (pjsip sends it
        once it may) and the leg ends here at once."""
        leg.hangup_reason = "ack-timeout"
        try:
            leg.call.hangup(pjw.call_op(0, "", {"Reason": 'SIP;cause=408;text="no ACK"'}))
        except Exception as exc:
            log.info("sip.leg.hangup_failed", leg=leg.leg_id, error=pjw.error_text(exc))
        self._leg_ended(leg, "ack-timeout")

    # ------------------------------------------------------------- call events
    def on_call_state(self, call: Any) -> None:
        """State of a call that is not (or no longer) a leg: rejected or redirected."""
        with contextlib.suppress(Exception):
            if call.getInfo().state == pjw.STATE_DISCONNECTED:
                dead = self.pending_rejects.pop(call.getId(), None)
                if dead is not None:
                    self.dead_calls.append(dead)

    def on_media_state(self, call: Any) -> None:
        return

    def on_dtmf(self, call: Any, digit: str, method: int) -> None:
        return

    def on_dialog_message(self, call: Any, prm: Any) -> None:
        return

    def leg_state(self, leg: Leg, call: Any) -> None:
        info = call.getInfo()
        if info.state == pjw.STATE_CONFIRMED and not leg.confirmed:
            leg.confirmed = True
            leg.last_rx_change = time.monotonic()
            self.send(
                LegConfirmed(
                    leg.leg_id, pjw.codec_name(call), leg.caller.transport, pjw.srtp_active(call),
                    self._dialog_state(leg),
                )
            )  # fmt: skip
        elif info.state == pjw.STATE_DISCONNECTED:
            if leg.hangup_reason:
                reason = leg.hangup_reason
            elif not leg.confirmed and info.lastStatusCode == 487:
                reason = "cancel"
            elif info.lastStatusCode in (408, 480) and not leg.confirmed:
                reason = "timeout"
            elif not leg.confirmed:
                reason = "failed"
            else:
                reason = "bye"
            self._leg_ended(leg, reason)

    def watch_dialog(self, leg: Leg) -> None:
        """Let the dialog tap record what this leg's dialog sends (its Call-ID is known)."""
        if leg.caller.call_id:
            self.legs_by_call_id[leg.caller.call_id] = leg
            self.dialog_tap.watched.add(leg.caller.call_id)

    def _dialog_state(self, leg: Leg) -> byemsg.DialogState | None:
        seed, local_to, ack = (leg.extra.get(k) for k in ("invite", "local_to", "ack"))
        try:
            if seed is not None and local_to:
                request, source = seed
                return byemsg.uas_dialog(
                    request, local_to, transport=leg.caller.transport, source=source
                )
            if seed is None and ack:  # a call we placed: our ACK is an in-dialog request
                return byemsg.uac_dialog(parse_request(ack))
            log.info("sip.leg.no_dialog_state", leg=leg.leg_id, error="not seen")
            return None
        except (byemsg.DialogError, SipParseError) as exc:
            log.info("sip.leg.no_dialog_state", leg=leg.leg_id, error=str(exc))
            return None

    def _on_dialog_answer(self, call_id: str, to: str) -> None:
        """Our 2xx to a leg's INVITE is leaving: its To carries our tag (bridge.sip.dialogtap)."""
        leg = self.legs_by_call_id.get(call_id)
        if leg is not None:
            leg.extra["local_to"] = to

    def _on_dialog_ack(self, call_id: str, text: str) -> None:
        """Our ACK on a call we placed is leaving: it carries that dialog (dial-out)."""
        leg = self.legs_by_call_id.get(call_id)
        if leg is not None and "invite" not in leg.extra:
            leg.extra["ack"] = text

    def _on_dialog_request(self, call_id: str, cseq: int) -> None:
        """A request on a leg's dialog is leaving: the pool learns its CSeq first when it has
        grown by CSEQ_STEP, so a BYE after our death can go above it (bridge.sip.byemsg)."""
        leg = self.legs_by_call_id.get(call_id)
        if leg is None:
            return
        reported = leg.extra.get("cseq_reported")
        if reported is None or cseq >= reported + byemsg.CSEQ_STEP:
            leg.extra["cseq_reported"] = cseq
            self.send(DialogCSeq(leg.leg_id, cseq))

    def _leg_ended(self, leg: Leg, reason: str) -> None:
        if leg.ended:
            return
        leg.ended = True
        call_id = leg.caller.call_id
        if self.legs_by_call_id.get(call_id) is leg:
            del self.legs_by_call_id[call_id]
            self.dialog_tap.watched.discard(call_id)
        last_jb = leg.extra.get("jb")
        if last_jb is not None:
            for i in range(3):
                self._jb_gone[i] += last_jb[i]
        self._release_media(leg)
        self.legs.pop(leg.leg_id, None)
        self.dead_calls.append(leg.call)
        self.send(LegEnded(leg.leg_id, reason))
        self.report_busy()
        log.info("sip.leg.ended", leg=leg.leg_id, room=leg.room, reason=reason)

    def _release_media(self, leg: Leg) -> None:
        port = leg.port
        if port is None:
            return
        # the clock thread stops touching the rings now; a callback that already took the
        # ring port may still use it: it is unmapped once the port is destroyed (pj.destroy_port)
        port.retired_leg_port, port.leg_port = port.leg_port, None
        aud = leg.extra.pop("aud", None)
        # An ended call's stream left the conference bridge with its connections: stopping
        # them again makes pjsua2 log PJ_EINVAL errors. Dropping the port unregisters it.
        if aud is not None and leg.call is not None and pjw.is_active(leg.call):
            with contextlib.suppress(Exception):
                aud.stopTransmit(port)
                port.stopTransmit(aud)
        leg.port = None
        self._frame_errors_gone += port.errors
        self.graveyard.append(port)

    def leg_media(self, leg: Leg, call: Any) -> None:
        info = call.getInfo()
        for med in info.media:
            if med.type == pjw.MEDIA_AUDIO and med.status == pjw.MEDIA_ACTIVE:
                if leg.port is None or leg.ended:
                    return
                aud = call.getAudioMedia(med.index)
                old = leg.extra.get("aud")
                if old is not None:
                    with contextlib.suppress(Exception):
                        old.stopTransmit(leg.port)
                        leg.port.stopTransmit(old)
                aud.startTransmit(leg.port)
                leg.port.startTransmit(aud)
                leg.extra["aud"] = aud
                return

    def leg_dtmf(self, leg: Leg, digit: str, method: int) -> None:
        digit = digit.upper()
        if digit not in _DTMF_DIGITS:
            return
        kind = "info" if method == pjw.DTMF_INFO else "rfc4733"
        self.send(DtmfReceived(leg.leg_id, leg.room, digit, kind))

    def leg_message(self, leg: Leg, prm: Any) -> None:
        text = str(prm.rdata.wholeMsg)
        try:
            info = message_info(parse_request(text))
        except SipParseError:
            return
        self.send(
            _message_event(
                info, prm, leg.room, leg.leg_id, info.sender_display or leg.caller.display_name
            )
        )

    # ------------------------------------------------------- out-of-dialog MESSAGE
    def _on_ood_message(self, prm: Any) -> None:
        try:
            info = message_info(parse_request(str(prm.rdata.wholeMsg)))
        except SipParseError:
            return
        if info.room not in self.directory.rooms:
            # pjsua has already answered 200 (it replies before the callback): drop it.
            log.info("sip.message.unknown_room", room=info.room, sender=info.sender_uri)
            return
        identity = self.message_filter.identity_of(info.call_id)
        if identity is None:  # the filter did not check it (not installed): never trust From
            log.warning("sip.message.unchecked", room=info.room, sender=info.sender_uri)
            return
        event = _message_event(info, prm, info.room, "", info.sender_display)
        source = pjw.source_host(prm.rdata)
        self.send(replace(event, source_host=source, sender_key=identity.key))

    # ---------------------------------------------------------------- commands
    def _send_message(self, cmd: SendSipMessage) -> None:
        leg = self.legs.get(cmd.leg_id)
        if leg is None or not leg.confirmed:
            log.info("sip.message.no_leg", leg=cmd.leg_id)
            return
        headers: dict[str, str] = {}
        if cmd.subject:
            headers["Subject"] = _one_line(cmd.subject)
        if cmd.language:
            headers["Content-Language"] = _one_line(cmd.language)
        # the room relay (bridge.protocol.stox) already writes "nick: text": never twice
        named = cmd.body.startswith((f"{cmd.sender_display}: ", f"{cmd.sender_display} ("))
        body = f"{cmd.sender_display}: {cmd.body}" if cmd.sender_display and not named else cmd.body
        try:
            pjw.send_message(leg.call, body, cmd.content_type or "text/plain", headers)
        except Exception as exc:
            log.warning("sip.message.send_failed", leg=cmd.leg_id, error=pjw.error_text(exc))

    def _play(self, cmd: PlayTone) -> None:
        leg = self.legs.get(cmd.leg_id)
        if leg is None or leg.port is None:
            return
        kind = cmd.kind if cmd.kind in TONE_KINDS else "beep"
        leg.port.play(tone_frames(kind, leg.port.rate))


class _LegHandler:
    """Routes one admitted call's pjsua2 callbacks to the worker with its leg."""

    def __init__(self, worker: Worker, leg: Leg) -> None:
        self.worker = worker
        self.leg = leg

    def on_call_state(self, call: Any) -> None:
        self.worker.leg_state(self.leg, call)

    def on_media_state(self, call: Any) -> None:
        self.worker.leg_media(self.leg, call)

    def on_dtmf(self, call: Any, digit: str, method: int) -> None:
        self.worker.leg_dtmf(self.leg, digit, method)

    def on_dialog_message(self, call: Any, prm: Any) -> None:
        self.worker.leg_message(self.leg, prm)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:256]


def _load_hook(path: str) -> Callable[[HookContext], None]:
    module_name, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"hook {path!r} must look like 'package.module:function'")
    fn: Callable[[HookContext], None] = getattr(importlib.import_module(module_name), attr)
    return fn


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Process entry point (spawned by the pool)."""
    armed = forensics.arm(spec.crash_file, spec.core_dump_max_mb)
    configure(spec.log)
    sys.setswitchinterval(0.0005)  # DESIGN §5: keeps pjmedia ticks on time under load
    if spec.main_priority:
        # The media clock waits for the GIL whenever this thread holds it: if a busy core
        # preempts us meanwhile (CFS slices are several ms), the tick is late. SCHED_FIFO
        # (below the clock's) keeps the GIL holder running; it mostly sleeps in poll().
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(spec.main_priority))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool decides when we stop
    with bound(worker=spec.index):
        log.info("sip.worker.forensics", armed=armed, pid=os.getpid())
        worker = Worker(spec, conn)
        # SIGTERM (a returning supervisor ending an orphan): BYE every call, then exit
        signal.signal(signal.SIGTERM, lambda _s, _f: worker.jobs.put(Shutdown("terminated")))
        try:
            worker.run()
        except Exception:
            log.exception("sip.worker.crashed")
            raise
    conn.close()


def _message_event(
    info: MessageInfo, prm: Any, room: str, leg_id: str, display: str
) -> SipMessageReceived:
    """The stox-im fields of a received MESSAGE (in-dialog when ``leg_id`` is set)."""
    ctype = str(prm.contentType).split(";", 1)[0].strip().lower() or info.content_type
    return SipMessageReceived(
        room=room,
        sender_uri=info.sender_uri,
        body=str(prm.msgBody),
        content_type=ctype,
        subject=info.subject,
        call_id=info.call_id,
        language=info.language,
        leg_id=leg_id,
        sender_display=display,
    )
