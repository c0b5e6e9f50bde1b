"""Answer SIP MESSAGE requests that the bridge refuses before pjsua accepts them.

pjsua answers every MESSAGE with 200 (any content type, any Request-URI) *before* the
application callback runs, so 415/404/403 are impossible through pjsua2. This pjsip
module (ctypes, priority between the transaction layer and the dialog layer, so it sees
in-dialog and out-of-dialog requests) answers:

* 415 Unsupported Media Type + ``Accept: text/plain`` for any type but text/plain
  (stox-im: text/plain must work; richer types are refused, not silently mangled);
* out-of-dialog only: 404 for a room that is not linked; then the sender must be
  *authenticated* (digest: 401 challenge, SHA-256 and MD5) or *asserted* (a trusted peer's
  P-Asserted-Identity), not banned, and have a leg in the room, else 403 (issue 18: a From
  header says nothing). The identity it checked is kept per Call-ID for the worker
  (:meth:`MessageFilter.identity_of`), which attributes the message by it.

It also gates out-of-dialog SUBSCRIBE (the conference package, :mod:`bridge.sip.evsub`,
sits later in the chain): a From naming an account is challenged (401), a wrong credential
gets 403, and a ``verified-only`` room refuses an unverified subscriber (401 when accounts
exist, else 403), as for INVITE.

(Per-source rates are enforced earlier, by :mod:`bridge.sip.floodguard`.)

Everything else passes on to pjsua, which 200s it and calls the worker. It relies on the
struct offsets verified by :mod:`bridge.sip.evsub_native`; if they do not match, the
filter is not installed (logged) and pjsua's accept-all behaviour remains.
"""

from __future__ import annotations

import ctypes
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from bridge.core.admission import RoomDirectory
from bridge.core.caller_gate import CallerPolicy, GateAction
from bridge.core.caller_identity import CallerIdentity, admits
from bridge.logs import get_logger
from bridge.sip.sipmsg import (
    MessageInfo,
    SipParseError,
    SipRequest,
    asserted_identity,
    authorizations,
    message_info,
    parse_request,
    via_received,
)

log = get_logger(__name__)

ACCEPTED = "text/plain"
PRIORITY = 24  # after the transaction layer (16), before the UA/dialog layer (32)


MAX_REMEMBERED = 256


class MessageFilter:
    def __init__(
        self, directory: Callable[[], RoomDirectory], policy: CallerPolicy | None = None
    ) -> None:
        self._directory = directory
        self._policy = policy or CallerPolicy()
        self.installed = False
        self.refused = 0
        self._identities: OrderedDict[str, CallerIdentity] = OrderedDict()

    def identity_of(self, call_id: str) -> CallerIdentity | None:
        """The verified sender of the out-of-dialog MESSAGE or SUBSCRIBE with this Call-ID
        that this filter let through (pjsua or the conference package handles it right
        after, on the same thread)."""
        return self._identities.pop(call_id, None)

    def install(self) -> bool:
        """Register on this process's endpoint (pjsua2 thread, after libStart)."""
        from bridge.sip import evsub_native as nat
        from bridge.sip import pjmodule

        found = pjmodule.verified_endpoint("sip.message_filter.disabled")
        if found is None:
            return False
        lib, endpt = found
        self._nat, self._lib, self._endpt = nat, lib, endpt
        raw = lib.lib
        create_hdr = raw.pjsip_generic_string_hdr_create
        create_hdr.restype = ctypes.c_void_p
        create_hdr.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        pool = lib.create_pool(endpt, b"msgfilter", 512, 512)
        name, value = nat.pj_str(b"Accept"), nat.pj_str(ACCEPTED.encode())
        hdr = int(create_hdr(pool, ctypes.byref(name), ctypes.byref(value)))
        head = ctypes.create_string_buffer(64)  # a pjsip_hdr-sized list head
        head_addr = ctypes.addressof(head)
        lib.write_ptr(head_addr, hdr)  # prev
        lib.write_ptr(head_addr + 8, hdr)  # next
        lib.write_ptr(hdr, head_addr)
        lib.write_ptr(hdr + 8, head_addr)
        self._accept_list = head_addr
        if not pjmodule.register(
            lib, endpt, b"mod-sipmuc-message-filter", PRIORITY,
            "sip.message_filter.register_failed", self, name, value, head, pool,
            on_rx_request=nat.RX_CB(self._on_rx_request),
        ):  # fmt: skip
            return False
        self.installed = True
        return True

    def _on_rx_request(self, rdata: int | None) -> int:
        try:
            return 1 if rdata and self._handle(int(rdata)) else 0
        except Exception:
            log.exception("sip.message_filter.failed")
            return 0

    def _handle(self, rdata: int) -> bool:
        lib, lay = self._lib, self._nat.PINNED
        msg = lib.read_ptr_unchecked(rdata + lay.rdata_msg)
        if not msg:
            return False
        name_ptr = lib.read_ptr_unchecked(msg + lay.msg_method_name)
        name_len = lib.read_ptr_unchecked(msg + lay.msg_method_name + 8)
        method = lib.read(name_ptr, name_len) if name_len in {7, 9} else None
        if method == b"SUBSCRIBE":
            return self._subscribe(rdata, msg)
        if method != b"MESSAGE":
            return False
        printed = lib.print_msg(msg)
        if printed is None:
            self._respond(rdata, 413, b"Request Entity Too Large")
            return True
        try:
            request = parse_request(printed.decode("utf-8", errors="replace"))
        except SipParseError:
            return False
        ctype = request.get("content-type").split(";", 1)[0].strip().lower()
        if ctype and ctype != ACCEPTED:
            self._respond(rdata, 415, None, self._accept_list)
            return True
        in_dialog = "tag=" in request.get("to")
        if not in_dialog:
            return self._out_of_dialog(rdata, request)
        return False

    def _subscribe(self, rdata: int, msg: int) -> bool:
        printed = self._lib.print_msg(msg)
        if printed is None:
            return False  # the package answers 413 itself
        try:
            request = parse_request(printed.decode("utf-8", errors="replace"))
        except SipParseError:
            return False
        if "tag=" in request.get("to"):
            return False  # a refresh inside an accepted subscription
        info = message_info(request)
        directory = self._directory()
        if info.room not in directory.rooms:
            return False  # the package answers 404
        identity = self._identify(rdata, request, info, "SUBSCRIBE", b"Authentication failed")
        if identity is None:
            return True
        if not admits(self._policy.mode(info.room), identity):
            self._respond(rdata, 403, b"Verified subscribers only")
            return True
        if directory.is_banned(info.room, identity.ban_keys()):
            self._respond(rdata, 403, b"Banned from this conference")
            return True
        if identity.verified:  # the conference package counts it as an insider (issue 19)
            self._remember(info.call_id, identity)
        return False

    def _identify(
        self,
        rdata: int,
        request: SipRequest,
        info: MessageInfo,
        method: str,
        refusal: bytes,
        *,
        require_verified: bool = False,
    ) -> CallerIdentity | None:
        """Who sent an out-of-dialog request, after the caller gate; None when the gate
        answered it (401 challenge or 403 ``refusal``)."""
        policy, source = self._policy, via_received(request)
        gate = policy.gate(
            method=method, room=info.room, request_uri=request.uri,
            from_uri=request.get("from"), source_addr=source,
            authorizations=authorizations(request), now=time.time(),
            require_verified=require_verified,
        )  # fmt: skip
        if gate.action is GateAction.CHALLENGE:
            self._respond(rdata, 401, b"Unauthorized", headers=gate.headers)
            return None
        if gate.action is GateAction.REFUSE:
            log.info(
                "sip.request.refused", method=method, room=info.room, why=gate.reason, source=source
            )
            self._respond(rdata, 403, refusal)
            return None
        trusted = bool(policy.peers.match(source))
        return policy.identify(
            call_token=method.lower(), gate=gate, from_uri=info.sender_uri,
            display=info.sender_display, source_addr=source,
            asserted_identity=asserted_identity(request) if trusted else "",
        )  # fmt: skip

    def _remember(self, call_id: str, identity: CallerIdentity) -> None:
        self._identities[call_id] = identity
        while len(self._identities) > MAX_REMEMBERED:
            self._identities.popitem(last=False)

    def _out_of_dialog(self, rdata: int, request: SipRequest) -> bool:
        info = message_info(request)
        directory = self._directory()
        if info.room not in directory.rooms:
            self._respond(rdata, 404, b"Conference not found")
            return True
        identity = self._identify(
            rdata, request, info, "MESSAGE", b"Authenticated or asserted callers only",
            require_verified=True,
        )  # fmt: skip
        if identity is None:
            return True
        if not identity.verified:
            self._respond(rdata, 403, b"Authenticated or asserted callers only")
            return True
        if directory.is_banned(info.room, identity.ban_keys()):
            self._respond(rdata, 403, b"Banned from this conference")
            return True
        if not directory.is_present(info.room, identity.key):
            self._respond(rdata, 403, b"Not in this conference")
            return True
        self._remember(info.call_id, identity)
        return False

    def _respond(
        self,
        rdata: int,
        code: int,
        text: bytes | None,
        hdrs: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.refused += 1
        reason = self._nat.pj_str(text) if text else None
        ref = ctypes.byref(reason) if reason is not None else None
        pool = None
        if headers:  # pjsip clones the list into the response: a scratch pool will do
            pool = self._lib.create_pool(self._endpt, b"msgfilter-hdrs", 1024, 1024)
            hdrs, _alive = self._header_list(pool, headers)
        try:
            status = self._lib.endpt_respond(self._endpt, None, rdata, code, ref, hdrs, None, None)
            if status != 0:
                self._lib.endpt_respond_stateless(self._endpt, rdata, code, ref, hdrs, None)
        finally:
            if pool is not None:
                self._lib.release_pool(self._endpt, pool)

    def _header_list(self, pool: int, pairs: tuple[tuple[str, str], ...]) -> tuple[int, Any]:
        """A pjsip_hdr list of generic string headers (one per pair) in ``pool``."""
        nat, lib = self._nat, self._lib
        create = lib.lib.pjsip_generic_string_hdr_create
        head = ctypes.create_string_buffer(64)
        addr = ctypes.addressof(head)
        lib.write_ptr(addr, addr)
        lib.write_ptr(addr + 8, addr)
        strings = []
        for name, value in pairs:
            pn, pv = nat.pj_str(name.encode()), nat.pj_str(value.encode())
            strings += [pn, pv]
            hdr = int(create(pool, ctypes.byref(pn), ctypes.byref(pv)))
            last = lib.read_ptr_unchecked(addr)  # insert before the head: at the end
            lib.write_ptr(hdr, last)
            lib.write_ptr(hdr + 8, addr)
            lib.write_ptr(last + 8, hdr)
            lib.write_ptr(addr, hdr)
        return addr, (head, strings)
