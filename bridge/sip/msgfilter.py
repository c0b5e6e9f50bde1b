"""Answer SIP MESSAGE requests that the bridge refuses before pjsua accepts them.

pjsua answers every MESSAGE with 200 (any content type, any Request-URI) *before* the
application callback runs, so 415/404/403 are impossible through pjsua2. This pjsip
module (ctypes, priority between the transaction layer and the dialog layer, so it sees
in-dialog and out-of-dialog requests) answers:

* 415 Unsupported Media Type + ``Accept: text/plain`` for any type but text/plain
  (stox-im: text/plain must work; richer types are refused, not silently mangled);
* out-of-dialog only: 404 for a room that is not linked, 403 for a banned sender.

Everything else passes on to pjsua, which 200s it and calls the worker. It relies on the
struct offsets verified by :mod:`bridge.sip.evsub_native`; if they do not match, the
filter is not installed (logged) and pjsua's accept-all behaviour remains.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from bridge.core.admission import RoomDirectory
from bridge.logs import get_logger
from bridge.sip.sipmsg import SipParseError, message_info, parse_request

log = get_logger(__name__)

ACCEPTED = "text/plain"
PRIORITY = 24  # after the transaction layer (16), before the UA/dialog layer (32)
_KEEPALIVE: list[Any] = []  # pjsip keeps raw pointers to the module and callbacks


class MessageFilter:
    def __init__(self, directory: Callable[[], RoomDirectory]) -> None:
        self._directory = directory
        self.installed = False
        self.refused = 0

    def install(self) -> bool:
        """Register on this process's endpoint (pjsua2 thread, after libStart)."""
        from bridge.sip import evsub_native as nat

        lib = nat.Native()
        endpt = int(lib.get_endpt() or 0)
        problems = nat.verify_layout(lib, endpt, nat.PINNED) if endpt else ["no endpoint"]
        if problems:
            log.error("sip.message_filter.disabled", problems=problems)
            return False
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
        module = nat.PjsipModule()
        module.name = nat.pj_str(b"mod-sipmuc-message-filter")
        module.id = -1
        module.priority = PRIORITY
        module.on_rx_request = nat.RX_CB(self._on_rx_request)
        _KEEPALIVE.append((self, module, name, value, head, pool))
        status = lib.register_module(endpt, ctypes.byref(module))
        if status != 0:
            log.error("sip.message_filter.register_failed", status=status)
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
        if name_len != 7 or lib.read(name_ptr, 7) != b"MESSAGE":
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
            info = message_info(request)
            directory = self._directory()
            if info.room not in directory.rooms:
                self._respond(rdata, 404, b"Conference not found")
                return True
            if directory.is_banned(info.room, [info.sender_uri]):
                self._respond(rdata, 403, b"Banned from this conference")
                return True
        return False

    def _respond(self, rdata: int, code: int, text: bytes | None, hdrs: int | None = None) -> None:
        self.refused += 1
        reason = self._nat.pj_str(text) if text else None
        ref = ctypes.byref(reason) if reason is not None else None
        status = self._lib.endpt_respond(self._endpt, None, rdata, code, ref, hdrs, None, None)
        if status != 0:
            self._lib.endpt_respond_stateless(self._endpt, rdata, code, ref, hdrs, None)
