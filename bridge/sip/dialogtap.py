"""Watches what a worker sends on its legs' dialogs: our tag, and our CSeq.

A BYE for a dialog whose worker died (``bridge.sip.byemsg``) needs two things pjsua2 does
not expose: the tag pjsip chose for our side (in the To of our 2xx to the INVITE) and the
highest CSeq we used (pjsip starts it at random and counts up with every MESSAGE or session
refresh we send). This pjsip module sees every outgoing message before the transport sends
it (``on_tx_request`` / ``on_tx_response``), reads Call-ID, To and CSeq of those belonging
to a watched call, and calls back. It reads ``pjsip_tx_data.msg`` and the message's
type/status through the offsets :mod:`bridge.sip.evsub_native` verifies at start-up; if they
do not match it is not installed (logged) and no leg gets a BYE after a crash.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable

from bridge.logs import get_logger

log = get_logger(__name__)

PRIORITY = 6  # below the transport layer (8): after the message is final, before the wire
PJSIP_RESPONSE_MSG = 1

#: (call_id, To header value) of a 2xx we send to an INVITE
OnAnswer = Callable[[str, str], None]
#: (call_id, CSeq number) of a request we send in a dialog
OnRequest = Callable[[str, int], None]
#: (call_id, the whole message) of an ACK we send (to the answer of a call we placed)
OnAck = Callable[[str, str], None]


class DialogTap:
    def __init__(self, on_answer: OnAnswer, on_request: OnRequest, on_ack: OnAck) -> None:
        self.on_answer = on_answer
        self.on_request = on_request
        self.on_ack = on_ack
        self.watched: set[str] = set()  # Call-IDs of this worker's legs
        self.installed = False

    def install(self) -> bool:
        """Register on this process's endpoint (pjsua2 thread, after libStart)."""
        from bridge.sip import evsub_native as nat
        from bridge.sip import pjmodule

        found = pjmodule.verified_endpoint("sip.dialog_tap.disabled")
        if found is None:
            return False
        lib, endpt = found
        self._lib, self._lay = lib, nat.PINNED
        self._print_hdr = pjmodule.header_printer(lib)
        self._buf = ctypes.create_string_buffer(2048)
        self._names = {n: nat.pj_str(n) for n in (b"Call-ID", b"To", b"CSeq")}
        if not pjmodule.register(
            lib, endpt, b"mod-sipmuc-dialog-tap", PRIORITY, "sip.dialog_tap.register_failed",
            self, on_tx_request=nat.TX_CB(self._on_tx_request),
            on_tx_response=nat.TX_CB(self._on_tx_response),
        ):  # fmt: skip
            return False
        self.installed = True
        return True

    # ---- callbacks (pjsua2 thread; never raise into pjsip) ------------------------------
    def _on_tx_request(self, tdata: int | None) -> int:
        try:
            if tdata and self.watched:
                self._request(int(tdata))
        except Exception:
            log.exception("sip.dialog_tap.failed")
        return 0

    def _on_tx_response(self, tdata: int | None) -> int:
        try:
            if tdata and self.watched:
                self._response(int(tdata))
        except Exception:
            log.exception("sip.dialog_tap.failed")
        return 0

    def _msg(self, tdata: int) -> int:
        return self._lib.read_ptr_unchecked(tdata + self._lay.tdata_msg)

    def _header(self, msg: int, name: bytes) -> str:
        ptr = int(self._lib.msg_find_hdr_by_name(msg, ctypes.byref(self._names[name]), None) or 0)
        n = self._print_hdr(ptr, self._buf, len(self._buf)) if ptr else -1
        if n <= 0:
            return ""
        return self._buf.raw[:n].decode("utf-8", "replace").partition(":")[2].strip()

    def _request(self, tdata: int) -> None:
        msg = self._msg(tdata)
        if not msg:
            return
        call_id = self._header(msg, b"Call-ID")
        if call_id not in self.watched:
            return
        number, _, method = self._header(msg, b"CSeq").partition(" ")
        if number.isdigit():
            self.on_request(call_id, int(number))
        if method.strip().upper() == "ACK":
            text = self._lib.print_msg(msg, 16384)
            if text:
                self.on_ack(call_id, text.decode("utf-8", "replace"))

    def _response(self, tdata: int) -> None:
        msg = self._msg(tdata)
        if not msg:
            return
        head = ctypes.string_at(msg, self._lay.msg_method_id + 4)
        kind = struct.unpack_from("<i", head, self._lay.msg_type)[0]
        code = struct.unpack_from("<i", head, self._lay.msg_method_id)[0]  # status line code
        if kind != PJSIP_RESPONSE_MSG or not 200 <= code <= 299:
            return
        call_id = self._header(msg, b"Call-ID")
        if call_id not in self.watched:
            return
        if self._header(msg, b"CSeq").upper().endswith("INVITE"):
            self.on_answer(call_id, self._header(msg, b"To"))
