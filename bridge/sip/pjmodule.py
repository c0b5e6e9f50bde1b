"""Putting one of our pjsip modules (flood guard, message filter, dialog tap) on this process's
endpoint through ctypes: the endpoint's struct layout is checked first, and the module and its
callbacks are kept alive for the life of the process (pjsip holds raw pointers to them)."""

from __future__ import annotations

import ctypes
from typing import Any

from bridge.logs import get_logger
from bridge.sip import evsub_native as nat

log = get_logger("bridge.sip.pjmodule")

_KEEPALIVE: list[Any] = []


def verified_endpoint(event: str) -> tuple[nat.Native, int] | None:
    """This process's endpoint with its layout matching :data:`nat.PINNED`; None (logged as
    ``event``) otherwise: reading structs at wrong offsets would corrupt memory."""
    lib = nat.Native()
    endpt = int(lib.get_endpt() or 0)
    problems = nat.verify_layout(lib, endpt, nat.PINNED) if endpt else ["no endpoint"]
    if problems:
        log.error(event, problems=problems)
        return None
    return lib, endpt


def register(
    lib: nat.Native,
    endpt: int,
    name: bytes,
    priority: int,
    event: str,
    *keep: Any,
    **callbacks: Any,
) -> bool:
    """Register a module ``name`` at ``priority`` with ``callbacks`` (PjsipModule fields such as
    ``on_rx_request``); ``keep`` are objects pjsip will point into. False (logged as
    ``event``) when pjsip refuses it."""
    module = nat.PjsipModule()
    module.name = nat.pj_str(name)
    module.id = -1
    module.priority = priority
    for field, callback in callbacks.items():
        setattr(module, field, callback)
    _KEEPALIVE.append((module, callbacks, keep))
    status = lib.register_module(endpt, ctypes.byref(module))
    if status != 0:
        log.error(event, status=status)
        return False
    return True


def header_printer(lib: nat.Native) -> Any:
    """``pjsip_hdr_print_on(hdr, buf, size)``: a header as its wire text, length or -1."""
    print_hdr = lib.lib.pjsip_hdr_print_on
    print_hdr.restype = ctypes.c_int
    print_hdr.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    return print_hdr
