"""Answer the requests nobody else answers (RFC 3261 §8.2.1, §12.2.2).

pjsua2 silently drops a request that no pjsip module claims: an unknown method, or a BYE,
INFO, NOTIFY, UPDATE or PRACK outside any dialog. The sender then retransmits for 32 s and
never learns why. This worker hook registers a pjsip module with the lowest priority (it only
sees what every other module passed over) that answers statelessly:

* a request for a dialog that does not exist (To tag, or a dialog-only method) → ``481``;
* a known method we do not serve out of dialog (REGISTER, PUBLISH, REFER) → ``405``;
* any other method → ``501 Not Implemented``. ACK is never answered (RFC 3261 §17).

Enabled by ``bridge.sip.unhandled:worker_hook`` in ``workers.hooks`` (on by default).
"""

from __future__ import annotations

import ctypes
import re
from typing import Any

from bridge.logs import get_logger
from bridge.sip import evsub_native as nat
from bridge.sip.evsub import native

log = get_logger(__name__)

#: after pjsua's own modules (application = 64) and the conference package
PRIORITY = nat.PJSIP_MOD_PRIORITY_APPLICATION + 30
DIALOG_ONLY = frozenset({b"BYE", b"INFO", b"NOTIFY", b"UPDATE", b"PRACK", b"CANCEL"})
NOT_HERE = frozenset({b"REGISTER", b"PUBLISH", b"REFER", b"SUBSCRIBE", b"MESSAGE",
                      b"OPTIONS", b"INVITE"})  # fmt: skip
_TO_TAG = re.compile(rb"\r\n(?:To|t)[ \t]*:[^\r]*;[ \t]*tag[ \t]*=", re.IGNORECASE)
_KEEPALIVE: list[Any] = []  # pjsip keeps pointers to the module for the process lifetime


def verdict(method: bytes, has_to_tag: bool) -> tuple[int, bytes] | None:
    """The stateless answer for an unclaimed request (pure, unit-tested)."""
    if method == b"ACK":
        return None
    if has_to_tag or method in DIALOG_ONLY:
        return 481, b"Call/Transaction Does Not Exist"
    if method in NOT_HERE:
        return 405, b"Method Not Allowed"
    return 501, b"Not Implemented"


class UnhandledResponder:
    """The pjsip module; one per worker process."""

    def __init__(self) -> None:
        self.enabled = False
        self.answered = 0
        self._endpt = 0

    def install(self) -> None:
        lib = native()
        endpt = int(lib.get_endpt() or 0)
        if not endpt:
            raise RuntimeError("pjsua2 endpoint not initialised")
        problems = nat.verify_layout(lib, endpt, nat.PINNED)
        if problems:
            log.error("sip.unhandled.disabled", problems=problems)
            return
        self._endpt = endpt
        name = b"mod-unhandled-requests"
        module = nat.PjsipModule()
        module.name = nat.pj_str(name)
        module.id = -1
        module.priority = PRIORITY
        callback = nat.RX_CB(self._on_rx_request)
        module.on_rx_request = callback
        _KEEPALIVE.append((self, name, module, callback))
        status = lib.register_module(endpt, ctypes.byref(module))
        if status != 0:
            log.error("sip.unhandled.disabled", problems=[f"register_module: {status}"])
            return
        self.enabled = True

    def _on_rx_request(self, rdata: int | None) -> int:
        try:
            return 1 if rdata and self._answer(int(rdata)) else 0
        except Exception:
            log.exception("sip.unhandled.failed")
            return 0

    def _answer(self, rdata: int) -> bool:
        if not self.enabled:
            return False
        lib, lay = native(), nat.PINNED
        msg = lib.read_ptr_unchecked(rdata + lay.rdata_msg)
        if not msg:
            return False
        name_ptr = lib.read_ptr_unchecked(msg + lay.msg_method_name)
        name_len = lib.read_ptr_unchecked(msg + lay.msg_method_name + 8)
        method = lib.read(name_ptr, min(name_len, 64)) if name_ptr else None
        if method is None:
            return False
        printed = lib.print_msg(msg, 16384) or b""
        answer = verdict(method, bool(_TO_TAG.search(printed)))
        if answer is None:
            return False
        code, text = answer
        reason = nat.pj_str(text)
        lib.endpt_respond_stateless(self._endpt, rdata, code, ctypes.byref(reason), None, None)
        self.answered += 1
        log.info("sip.unhandled.answered", method=method.decode(errors="replace"), status=code)
        return True


def worker_hook(context: Any) -> UnhandledResponder:
    """Worker extension hook: install the responder on the pjsua2 thread."""
    responder = UnhandledResponder()
    responder.install()
    return responder
