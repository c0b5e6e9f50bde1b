"""ctypes access to the pjsip C API of our own pjproject build, and the struct layout we rely on.

``scripts/build-pjsip`` builds pjproject (pinned: 2.17) as shared libraries beside the pjsua2
module; its C functions are reached through the module's shared object, but pjsua2 offers no
API for event packages other than presence. Serving RFC 4575 therefore needs a few fields of
pjsip structs that have no accessor function. Their offsets are pinned in :data:`PINNED` and
*verified* at start-up by :func:`verify_layout` against objects pjsip builds for us, read
through a fault-safe memory probe, so a different build is detected instead of crashing:

* ``pjsip_rx_data.msg_info.msg`` / ``.cid`` (.from/.to/.via/.cseq follow): ``pjsip_parse_rdata``
  fills ``cid``..``cseq`` of a scratch rdata; they must equal the headers found by name. ``msg``
  sits two pointers before ``cid`` in the same struct and is re-checked on every request.
* ``pjsip_msg`` type and request-line method name, ``pjsip_expires_hdr.ivalue``: checked on
  the parsed probe request.
* ``pjsip_tx_data.pool`` / ``.msg``, ``pjsip_msg.body``: a request created by
  ``pjsip_endpt_create_request`` with a known body must show its pool name, method and body.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass
from typing import Any

import pjsua2

PINNED_PJSUA2_VERSION = "2.17"

vp = ctypes.c_void_p


class PjStr(ctypes.Structure):
    """``pj_str_t``: pointer + length (not NUL-terminated)."""

    _fields_ = [("ptr", ctypes.c_char_p), ("slen", ctypes.c_ssize_t)]


def pj_str(data: bytes) -> PjStr:
    return PjStr(data, len(data))


class PjsipMethod(ctypes.Structure):
    _fields_ = [("id", ctypes.c_int), ("name", PjStr)]


# int on_rx_request(pjsip_rx_data*) and friends (pjsip_module callbacks).
RX_CB = ctypes.CFUNCTYPE(ctypes.c_int, vp)
TX_CB = ctypes.CFUNCTYPE(ctypes.c_int, vp)
STATUS_VOID_CB = ctypes.CFUNCTYPE(ctypes.c_int)
LOAD_CB = ctypes.CFUNCTYPE(ctypes.c_int, vp)
TSX_CB = ctypes.CFUNCTYPE(None, vp, vp)


class PjsipModule(ctypes.Structure):
    """``pjsip_module`` (public struct, sip_module.h)."""

    _fields_ = [
        ("prev", vp), ("next", vp), ("name", PjStr), ("id", ctypes.c_int),
        ("priority", ctypes.c_int), ("load", LOAD_CB), ("start", STATUS_VOID_CB),
        ("stop", STATUS_VOID_CB), ("unload", STATUS_VOID_CB), ("on_rx_request", RX_CB),
        ("on_rx_response", RX_CB), ("on_tx_request", TX_CB), ("on_tx_response", TX_CB),
        ("on_tsx_state", TSX_CB),
    ]


EVSUB_STATE_CB = ctypes.CFUNCTYPE(None, vp, vp)
EVSUB_TSX_CB = ctypes.CFUNCTYPE(None, vp, vp, vp)
EVSUB_RX_CB = ctypes.CFUNCTYPE(None, vp, vp, ctypes.POINTER(ctypes.c_int), vp, vp, vp)
EVSUB_VOID_CB = ctypes.CFUNCTYPE(None, vp)
TIMER_CB = ctypes.CFUNCTYPE(None, vp)


class PjsipEvsubUser(ctypes.Structure):
    """``pjsip_evsub_user`` (public struct of function pointers, evsub.h)."""

    _fields_ = [
        ("on_evsub_state", EVSUB_STATE_CB), ("on_tsx_state", EVSUB_TSX_CB),
        ("on_rx_refresh", EVSUB_RX_CB), ("on_rx_notify", EVSUB_RX_CB),
        ("on_client_refresh", EVSUB_VOID_CB), ("on_server_timeout", EVSUB_VOID_CB),
    ]


# pjsip enums (stable since pjsip 1.x)
PJSIP_REQUEST_MSG = 0
PJSIP_OTHER_METHOD = 6
PJSIP_URI_IN_REQ_URI = 0
EVSUB_STATE_ACTIVE = 4
EVSUB_STATE_TERMINATED = 5
PJSIP_MOD_PRIORITY_UA_PROXY_LAYER = 32
PJSIP_MOD_PRIORITY_APPLICATION = 64


@dataclass(frozen=True, slots=True)
class Layout:
    """Byte offsets inside pjsip structs that have no accessor function."""

    rdata_msg: int  # pjsip_rx_data.msg_info.msg
    rdata_cid: int  # pjsip_rx_data.msg_info.cid; from, to, via, cseq follow (8 bytes each)
    msg_type: int  # pjsip_msg.type
    msg_method_id: int  # pjsip_msg.line.req.method.id
    msg_method_name: int  # pjsip_msg.line.req.method.name (pj_str_t)
    msg_body: int  # pjsip_msg.body
    tdata_pool: int  # pjsip_tx_data.pool
    tdata_obj_name: int  # pjsip_tx_data.obj_name (same text as the pool's name)
    tdata_msg: int  # pjsip_tx_data.msg
    pool_obj_name: int  # pj_pool_t.obj_name
    body_data: int  # pjsip_msg_body.data
    body_len: int  # pjsip_msg_body.len
    int_hdr_ivalue: int  # pjsip_generic_int_hdr.ivalue (Expires)


#: x86-64 Linux, pjproject 2.17 as scripts/build-pjsip builds it: ``offsetof`` from the 2.17
#: headers (pjsip/layout_probe.c, shipped in the wheel as ``pjsua2/LAYOUT.json`` and compared
#: by tests/sip/test_native_layout.py), and verified live by :func:`verify_layout`. The same
#: values as the PyPI pjsua2-python 2.15.1 wheel we used before.
PINNED = Layout(rdata_msg=4440, rdata_cid=4456, msg_type=0, msg_method_id=8,
                msg_method_name=16, msg_body=104, tdata_pool=16, tdata_obj_name=24,
                tdata_msg=392, pool_obj_name=16, body_data=80, body_len=88,
                int_hdr_ivalue=64)


def _fn(lib: ctypes.CDLL, name: str, restype: Any, *argtypes: Any) -> Any:
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


class Native:
    """The pjsip functions we call, typed; one instance per process."""

    def __init__(self) -> None:
        # The module's shared object, already loaded; dlsym on it also searches the pjproject
        # libraries it depends on (libpjsip.so.2 ... beside it).
        path = pjsua2._pjsua2.__file__
        self.lib = lib = ctypes.CDLL(path)
        self.get_version = _fn(lib, "pj_get_version", ctypes.c_char_p)
        pstr = ctypes.POINTER(PjStr)
        self.get_endpt = _fn(lib, "pjsua_get_pjsip_endpt", vp)
        self.register_module = _fn(lib, "pjsip_endpt_register_module", ctypes.c_int, vp, vp)
        self.unregister_module = _fn(lib, "pjsip_endpt_unregister_module", ctypes.c_int, vp,
                                     vp)
        self.register_pkg = _fn(lib, "pjsip_evsub_register_pkg", ctypes.c_int, vp, pstr,
                                ctypes.c_uint, ctypes.c_uint, pstr)
        self.ua_instance = _fn(lib, "pjsip_ua_instance", vp)
        self.dlg_create_uas = _fn(lib, "pjsip_dlg_create_uas_and_inc_lock", ctypes.c_int, vp,
                                  vp, pstr, ctypes.POINTER(vp))
        self.dlg_dec_lock = _fn(lib, "pjsip_dlg_dec_lock", None, vp)
        self.evsub_create_uas = _fn(lib, "pjsip_evsub_create_uas", ctypes.c_int, vp, vp, vp,
                                    ctypes.c_uint, ctypes.POINTER(vp))
        self.evsub_accept = _fn(lib, "pjsip_evsub_accept", ctypes.c_int, vp, vp, ctypes.c_int,
                                vp)
        self.evsub_notify = _fn(lib, "pjsip_evsub_notify", ctypes.c_int, vp, ctypes.c_int,
                                pstr, pstr, ctypes.POINTER(vp))
        self.evsub_send = _fn(lib, "pjsip_evsub_send_request", ctypes.c_int, vp, vp)
        self.evsub_get_state = _fn(lib, "pjsip_evsub_get_state", ctypes.c_int, vp)
        self.evsub_terminate = _fn(lib, "pjsip_evsub_terminate", ctypes.c_int, vp,
                                   ctypes.c_int)
        self.endpt_respond = _fn(lib, "pjsip_endpt_respond", ctypes.c_int, vp, vp, vp,
                                 ctypes.c_int, pstr, vp, vp, vp)
        self.endpt_respond_stateless = _fn(lib, "pjsip_endpt_respond_stateless", ctypes.c_int,
                                           vp, vp, ctypes.c_int, pstr, vp, vp)
        self.msg_find_hdr_by_name = _fn(lib, "pjsip_msg_find_hdr_by_name", vp, vp, pstr, vp)
        self.msg_print = _fn(lib, "pjsip_msg_print", ctypes.c_ssize_t, vp, ctypes.c_char_p,
                             ctypes.c_size_t)
        self.msg_body_create = _fn(lib, "pjsip_msg_body_create", vp, vp, pstr, pstr, pstr)
        self.parse_rdata = _fn(lib, "pjsip_parse_rdata", vp, ctypes.c_char_p, ctypes.c_size_t,
                               vp)
        self.create_pool = _fn(lib, "pjsip_endpt_create_pool", vp, vp, ctypes.c_char_p,
                               ctypes.c_size_t, ctypes.c_size_t)
        self.release_pool = _fn(lib, "pjsip_endpt_release_pool", None, vp, vp)
        self.create_request = _fn(lib, "pjsip_endpt_create_request", ctypes.c_int, vp,
                                  ctypes.POINTER(PjsipMethod), pstr, pstr, pstr, pstr, pstr,
                                  ctypes.c_int, pstr, ctypes.POINTER(vp))
        self.tdata_dec_ref = _fn(lib, "pjsip_tx_data_dec_ref", ctypes.c_int, vp)
        self.schedule_timer = _fn(lib, "pjsua_schedule_timer2_dbg", ctypes.c_int, TIMER_CB, vp,
                                  ctypes.c_uint, ctypes.c_char_p, ctypes.c_int)
        self.thread_is_registered = _fn(lib, "pj_thread_is_registered", ctypes.c_int)
        self._probe = _MemoryProbe()

    # ---- memory helpers -----------------------------------------------------------------

    def read(self, addr: int, size: int) -> bytes | None:
        """``size`` bytes at ``addr``, or ``None`` if that memory is not readable."""
        return self._probe.read(addr, size)

    def read_ptr(self, addr: int) -> int | None:
        raw = self.read(addr, 8)
        return None if raw is None else int(struct.unpack("<Q", raw)[0])

    @staticmethod
    def read_ptr_unchecked(addr: int) -> int:
        return int(ctypes.c_void_p.from_address(addr).value or 0)

    @staticmethod
    def write_ptr(addr: int, value: int) -> None:
        ctypes.c_void_p.from_address(addr).value = value

    def find_header(self, msg: int, name: bytes) -> int:
        s = pj_str(name)
        return int(self.msg_find_hdr_by_name(msg, ctypes.byref(s), None) or 0)

    def print_msg(self, msg: int, limit: int = 65536) -> bytes | None:
        buf = ctypes.create_string_buffer(limit)
        n = self.msg_print(msg, buf, limit)
        return None if n < 0 else buf.raw[:n]


class _MemoryProbe:
    """Fault-safe reads: the kernel returns EFAULT from write(2) for unmapped addresses."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._write = self._libc.write
        self._write.argtypes = [ctypes.c_int, vp, ctypes.c_size_t]
        self._write.restype = ctypes.c_ssize_t
        self._r, self._w = os.pipe()

    def read(self, addr: int, size: int) -> bytes | None:
        if addr < 4096 or size > 4096:
            return None
        n = self._write(self._w, addr, size)
        if n <= 0:
            return None
        data = os.read(self._r, n)
        return data if n == size else None


# ---- layout verification -------------------------------------------------------------------

_PROBE_SUBSCRIBE = (
    b"SUBSCRIBE sip:layout-probe@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-layout-probe\r\n"
    b"From: <sip:probe@127.0.0.1>;tag=probe\r\n"
    b"To: <sip:layout-probe@127.0.0.1>\r\n"
    b"Call-ID: layout-probe-call-id\r\n"
    b"CSeq: 1 SUBSCRIBE\r\n"
    b"Event: conference\r\n"
    b"Expires: 1234567\r\n"
    b"Content-Length: 0\r\n\r\n"
)
_RDATA_SCRATCH = 65536
_PROBE_BODY = b"layout-probe-body"


def _u32(raw: bytes | None) -> int | None:
    return None if raw is None else int(struct.unpack("<I", raw[:4])[0])


def _check_msg_method(native: Native, layout: Layout, msg: int, method: bytes) -> str | None:
    head = native.read(msg, layout.msg_method_name + 16)
    if head is None:
        return "pjsip_msg unreadable"
    if _u32(head[layout.msg_type:]) != PJSIP_REQUEST_MSG:
        return "pjsip_msg.type is not REQUEST"
    name_ptr = native.read_ptr(msg + layout.msg_method_name)
    name_len = native.read_ptr(msg + layout.msg_method_name + 8)
    if name_ptr is None or name_len != len(method):
        return f"pjsip_msg method name length {name_len} != {len(method)}"
    if native.read(name_ptr, len(method)) != method:
        return "pjsip_msg method name text differs"
    return None


def verify_layout(native: Native, endpt: int, layout: Layout) -> list[str]:
    """Problems found checking ``layout`` against live pjsip objects (empty list: all good).

    Only reads memory through the fault-safe probe before a pointer is known good, so a wrong
    layout yields a list of problems, never a crash.
    """
    problems: list[str] = []
    version = library_version(native)
    if version != PINNED_PJSUA2_VERSION:
        problems.append(f"pjproject {version} is not the pinned {PINNED_PJSUA2_VERSION}")
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        problems.append("not a 64-bit process")
        return problems
    pool = native.create_pool(endpt, b"evsub-layout", 4000, 4000)
    if not pool:
        return [*problems, "could not create a pjsip pool"]
    try:
        problems += _verify_rdata(native, layout, pool)
        problems += _verify_tdata(native, endpt, layout)
    finally:
        native.release_pool(endpt, pool)
    return problems


def library_version(native: Native) -> str:
    """pjlib's own version string (``pj_get_version``), e.g. ``2.17``: the C code we call."""
    raw = native.get_version()
    return raw.decode("ascii", "replace") if raw else ""


def _verify_rdata(native: Native, layout: Layout, pool: int) -> list[str]:
    scratch = ctypes.create_string_buffer(_RDATA_SCRATCH)
    base = ctypes.addressof(scratch)
    native.write_ptr(base, pool)  # tp_info.pool is the first member of pjsip_rx_data
    text = ctypes.create_string_buffer(_PROBE_SUBSCRIBE, len(_PROBE_SUBSCRIBE) + 1)
    msg = int(native.parse_rdata(text, len(_PROBE_SUBSCRIBE), base) or 0)
    if not msg:
        return ["pjsip_parse_rdata failed on the probe request"]
    want = [native.find_header(msg, n) for n in (b"Call-ID", b"From", b"To", b"Via", b"CSeq")]
    if not all(want):
        return ["probe request lacks headers after parsing"]
    end = layout.rdata_cid + 8 * len(want)
    if end > _RDATA_SCRATCH or layout.rdata_msg + 8 > _RDATA_SCRATCH:
        return ["rdata offsets beyond any plausible pjsip_rx_data"]
    got = list(struct.unpack_from(f"<{len(want)}Q", scratch.raw, layout.rdata_cid))
    problems = []
    if got != want:
        problems.append(f"pjsip_rx_data.msg_info.cid..cseq not at {layout.rdata_cid}")
    if layout.rdata_cid - layout.rdata_msg != 16:
        problems.append("pjsip_rx_data.msg_info.msg must be two pointers before cid")
    bad = _check_msg_method(native, layout, msg, b"SUBSCRIBE")
    if bad:
        problems.append(bad)
    expires = native.find_header(msg, b"Expires")
    if not expires or _u32(native.read(expires + layout.int_hdr_ivalue, 4)) != 1234567:
        problems.append(f"pjsip_expires_hdr.ivalue not at {layout.int_hdr_ivalue}")
    return problems


def _verify_tdata(native: Native, endpt: int, layout: Layout) -> list[str]:
    method = PjsipMethod(PJSIP_OTHER_METHOD, pj_str(b"NOTIFY"))
    target, peer = pj_str(b"sip:layout-probe@127.0.0.1"), pj_str(b"<sip:probe@127.0.0.1>")
    call_id, body = pj_str(b"layout-probe-call-id"), pj_str(_PROBE_BODY)
    tdata = vp()
    status = native.create_request(endpt, ctypes.byref(method), ctypes.byref(target),
                                   ctypes.byref(peer), ctypes.byref(target),
                                   ctypes.byref(peer), ctypes.byref(call_id), 1,
                                   ctypes.byref(body), ctypes.byref(tdata))
    if status != 0 or not tdata.value:
        return [f"pjsip_endpt_create_request failed ({status})"]
    td = int(tdata.value)
    problems: list[str] = []
    try:
        pool = native.read_ptr(td + layout.tdata_pool)
        own_name = native.read(td + layout.tdata_obj_name, 32)
        pool_name = None if pool is None else native.read(pool + layout.pool_obj_name, 32)
        if own_name is None or not own_name.startswith(b"tdta") or pool_name != own_name:
            problems.append(f"pjsip_tx_data.pool not at {layout.tdata_pool}")
        msg = native.read_ptr(td + layout.tdata_msg)
        bad = ("pjsip_tx_data.msg unreadable" if not msg
               else _check_msg_method(native, layout, msg, b"NOTIFY"))
        if bad:
            problems.append(f"pjsip_tx_data.msg not at {layout.tdata_msg}: {bad}")
            return problems
        assert msg is not None
        body_ptr = native.read_ptr(msg + layout.msg_body)
        data_ptr = None if not body_ptr else native.read_ptr(body_ptr + layout.body_data)
        length = None if not body_ptr else _u32(native.read(body_ptr + layout.body_len, 4))
        if (data_ptr is None or length != len(_PROBE_BODY)
                or native.read(data_ptr, len(_PROBE_BODY)) != _PROBE_BODY):
            problems.append(f"pjsip_msg.body not at {layout.msg_body}")
        printed = native.print_msg(msg) if not problems else None
        if printed is not None and _PROBE_BODY not in printed:
            problems.append("printed probe request lacks its body")
    finally:
        native.tdata_dec_ref(td)
    return problems
