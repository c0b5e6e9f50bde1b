"""Per-source request rates, enforced before pjsua spends anything on a request.

pjsua handles a new INVITE expensively (a call slot, RTP sockets, SDP) before the
application sees it, so a flood answered in ``onIncomingCall`` still drowns the worker:
measured with ``benchmarks/flood.py``, 500 INVITEs/s from one address kept a legitimate
caller's INVITE unanswered for 10 s. This pjsip module sits right after the transaction
layer (retransmissions never reach it) and before everything else, reads the method, the
To tag and the source address (the top Via, which pjsip has already stamped with
``received=``), and answers a source over its rate statelessly with ``503`` and
Retry-After. Two token buckets per source (:class:`bridge.core.limits.TokenBuckets`): new
INVITEs, and every other request but ACK, BYE, CANCEL, PRACK and re-INVITEs. Trusted
sources are exempt. It relies on the struct offsets verified by
:mod:`bridge.sip.evsub_native`; if they do not match, it is not installed (logged) and
only the slower checks remain.
"""

from __future__ import annotations

import ctypes
import time
from collections import Counter
from typing import Any

from bridge.core.limits import TokenBuckets, in_networks, parse_networks, retry_seconds
from bridge.logs import get_logger
from bridge.sip.sipmsg import via_source

log = get_logger(__name__)

PRIORITY = 17  # after the transaction layer (16), before the message filter and the UA layer
_KEEPALIVE: list[Any] = []
_FREE = frozenset({b"ACK", b"BYE", b"CANCEL", b"PRACK"})  # end or confirm what exists
_HDR_BYTES = 256  # a pjsip_generic_string_hdr fits with room to spare


class FloodGuard:
    def __init__(
        self,
        *,
        call_burst: int,
        call_per_minute: float,
        request_burst: int,
        request_per_minute: float,
        trusted: tuple[str, ...] = (),
    ) -> None:
        self.calls = TokenBuckets(call_burst, call_per_minute)
        self.requests = TokenBuckets(request_burst, request_per_minute)
        self.trusted = parse_networks(trusted)
        self.refused: Counter[str] = Counter()  # since the worker last logged, by source
        self.installed = False
        self._retry_lists: dict[int, int] = {}

    def install(self) -> bool:
        """Register on this process's endpoint (pjsua2 thread, after libStart)."""
        from bridge.sip import evsub_native as nat
        from bridge.sip import pjmodule

        found = pjmodule.verified_endpoint("sip.flood_guard.disabled")
        if found is None:
            return False
        lib, endpt = found
        self._nat, self._lib, self._endpt, self._lay = nat, lib, endpt, nat.PINNED
        raw = lib.lib
        self._print_hdr = pjmodule.header_printer(lib)
        self._hdr_init = raw.pjsip_generic_string_hdr_init2
        self._hdr_init.restype = None
        self._hdr_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._buf = ctypes.create_string_buffer(1024)
        if not pjmodule.register(
            lib, endpt, b"mod-sipmuc-flood-guard", PRIORITY, "sip.flood_guard.register_failed",
            self, on_rx_request=nat.RX_CB(self._on_rx_request),
        ):  # fmt: skip
            return False
        self.installed = True
        return True

    def _on_rx_request(self, rdata: int | None) -> int:
        try:
            return 1 if rdata and self._handle(int(rdata)) else 0
        except Exception:
            log.exception("sip.flood_guard.failed")
            return 0

    def _header(self, ptr: int) -> bytes:
        n = self._print_hdr(ptr, self._buf, len(self._buf)) if ptr else -1
        return self._buf.raw[:n] if n > 0 else b""

    def _handle(self, rdata: int) -> bool:
        lib, lay = self._lib, self._lay
        msg = lib.read_ptr_unchecked(rdata + lay.rdata_msg)
        if not msg:
            return False
        name_ptr = lib.read_ptr_unchecked(msg + lay.msg_method_name)
        name_len = lib.read_ptr_unchecked(msg + lay.msg_method_name + 8)
        if not name_ptr or not 2 <= name_len <= 16:
            return False
        method = ctypes.string_at(name_ptr, name_len)
        if method in _FREE:
            return False
        invite = method == b"INVITE"
        if invite and b"tag=" in self._header(lib.read_ptr_unchecked(rdata + lay.rdata_cid + 16)):
            return False  # a re-INVITE in a dialog that exists (else the UA layer says 481)
        via = self._header(lib.read_ptr_unchecked(rdata + lay.rdata_cid + 24))
        source = via_source(via.decode("latin-1").partition(":")[2])
        if not source or in_networks(source, self.trusted):
            return False
        wait = (self.calls if invite else self.requests).take(source, time.monotonic())
        if not wait:
            return False
        self.refused[source] += 1
        self._respond(rdata, retry_seconds(wait))
        return True

    def _respond(self, rdata: int, retry_after: int) -> None:
        reason = self._nat.pj_str(b"Too many requests from your address")
        hdrs = self._retry_list(retry_after)
        status = self._lib.endpt_respond_stateless(self._endpt, rdata, 503,
                                                   ctypes.byref(reason), hdrs, None)
        if status != 0:
            log.warning("sip.flood_guard.respond_failed", status=status)

    def _retry_list(self, seconds: int) -> int:
        """A one-header list ``Retry-After: seconds``, built once per value (few values)."""
        seconds = min(seconds, 3600)
        head_addr = self._retry_lists.get(seconds)
        if head_addr is not None:
            return head_addr
        nat, lib = self._nat, self._lib
        name, value = nat.pj_str(b"Retry-After"), nat.pj_str(str(seconds).encode())
        hdr = ctypes.create_string_buffer(_HDR_BYTES)
        self._hdr_init(hdr, ctypes.byref(name), ctypes.byref(value))
        hdr_addr = ctypes.addressof(hdr)
        head = ctypes.create_string_buffer(64)  # a pjsip_hdr-sized list head
        head_addr = ctypes.addressof(head)
        lib.write_ptr(head_addr, hdr_addr)  # prev
        lib.write_ptr(head_addr + 8, hdr_addr)  # next
        lib.write_ptr(hdr_addr, head_addr)
        lib.write_ptr(hdr_addr + 8, head_addr)
        _KEEPALIVE.append((name, value, hdr, head))
        self._retry_lists[seconds] = head_addr
        return head_addr
