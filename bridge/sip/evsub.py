"""RFC 4575 ``conference`` event package on a running pjsua2 endpoint.

pjsua answers an out-of-dialog ``SUBSCRIBE`` with ``Event: conference`` with 489 by itself and
pjsua2 has no API for other packages, so this registers a pjsip module and the ``conference``
package through ctypes (:mod:`bridge.sip.evsub_native`). pjsip then does the RFC 6665 work:
dialogs, 200 + Expires, refresh and expiry timers, un-SUBSCRIBE, Allow-Events, NOTIFY
retransmission and giving up on subscribers that answer 481 or stop answering.

Use, on the thread that owns pjsua2, after ``libInit`` and transport creation::

    service = ConferenceEventService.install(endpoint, rooms.get)   # rooms: room → model
    ...
    service.notify_changed(room, conference_from_room(view))        # from any thread
    service.conference_ended(room)                                  # from any thread

``rooms_lookup(room)`` is called on the pjsua2 thread for each new SUBSCRIBE with the
Request-URI's user part and returns the room's current
:class:`~bridge.protocol.conference_info.ConferenceInfo` or ``None`` (→ 404). Each
subscription gets its own version stream (RFC 4575 §5.1): a full document first and after
each refresh, partial documents for changes.

If the struct layout check fails the package is not registered: the error is logged loudly,
``enabled`` is false and pjsua keeps answering 489.
"""

from __future__ import annotations

import ctypes
import itertools
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from bridge.core.limits import (
    SubscribeDecision,
    SubscribeLimits,
    SubscriberFacts,
    decide_subscribe,
    parse_networks,
)
from bridge.logs import get_logger
from bridge.protocol.conference_info import ConferenceInfo, ConferenceInfoStream, without_people
from bridge.sip import evsub_native as nat
from bridge.sip.evsub_native import PINNED, Layout, Native, pj_str
from bridge.sip.sipmsg import via_source, via_transport

log = get_logger(__name__)

EVENT = "conference"
ACCEPT = "application/conference-info+xml"
DEFAULT_EXPIRES = 3600
MAX_SUBSCRIBE_BODY = 1024  # the package defines no SUBSCRIBE body; filters are not supported
POLL_MS = 20

RoomsLookup = Callable[[str], ConferenceInfo | None]
#: (room, source address, Call-ID, the room's and the source's subscriptions here) → decision
Authorize = Callable[[str, str, str, int, int], SubscribeDecision]


def _allow_all(_room: str, _source: str, _call_id: str, _in_room: int,
               _from_source: int) -> SubscribeDecision:  # fmt: skip
    return SubscribeDecision()

# pjsip keeps raw pointers to modules, package names and callbacks until the endpoint is
# destroyed; these objects must never be freed, so every installation is kept here for good.
_KEEPALIVE: list[Any] = []
_COMPACT = {"o": "event", "l": "content-length", "c": "content-type", "v": "via",
            "t": "to", "f": "from", "i": "call-id", "m": "contact"}
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")


def native() -> Native:
    """The process-wide ctypes view of the pjsua2 shared object."""
    return nat.shared()


class EvsubError(RuntimeError):
    """The conference event package could not be installed."""


@dataclass(slots=True)
class _Subscription:
    ptr: int
    room: str
    stream: ConferenceInfoStream = field(default_factory=ConferenceInfoStream)
    source: str = ""
    redact: bool = False  # an outsider of a members-only room: no users in the documents

    def document(self, conf: ConferenceInfo) -> ConferenceInfo:
        return without_people(conf) if self.redact else conf


@dataclass(frozen=True, slots=True)
class _Request:
    """What we need of an incoming out-of-dialog request, parsed from pjsip's print of it."""

    method: str
    user: str  # Request-URI user part, as on the wire (escaped)
    headers: dict[str, list[str]]
    body_len: int

    def first(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None


def _parse_request(text: bytes) -> _Request | None:
    head, _, body = text.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    uri = parts[1]
    m = re.match(r"^sips?:(?:([^@;?]+)@)?", uri, re.IGNORECASE)
    user = (m.group(1) or "") if m else ""
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        headers.setdefault(key, []).append(value.strip())
    return _Request(method=parts[0], user=user, headers=headers, body_len=len(body))


class ConferenceEventService:
    """The ``conference`` event package of one pjsua2 endpoint (one per process)."""

    def __init__(self, rooms_lookup: RoomsLookup, *, expires: int = DEFAULT_EXPIRES,
                 poll_ms: int = POLL_MS, authorize: Authorize = _allow_all) -> None:
        self._lookup = rooms_lookup
        self._authorize = authorize
        self._expires = expires
        self._poll_ms = poll_ms
        self._native: Native | None = None
        self._endpt = 0
        self._endpoint: Any = None
        self._owner: int | None = None
        self.enabled = False
        self.problems: list[str] = []
        self._subs: dict[int, _Subscription] = {}
        self._ended: dict[int, _Subscription] = {}
        self._by_room: dict[str, set[int]] = {}
        self._latest: dict[str, ConferenceInfo] = {}
        self._jobs: queue.SimpleQueue[tuple[str, ConferenceInfo | None]] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _by_room for readers on other threads
        self._contacts: dict[str, str] = {}
        self._stopped = False
        self._module: nat.PjsipModule | None = None
        self._user_cb: nat.PjsipEvsubUser | None = None
        self._timer_cb: Any = None
        self._counter = itertools.count()

    # ---- installation -----------------------------------------------------------------------

    @classmethod
    def install(cls, endpoint: Any, rooms_lookup: RoomsLookup, *, layout: Layout = PINNED,
                expires: int = DEFAULT_EXPIRES, poll_ms: int = POLL_MS,
                priority: int = nat.PJSIP_MOD_PRIORITY_APPLICATION - 2,
                authorize: Authorize = _allow_all,
                ) -> ConferenceEventService:
        """Register the package on ``endpoint`` (call on the pjsua2 thread, after libInit and
        transport creation). Never raises for a layout mismatch: check ``enabled``.
        ``authorize`` decides each new subscription (who, and how many)."""
        service = cls(rooms_lookup, expires=expires, poll_ms=poll_ms, authorize=authorize)
        service._install(endpoint, layout, priority)
        return service

    def _install(self, endpoint: Any, layout: Layout, priority: int) -> None:
        lib = native()
        if not lib.thread_is_registered():
            raise EvsubError("install() must run on the thread that owns pjsua2")
        endpt = int(lib.get_endpt() or 0)
        if not endpt:
            raise EvsubError("pjsua2 endpoint not initialised (call after libInit)")
        self._native, self._endpt, self._endpoint = lib, endpt, endpoint
        self._owner = threading.get_ident()
        self.layout = layout
        self.problems = nat.verify_layout(lib, endpt, layout)
        if self.problems:
            log.error("conference_events.disabled", problems=self.problems,
                      detail="pjsip struct layout differs from the pinned pjsua2 build; "
                             "SUBSCRIBE Event: conference will get 489 from pjsua")
            return
        self._refresh_contacts()
        name = b"mod-conference-events"
        module = nat.PjsipModule()
        module.name = pj_str(name)
        module.id = -1
        module.priority = priority
        module.on_rx_request = nat.RX_CB(self._on_rx_request)
        user_cb = nat.PjsipEvsubUser()
        user_cb.on_evsub_state = nat.EVSUB_STATE_CB(self._on_evsub_state)
        user_cb.on_rx_refresh = nat.EVSUB_RX_CB(self._on_rx_refresh)
        user_cb.on_server_timeout = nat.EVSUB_VOID_CB(self._on_server_timeout)
        self._timer_cb = nat.TIMER_CB(self._on_timer)
        self._module, self._user_cb = module, user_cb
        event_name, accept = pj_str(EVENT.encode()), pj_str(ACCEPT.encode())
        _KEEPALIVE.append((self, name, module, user_cb, event_name, accept))
        status = lib.register_module(endpt, ctypes.byref(module))
        if status != 0:
            raise EvsubError(f"pjsip_endpt_register_module failed ({status})")
        status = lib.register_pkg(ctypes.byref(module), ctypes.byref(event_name),
                                  self._expires, 1, ctypes.byref(accept))
        if status != 0:
            raise EvsubError(f"pjsip_evsub_register_pkg failed ({status})")
        self.enabled = True
        self._schedule()
        log.info("conference_events.installed", module_id=module.id, expires=self._expires)

    def _refresh_contacts(self) -> None:
        ep = self._endpoint
        for tid in ep.transportEnum():
            info = ep.transportGetInfo(tid)
            self._contacts.setdefault(str(info.typeName).upper(), str(info.localName))

    # ---- public, thread-safe ----------------------------------------------------------------

    def notify_changed(self, room: str, conference: ConferenceInfo) -> None:
        """The room's state changed: partial NOTIFYs go out on the pjsua2 thread (any thread)."""
        self._jobs.put((room, conference))

    def conference_ended(self, room: str) -> None:
        """The conference is over: its subscriptions end with reason noresource (any thread)."""
        self._jobs.put((room, None))

    def subscription_count(self, room: str | None = None) -> int:
        with self._lock:
            if room is None:
                return sum(len(s) for s in self._by_room.values())
            return len(self._by_room.get(room, ()))

    # ---- pjsua2 thread ----------------------------------------------------------------------

    def process_pending(self) -> None:
        """Send what :meth:`notify_changed` queued; runs by itself every ``poll_ms``."""
        self._check_owner()
        self._ended.clear()
        pending: dict[str, ConferenceInfo | None] = {}
        while True:
            try:
                room, conf = self._jobs.get_nowait()
            except queue.Empty:
                break
            pending.pop(room, None)  # keep arrival order of the latest state per room
            pending[room] = conf
        for room, conf in pending.items():
            if conf is None:
                self._end_room(room)
            else:
                self._latest[room] = conf
                for ptr in list(self._by_room.get(room, ())):
                    sub = self._subs.get(ptr)
                    if sub is not None:
                        body = sub.stream.update(sub.document(conf))
                        if body is not None:
                            self._send_notify(sub, nat.EVSUB_STATE_ACTIVE, body)

    def shutdown(self) -> None:
        """End every subscription (NOTIFY terminated) and stop polling; before libDestroy."""
        self._check_owner()
        self.process_pending()
        for room in list(self._by_room):
            self._end_room(room, reason=b"deactivated")
        self._stopped = True

    def _check_owner(self) -> None:
        if self._owner is not None and threading.get_ident() != self._owner:
            raise EvsubError("call this on the thread that owns pjsua2")

    def _schedule(self) -> None:
        assert self._native is not None
        if not self._stopped:
            self._native.schedule_timer(self._timer_cb, None, self._poll_ms, b"evsub.py", 0)

    def _on_timer(self, _user_data: int | None) -> None:
        try:
            self.process_pending()
        except Exception:
            log.exception("conference_events.poll_failed")
        finally:
            self._schedule()

    def _end_room(self, room: str, reason: bytes = b"noresource") -> None:
        self._latest.pop(room, None)
        for ptr in list(self._by_room.get(room, ())):
            sub = self._subs.get(ptr)
            if sub is not None:
                self._send_notify(sub, nat.EVSUB_STATE_TERMINATED, None, reason)
        # on_evsub_state removes them as pjsip moves each to TERMINATED
        log.info("conference_events.room_ended", room=room)

    # ---- sending ------------------------------------------------------------------------------

    def _send_notify(self, sub: _Subscription, state: int, body: bytes | None,
                     reason: bytes | None = None) -> bool:
        lib = self._native
        assert lib is not None
        tdata = ctypes.c_void_p()
        reason_s = pj_str(reason) if reason else None
        status = lib.evsub_notify(sub.ptr, state, None,
                                  ctypes.byref(reason_s) if reason_s is not None else None,
                                  ctypes.byref(tdata))
        if status != 0 or not tdata.value:
            log.warning("conference_events.notify_failed", room=sub.room, status=status)
            return False
        if body is not None:
            td = int(tdata.value)
            pool = lib.read_ptr_unchecked(td + self.layout.tdata_pool)
            msg = lib.read_ptr_unchecked(td + self.layout.tdata_msg)
            mtype, subtype, text = pj_str(b"application"), pj_str(b"conference-info+xml"), \
                pj_str(body)
            msg_body = lib.msg_body_create(pool, ctypes.byref(mtype), ctypes.byref(subtype),
                                           ctypes.byref(text))
            if not msg_body:
                lib.tdata_dec_ref(td)
                log.warning("conference_events.body_failed", room=sub.room)
                return False
            lib.write_ptr(msg + self.layout.msg_body, int(msg_body))
        status = lib.evsub_send(sub.ptr, tdata)
        if status != 0:
            log.warning("conference_events.send_failed", room=sub.room, status=status)
            return False
        return True

    def _respond(self, rdata: int, code: int, text: bytes | None = None) -> None:
        lib = self._native
        assert lib is not None
        reason = pj_str(text) if text else None
        status = lib.endpt_respond(self._endpt, None, rdata, code,
                                   ctypes.byref(reason) if reason is not None else None,
                                   None, None, None)
        if status != 0:
            lib.endpt_respond_stateless(self._endpt, rdata, code,
                                        ctypes.byref(reason) if reason is not None else None,
                                        None, None)

    # ---- pjsip callbacks (pjsua2 thread) ------------------------------------------------------

    def _on_rx_request(self, rdata: int | None) -> int:
        try:
            return 1 if rdata and self._handle_request(int(rdata)) else 0
        except Exception:
            log.exception("conference_events.request_failed")
            return 0

    def _handle_request(self, rdata: int) -> bool:
        lib, lay = self._native, self.layout
        assert lib is not None
        if not self.enabled:
            return False
        msg = lib.read_ptr_unchecked(rdata + lay.rdata_msg)
        cid = lib.read_ptr_unchecked(rdata + lay.rdata_cid)
        if not msg or not cid or lib.find_header(msg, b"Call-ID") != cid:
            # Checked on every request: a layout surprise disables us instead of crashing.
            self.enabled = False
            log.error("conference_events.disabled", problems=["rx_data layout check failed"])
            return False
        name_ptr = lib.read_ptr_unchecked(msg + lay.msg_method_name)
        name_len = lib.read_ptr_unchecked(msg + lay.msg_method_name + 8)
        if name_len != len(b"SUBSCRIBE") or lib.read(name_ptr, name_len) != b"SUBSCRIBE":
            return False
        event_hdr = lib.find_header(msg, b"Event") or lib.find_header(msg, b"o")
        if not event_hdr:
            return False  # not ours to judge: pjsua handles Event-less SUBSCRIBE
        printed = lib.print_msg(msg)
        if printed is None:
            self._respond(rdata, 413, b"Request Entity Too Large")
            return True
        req = _parse_request(printed)
        if req is None:
            return False
        event = (req.first("event") or "").split(";")[0].strip()
        if event.lower() != EVENT:
            return False
        return self._handle_subscribe(rdata, msg, req)

    def _handle_subscribe(self, rdata: int, msg: int, req: _Request) -> bool:
        to = req.first("to") or ""
        if re.search(r";\s*tag\s*=", to, re.IGNORECASE):
            self._respond(rdata, 481, b"Subscription Does Not Exist")
            return True
        expires_text = req.first("expires")  # as pjsip parsed it (a bad one never gets here)
        if expires_text is not None and not (expires_text.isdigit()
                                             and int(expires_text) < 2**31):
            self._respond(rdata, 400, b"Bad Expires")
            return True
        if req.body_len > MAX_SUBSCRIBE_BODY:
            self._respond(rdata, 413, b"Request Entity Too Large")
            return True
        accept = req.headers.get("accept")
        if accept and not _accepts(accept):
            self._respond(rdata, 406, b"Not Acceptable")
            return True
        room = unquote(req.user)
        conf = self._lookup(room) if room else None
        if conf is None:
            self._respond(rdata, 404, b"No Such Conference")
            return True
        source = via_source(req.first("via") or "")
        with self._lock:
            in_room = len(self._by_room.get(room, ()))
            from_source = sum(1 for s in self._subs.values() if s.source == source)
        decision = self._authorize(room, source, req.first("call-id") or "", in_room,
                                   from_source)  # fmt: skip
        if decision.refusal is not None:
            log.info("conference_events.refused", room=room, source=source,
                     status=decision.refusal.status, reason=decision.refusal.reason)
            self._respond(rdata, decision.refusal.status, decision.refusal.reason.encode())
            return True
        self._latest[room] = conf
        transport = via_transport(req.first("via") or "").upper()
        if transport not in self._contacts:
            self._refresh_contacts()
        local = self._contacts.get(transport) or next(iter(self._contacts.values()), None)
        if local is None or not _TOKEN.match(req.user.replace("%", "")):
            self._respond(rdata, 404 if local else 500)
            return True
        contact = f"<sip:{req.user}@{local};transport={transport.lower()}>;isfocus".encode()
        expires = int(expires_text or self._expires)
        if expires > self._expires:
            # RFC 6665 §4.2.1.1: the notifier may shorten. pjsip takes the initial duration
            # from the parsed Expires header as is, so shorten it there.
            assert self._native is not None
            hdr = self._native.find_header(msg, b"Expires")
            ctypes.c_int32.from_address(hdr + self.layout.int_hdr_ivalue).value = self._expires
            expires = self._expires
        self._accept(rdata, room, conf, contact, expires, source=source,
                     redact=decision.redact)
        return True

    def _accept(self, rdata: int, room: str, conf: ConferenceInfo, contact: bytes,
                expires: int, *, source: str = "", redact: bool = False) -> None:
        lib = self._native
        assert lib is not None
        dlg = ctypes.c_void_p()
        contact_s = pj_str(contact)
        status = lib.dlg_create_uas(lib.ua_instance(), rdata, ctypes.byref(contact_s),
                                    ctypes.byref(dlg))
        if status != 0 or not dlg.value:
            log.warning("conference_events.dialog_failed", room=room, status=status)
            self._respond(rdata, 500)
            return
        assert self._user_cb is not None
        try:
            sub_p = ctypes.c_void_p()
            status = lib.evsub_create_uas(dlg, ctypes.byref(self._user_cb), rdata, 0,
                                          ctypes.byref(sub_p))
            if status != 0 or not sub_p.value:
                log.warning("conference_events.evsub_failed", room=room, status=status)
                self._respond(rdata, 400)
                return
            sub = _Subscription(int(sub_p.value), room, source=source, redact=redact)
            with self._lock:
                self._subs[sub.ptr] = sub
                self._by_room.setdefault(room, set()).add(sub.ptr)
            status = lib.evsub_accept(sub_p, rdata, 200, None)
            if status != 0:
                log.warning("conference_events.accept_failed", room=room, status=status)
                lib.evsub_terminate(sub_p, 1)
                return
            body = sub.stream.full(sub.document(conf))
            if expires == 0:  # a fetch (RFC 6665 §4.4.3): one full NOTIFY, then it ends
                self._send_notify(sub, nat.EVSUB_STATE_TERMINATED, body, b"timeout")
            else:
                self._send_notify(sub, nat.EVSUB_STATE_ACTIVE, body)
            log.info("conference_events.subscribed", room=room, expires=expires,
                     subscribers=len(self._by_room.get(room, ())))
        finally:
            lib.dlg_dec_lock(dlg)

    def _forget(self, ptr: int) -> None:
        with self._lock:
            sub = self._subs.pop(ptr, None)
            if sub is not None:
                # pjsip moves an un-SUBSCRIBE to TERMINATED *before* on_rx_refresh, which must
                # still send the final NOTIFY; the tombstone lives until the next poll.
                self._ended[ptr] = sub
            if sub is not None:
                members = self._by_room.get(sub.room)
                if members is not None:
                    members.discard(ptr)
                    if not members:
                        del self._by_room[sub.room]

    def _on_evsub_state(self, sub: int | None, _event: int | None) -> None:
        try:
            lib = self._native
            assert lib is not None
            if sub and lib.evsub_get_state(sub) == nat.EVSUB_STATE_TERMINATED:
                self._forget(int(sub))
        except Exception:
            log.exception("conference_events.state_failed")

    def _on_rx_refresh(self, sub_p: int | None, _rdata: int | None, _code: Any,
                       _text: int | None, _hdr: int | None, _body: int | None) -> None:
        """Refresh or un-SUBSCRIBE: pjsip sends the 200, we must send a NOTIFY."""
        try:
            lib = self._native
            assert lib is not None
            ptr = int(sub_p or 0)
            sub = self._subs.get(ptr) or self._ended.pop(ptr, None)
            if sub is None:
                return
            if lib.evsub_get_state(sub.ptr) == nat.EVSUB_STATE_TERMINATED:
                self._send_notify(sub, nat.EVSUB_STATE_TERMINATED, None, b"timeout")
                self._forget(sub.ptr)
                return
            conf = self._latest.get(sub.room) or self._lookup(sub.room)
            if conf is None:
                self._send_notify(sub, nat.EVSUB_STATE_TERMINATED, None, b"noresource")
                return
            self._send_notify(sub, nat.EVSUB_STATE_ACTIVE, sub.stream.full(sub.document(conf)))
        except Exception:
            log.exception("conference_events.refresh_failed")

    def _on_server_timeout(self, sub_p: int | None) -> None:
        try:
            sub = self._subs.get(int(sub_p or 0))
            if sub is not None:
                self._send_notify(sub, nat.EVSUB_STATE_TERMINATED, None, b"timeout")
        except Exception:
            log.exception("conference_events.timeout_failed")


def _accepts(values: list[str]) -> bool:
    for value in values:
        for item in value.split(","):
            mime = item.split(";")[0].strip().lower()
            if mime in (ACCEPT, "application/*", "*/*"):
                return True
    return False


# ---- attachment to the SIP worker ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConferenceInfoUpdate:
    """Supervisor → workers: a room's new conference state; ``None`` ends the conference.

    Send with ``pool.send_extension(ConferenceInfoUpdate(room, conference_from_room(view)))``
    (every worker, since the front and any worker may hold subscriptions).
    """

    room: str
    conference: ConferenceInfo | None


def worker_hook(context: Any) -> ConferenceEventService:
    """Worker extension hook (``bridge.sip.evsub:worker_hook`` in the worker ``hooks``).

    Runs on the pjsua2 thread after start-up with the worker's ``HookContext``: installs the
    package and feeds it the :class:`ConferenceInfoUpdate` messages the supervisor sends.
    """
    rooms: dict[str, ConferenceInfo] = {}
    limits = context.spec.sip.limits
    policy = SubscribeLimits(
        policy=limits.subscribe_policy,
        per_room=limits.subscriptions_per_room,
        per_source=limits.subscriptions_per_source,
        trusted=parse_networks(limits.trusted_sources),
    )

    def authorize(room: str, source: str, call_id: str, in_room: int,
                  from_source: int) -> SubscribeDecision:  # fmt: skip
        facts = SubscriberFacts(
            source=source,
            is_caller=bool(source) and source in context.callers_of(room),
            room_public=room.lower() in context.directory.public,
            room_subscriptions=in_room,
            source_subscriptions=from_source,
            verified=context.verified_subscriber(call_id),
        )
        return decide_subscribe(policy, facts)

    service = ConferenceEventService.install(context.endpoint, rooms.get, authorize=authorize)

    def on_update(update: ConferenceInfoUpdate) -> None:
        if update.conference is None:
            rooms.pop(update.room, None)
            service.conference_ended(update.room)
        else:
            rooms[update.room] = update.conference
            service.notify_changed(update.room, update.conference)

    context.on_control(ConferenceInfoUpdate, on_update)
    return service
