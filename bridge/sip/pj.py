"""The thin layer that touches pjsua2 (no type stubs: ``Any`` stops at this boundary).

Only the worker process imports this module. Rules learnt the hard way (DESIGN §5):
one thread owns pjsua2 (``threadCnt=0``, ``mainThreadOnly``, loop on ``libHandleEvents``);
audio callbacks run on pjmedia's clock thread; keep a Python reference to every ``Call``;
never ``bytes(frame.buf)`` (≈340 µs): frames are moved through the ``std::vector``'s own
memory with ``ctypes.memmove`` (≈3–5 µs).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pjsua2 as _pjsua2
from numpy.typing import NDArray

from bridge.config import DialOutSettings
from bridge.logs import get_logger
from bridge.privileges import is_fifo
from bridge.sip import codecs, pjlog, secure
from bridge.sip import evsub_native as nat
from mixer.clock import grid_deadline
from mixer.rings import LegPort

pj: Any = _pjsua2
log = get_logger(__name__)

SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's bundle (ca-certificates)

FRAME_AUDIO: int = int(pj.PJMEDIA_FRAME_TYPE_AUDIO)
DTMF_RFC4733: int = int(pj.PJSUA_DTMF_METHOD_RFC2833)
DTMF_INFO: int = int(pj.PJSUA_DTMF_METHOD_SIP_INFO)
MEDIA_ACTIVE: int = int(pj.PJSUA_CALL_MEDIA_ACTIVE)
MEDIA_AUDIO: int = int(pj.PJMEDIA_TYPE_AUDIO)
STATE_CONFIRMED: int = int(pj.PJSIP_INV_STATE_CONFIRMED)
STATE_DISCONNECTED: int = int(pj.PJSIP_INV_STATE_DISCONNECTED)
STATE_EARLY: int = int(pj.PJSIP_INV_STATE_EARLY)
STATE_INCOMING: int = int(pj.PJSIP_INV_STATE_INCOMING)

BRIDGE_RATE = codecs.BRIDGE_RATE  # pjmedia conference bridge; ports run at their codec's rate

_memmove = ctypes.memmove


_VECTOR_BOUNDS = ctypes.c_size_t * 2  # libstdc++ std::vector: begin, end, end of storage


def vector_data(vec: Any) -> tuple[int, int]:
    """(address, length) of a SWIG ``std::vector<unsigned char>``'s storage (libstdc++)."""
    begin, end = _VECTOR_BOUNDS.from_address(int(vec.this))
    return begin, end - begin


class StructlogWriter(pj.LogWriter):  # type: ignore[misc]
    """PJSIP's log lines → structlog (event ``sip.pjsip``), so production logs are all JSON.

    With ``mainThreadOnly`` pjsua2 queues lines from other threads and delivers them on the
    thread that owns pjsua2, inside its bound context (``worker=…``). The endpoint deletes
    its writer in ``libDestroy``: ownership is handed to C++ (``__disown__``) so Python never
    frees it a second time.
    """

    def __init__(self) -> None:
        super().__init__()
        self._log = get_logger("pjsip")

    def write(self, entry: Any) -> None:
        try:
            line = pjlog.parse(int(entry.level), str(entry.msg))
            self._log.log(
                line.level, pjlog.EVENT, pj_level=line.pj_level, sender=line.sender,
                text=line.text,
            )
        except Exception:  # never raise into pjsip
            return


_PJ_LOG_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
_LOG_DECOR = int(pj.PJ_LOG_HAS_SENDER | pj.PJ_LOG_HAS_SPACE)
_pjsip_log = get_logger("pjsip")


def _pjlib_log_func(level: int, data: bytes | None, length: int) -> None:
    """pjlib's own log function while no endpoint (and so no writer) exists."""
    with contextlib.suppress(Exception):
        line = pjlog.parse(level, (data or b"")[:length].decode("utf-8", "replace"))
        _pjsip_log.log(
            line.level, pjlog.EVENT, pj_level=level, sender=line.sender, text=line.text
        )


_pjlib_log_cb = _PJ_LOG_FUNC(_pjlib_log_func)  # pjlib keeps the pointer: never freed


def route_pjlib_log(level: int) -> None:
    """Before ``libCreate`` and after ``libDestroy`` (pjsua2 then resets pjlib to printing
    on stdout): pjlib's lines up to ``level`` go to structlog too."""
    lib = shared_library()
    for name, argtypes, arg in (
        ("pj_log_set_level", [ctypes.c_int], level),
        ("pj_log_set_decor", [ctypes.c_uint], _LOG_DECOR),
        ("pj_log_set_log_func", [_PJ_LOG_FUNC], _pjlib_log_cb),
    ):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, None
        fn(arg)


def create_endpoint(
    *,
    calls: int,
    log_level: int,
    user_agent: str,
    jitter: tuple[int, int, int, int] | None = None,
    quality: int = 0,
    bridge_rate: int = BRIDGE_RATE,
) -> Any:
    """libCreate + libInit for a headless media worker (caller adds transports, starts).

    ``jitter`` = (init, min prefetch, max prefetch, size) of pjmedia's jitter buffer in ms,
    -1 for PJSIP's default of each. ``quality`` (1–10, 0 = PJSIP's default 8) picks the
    conference bridge's resampler: 3–4 the small sinc filter, < 3 linear, else the large one.
    ``bridge_rate``: the conference bridge's clock (48 kHz wideband, 8 kHz narrowband).
    """
    route_pjlib_log(log_level)
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    writer = StructlogWriter()
    cfg.logConfig.writer = writer
    writer.__disown__()  # the endpoint deletes it in libDestroy
    cfg.logConfig.decor = _LOG_DECOR
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = calls
    cfg.uaConfig.userAgent = user_agent
    cfg.logConfig.level = log_level
    cfg.logConfig.consoleLevel = log_level
    cfg.medConfig.clockRate = bridge_rate
    cfg.medConfig.sndClockRate = bridge_rate
    cfg.medConfig.channelCount = 1
    cfg.medConfig.audioFramePtime = 20
    cfg.medConfig.noVad = True
    cfg.medConfig.ecTailLen = 0  # no echo canceller: we never play into a microphone
    cfg.medConfig.maxMediaPorts = 2 * calls + 8
    if quality:
        cfg.medConfig.quality = quality
    if jitter is not None:
        med = cfg.medConfig
        med.jbInit, med.jbMinPre, med.jbMaxPre, med.jbMax = jitter
    ep.libInit(cfg)
    return ep


#: ``sip.tls_min_version`` → the TLS versions pjsip's OpenSSL 3 may negotiate
TLS_PROTOCOLS = {
    "1.2": int(pj.PJ_SSL_SOCK_PROTO_TLS1_2 | pj.PJ_SSL_SOCK_PROTO_TLS1_3),
    "1.3": int(pj.PJ_SSL_SOCK_PROTO_TLS1_3),
}
SRTP_USE = {
    "off": int(pj.PJMEDIA_SRTP_DISABLED),
    "optional": int(pj.PJMEDIA_SRTP_OPTIONAL),
    "mandatory": int(pj.PJMEDIA_SRTP_MANDATORY),
}


def add_transports(
    ep: Any,
    *,
    host: str,
    public: str,
    port: int,
    tls_port: int,
    cert: str | None,
    key: str | None,
    tls_min_version: str = "1.2",
    transports: Collection[str] = ("udp", "tcp", "tls"),
    ca_file: str | None = None,
) -> None:
    """UDP and TCP on ``port`` and TLS (1.2 and 1.3, or 1.3 only) on ``tls_port`` (with a
    certificate), each only if named in ``transports``: a transport the operator turned off
    does not listen.

    ``public`` is what the transports publish (Via sent-by, Contact): the address callers
    reach, which differs from the bound one behind NAT or with a wildcard bind. pjsip refuses
    a TCP/TLS listener that would publish 0.0.0.0 (PJ_EINVAL).

    TLS verifies the peer's certificate when we connect out (dial-out): against ``ca_file``
    or the system bundle; an unverifiable server fails the call instead of talking to it.
    """
    kinds = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP}
    for name, kind in kinds.items():
        if name not in transports:
            continue
        tcfg = pj.TransportConfig()
        tcfg.port = port
        tcfg.boundAddress = host
        tcfg.publicAddress = public
        ep.transportCreate(kind, tcfg)
    if "tls" in transports and tls_port and cert and key:
        tcfg = pj.TransportConfig()
        tcfg.port = tls_port
        tcfg.boundAddress = host
        tcfg.publicAddress = public
        tcfg.tlsConfig.certFile = cert
        tcfg.tlsConfig.privKeyFile = key
        tcfg.tlsConfig.proto = TLS_PROTOCOLS[tls_min_version]
        # no bundle at all: nothing verifies, so every server is refused (fails closed)
        ca = ca_file or (SYSTEM_CA_FILE if os.path.exists(SYSTEM_CA_FILE) else "")
        if ca:
            tcfg.tlsConfig.CaListFile = ca
        tcfg.tlsConfig.verifyServer = True
        ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)


def set_codec_priorities(ep: Any) -> list[str]:
    """Apply :data:`bridge.sip.codecs.CODECS` (opus, G.722, PCMU, PCMA); every other codec
    pjsua knows is disabled. Returns the enabled codec ids, best first."""
    enabled: list[tuple[int, str]] = []
    for info in ep.codecEnum2():
        cid = str(info.codecId)
        prio = codecs.pjsua_priority(cid)
        ep.codecSetPriority(cid, prio)
        if prio:
            enabled.append((prio, cid))
    return [cid for _, cid in sorted(enabled, reverse=True)]


def header(name: str, value: str) -> Any:
    h = pj.SipHeader()
    h.hName = name
    h.hValue = value
    return h


def call_op(
    status: int = 0,
    reason: str = "",
    headers: dict[str, str] | tuple[tuple[str, str], ...] | None = None,
) -> Any:
    """``headers``: a dict, or pairs when a name repeats (two WWW-Authenticate)."""
    op = pj.CallOpParam(True)
    if status:
        op.statusCode = status
    if reason:
        op.reason = reason
    pairs = headers.items() if isinstance(headers, dict) else (headers or ())
    for name, value in pairs:
        op.txOption.headers.append(header(name, value))
    return op


def audio_format(rate: int) -> Any:
    fmt = pj.MediaFormatAudio()
    fmt.init(pj.PJMEDIA_FORMAT_PCM, rate, 1, 20000, 16)
    return fmt


class FramePort(pj.AudioMediaPort):  # type: ignore[misc]
    """One leg's audio: what the caller says → input ring; mix (+ cue) → the caller.

    Both callbacks run on pjmedia's clock thread and cost a few µs each. ``leg_port`` is
    swapped atomically from the pjsua2 thread (attach / detach); a detached port plays
    silence and drops what it hears.
    """

    realtime_tried = False

    def __init__(self, name: str, rate: int = BRIDGE_RATE) -> None:
        super().__init__()
        self.rate = rate
        self.samples = rate // 50
        self.nbytes = self.samples * 2
        self.leg_port: LegPort | None = None
        #: the ring port of an ended leg: unmapped by destroy_port() once no callback can run
        self.retired_leg_port: LegPort | None = None
        self._work = np.zeros(self.samples, dtype=np.int32)
        self._cue_mix = np.zeros(self.samples, dtype=np.int16)
        self._cue_addr = int(self._cue_mix.ctypes.data)
        self._silence = np.zeros(self.samples, dtype=np.int16)
        self._silence_addr = int(self._silence.ctypes.data)
        self._tx_vec = pj.ByteVector()
        self._tx_vec.resize(self.nbytes)
        self._tx_addr, _ = vector_data(self._tx_vec)
        self._cue: deque[NDArray[np.int16]] = deque()
        self._cxx_deleted = False  # destroy_port() ran: the C++ half is gone
        self.frames_in = 0
        self.frames_out = 0
        self.errors = 0
        self.createPort(name, audio_format(rate))

    def play(self, frames: tuple[NDArray[np.int16], ...]) -> None:
        """Overlay a cue on what this caller hears (called from any thread)."""
        self._cue.extend(frames)

    def _failed(self) -> None:
        # never raise into SWIG. (Before destroy_port, pjmedia could call a port whose
        # Python half was being deallocated: its attributes were gone, see issue 22.)
        if "errors" in self.__dict__:
            self.errors += 1

    def onFrameReceived(self, frame: Any) -> None:  # noqa: N802
        # straight from the std::vector's storage into the ring row: one memmove (measured
        # 4.3 → 2.2 µs per call with the numpy copy and checks of write_received)
        try:
            lp = self.leg_port
            if lp is None:
                return
            addr, size = vector_data(frame.buf)
            if size >= self.nbytes and frame.type == FRAME_AUDIO:
                lp.write_from(addr)
            else:
                lp.write_from(self._silence_addr)
            self.frames_in += 1
        except Exception:
            self._failed()

    def onFrameRequested(self, frame: Any) -> None:  # noqa: N802
        try:
            if not FramePort.realtime_tried:
                FramePort.realtime_tried = True
                _try_realtime()
            lp = self.leg_port
            src = lp.read_mixed_address() if lp is not None else 0
            if not src:
                src = self._silence_addr
            if self._cue:
                cue = self._cue.popleft()
                heard = self._silence if lp is None or src == self._silence_addr else lp.last
                np.add(cue, heard, out=self._work)
                np.clip(self._work, -32768, 32767, out=self._work)
                self._cue_mix[:] = self._work
                src = self._cue_addr
            _memmove(self._tx_addr, src, self.nbytes)
            frame.buf = self._tx_vec
            frame.size = self.nbytes
            frame.type = FRAME_AUDIO
            self.frames_out += 1
        except Exception:
            self._failed()


CLOCK_PRIORITY = 20  # SCHED_FIFO priority of the media clock thread


def _try_realtime(priority: int = CLOCK_PRIORITY) -> bool:
    """SCHED_FIFO for the media clock thread when permitted (DESIGN §5: p99 lateness)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, OSError):
        return False
    return True


class _PjFrame(ctypes.Structure):
    """``pjmedia_frame`` (pjmedia/frame.h, 2.17): type, buf, size, timestamp, bit_info."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buf", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
        ("timestamp", ctypes.c_uint64),
        ("bit_info", ctypes.c_uint32),
    ]


@dataclass(frozen=True, slots=True)
class MediaClockStats:
    """Counters of a worker's media clock (grid-aligned mode)."""

    ticks: int
    late: int  # started more than a quarter period after its grid instant
    skipped: int  # grid instants given up because the thread was > 2 periods behind
    max_lateness_s: float
    realtime: bool
    busy_s: float = 0.0  # total time inside pjmedia_port_get_frame (every leg's audio work)
    max_busy_s: float = 0.0  # the longest single tick


class MediaClock:
    """Drives the pjmedia conference bridge of this endpoint on the node-wide tick grid.

    Replaces the null sound device's clock thread, whose phase is arbitrary: one Python
    thread (SCHED_FIFO when permitted) calls ``pjmedia_port_get_frame`` on the bridge's
    master port at ``k·20 ms + phase``. ctypes releases the GIL for the call; the
    :class:`FramePort` callbacks retake it on this thread, exactly as on pjmedia's own.
    """

    def __init__(
        self, master_port: int, samples: int, *, phase_s: float = 0.0, period_s: float = 0.02
    ) -> None:
        lib = shared_library()
        self._get_frame = lib.pjmedia_port_get_frame
        self._get_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(_PjFrame)]
        self._get_frame.restype = ctypes.c_int
        self._port = master_port
        self._samples = samples
        self._buf = ctypes.create_string_buffer(samples * 2)
        self.period_s, self.phase_s = period_s, phase_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="media-clock", daemon=True)
        self._ticks = self._late = self._skipped = 0
        self._max_late = 0.0
        self._busy = self._max_busy = 0.0
        self._realtime = False
        self.errors = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def thread_id(self) -> int:
        """Native id of the clock thread (the supervisor may set its priority for us)."""
        return self._thread.native_id or 0

    def stats(self) -> MediaClockStats:
        # asked each time: the supervisor may have granted SCHED_FIFO after our own try
        realtime = self._realtime or is_fifo(self.thread_id)
        return MediaClockStats(
            self._ticks, self._late, self._skipped, self._max_late, realtime,
            self._busy, self._max_busy,
        )  # fmt: skip

    def _run(self) -> None:
        register_thread("media-clock")
        self._realtime = _try_realtime()
        FramePort.realtime_tried = True
        frame = _PjFrame()
        addr = ctypes.addressof(self._buf)
        period, late_after = self.period_s, self.period_s / 4
        deadline = grid_deadline(time.monotonic(), period, self.phase_s)
        ts = 0
        get_frame, port, nbytes = self._get_frame, self._port, self._samples * 2
        while not self._stop.is_set():
            now = time.monotonic()
            if now < deadline:
                time.sleep(deadline - now)  # clock_nanosleep on CLOCK_MONOTONIC
                continue
            lateness = now - deadline
            self._max_late = max(self._max_late, lateness)
            if lateness > late_after:
                self._late += 1
            if lateness > 2 * period:
                missed = int(lateness // period)
                self._skipped += missed
                deadline += missed * period
                ts += missed * self._samples
            frame.type = FRAME_AUDIO
            frame.buf = addr
            frame.size = nbytes
            frame.timestamp = ts
            frame.bit_info = 0
            if get_frame(port, ctypes.byref(frame)) != 0:
                self.errors += 1
            busy = time.monotonic() - now
            self._busy += busy
            self._max_busy = max(self._max_busy, busy)
            ts += self._samples
            self._ticks += 1
            deadline += period


def use_aligned_clock(ep: Any, *, phase_s: float, bridge_rate: int = BRIDGE_RATE) -> MediaClock:
    """No sound device; a :class:`MediaClock` drives the bridge (call on the pjsua2 thread)."""
    ep.audDevManager().setNoDev()
    fn = shared_library().pjsua_set_no_snd_dev
    fn.argtypes = []
    fn.restype = ctypes.c_void_p
    master = fn()  # idempotent: returns the conference bridge's master port
    if not master:
        raise RuntimeError("pjsua_set_no_snd_dev returned no master port")
    return MediaClock(int(master), bridge_rate // 50, phase_s=phase_s)  # samples per 20 ms


class BridgeAccount(pj.Account):  # type: ignore[misc]
    """Forwards incoming calls and out-of-dialog MESSAGEs to the worker."""

    def __init__(self, on_call: Callable[[Any], None], on_message: Callable[[Any], None]) -> None:
        super().__init__()
        self._on_call = on_call
        self._on_message = on_message

    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
        self._on_call(prm)

    def onInstantMessage(self, prm: Any) -> None:  # noqa: N802
        self._on_message(prm)

    def onIncomingSubscribe(self, prm: Any) -> None:  # noqa: N802
        """pjsua would accept any presence SUBSCRIBE and send NOTIFYs to whoever asks (an
        amplifier on UDP); a conference serves only ``Event: conference`` (bridge.sip.evsub)."""
        prm.code = 489
        prm.reason = "Bad Event"


class BridgeCall(pj.Call):  # type: ignore[misc]
    """A pjsua2 call whose callbacks go to one handler object (the worker's leg)."""

    def __init__(self, account: Any, call_id: int, handler: Any) -> None:
        super().__init__(account, call_id)
        self.handler = handler

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        self.handler.on_call_state(self)

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        self.handler.on_media_state(self)

    def onDtmfDigit(self, prm: Any) -> None:  # noqa: N802
        self.handler.on_dtmf(self, str(prm.digit), int(prm.method))

    def onInstantMessage(self, prm: Any) -> None:  # noqa: N802
        self.handler.on_dialog_message(self, prm)


def source_host(rdata: Any) -> str:
    """The IP address a request came from (``[::1]:5060`` → ``::1``), "" if unknown."""
    with contextlib.suppress(Exception):
        host = str(rdata.srcAddress).rpartition(":")[0]
        return host.strip("[]")
    return ""


def source_address(rdata: Any) -> tuple[str, int]:
    """(IP address, port) a request came from (("", 0) if unknown)."""
    with contextlib.suppress(Exception):
        host, _, port = str(rdata.srcAddress).rpartition(":")
        return host.strip("[]"), int(port)
    return "", 0


def rx_transport(rdata: Any) -> str:
    """``udp``/``tcp``/``tls``: the transport a request really arrived on ("" if unknown)."""
    with contextlib.suppress(Exception):
        name = nat.transport_type_name(nat.shared(), int(rdata.pjRxData), nat.PINNED)
        return secure.transport_word(name) or ""
    return ""


def srtp_active(call: Any) -> bool:
    """pjmedia's SRTP session is active on the call's audio (pjsua's call dump says so)."""
    with contextlib.suppress(Exception):
        return secure.srtp_active(str(call.dump(True, "")))
    return False


def is_active(call: Any) -> bool:
    try:
        return bool(call.isActive())
    except Exception:
        return False


def error_text(exc: BaseException) -> str:
    """``str()`` of a pjsua2 ``Error`` is empty; its reason names the pjsip status."""
    reason = getattr(exc, "reason", "")
    status = getattr(exc, "status", None)
    if reason:
        return f"{reason} (status={status})" if status is not None else str(reason)
    return str(exc) or type(exc).__name__


def destroy_call(call: Any) -> None:
    """Delete an ended call's C++ object now, while its call id is free.

    pjsua reuses call ids, and ``~Call`` clears the user data of, and hangs up, whatever
    call holds the id when it runs. Left to Python, a wrapper in a reference cycle (call →
    handler → leg → call) is freed by a later collection, possibly after a new caller got
    the id: that caller is cut off and its callbacks never arrive (soak, minute 8). The
    proxy is disowned by the delete and must not be used afterwards.
    """
    handler = getattr(call, "handler", None)
    leg = getattr(handler, "leg", None)
    if leg is not None and getattr(leg, "call", None) is call:
        leg.call = None  # a stale leg must fail loudly, not touch freed memory
    call.handler = None
    pj._pjsua2.delete_Call(call)


def destroy_port(port: FramePort) -> None:
    """Delete a frame port's C++ half while its Python half is whole (pjsua2 thread).

    The conference bridge calls a port's ``onFrameReceived`` / ``onFrameRequested`` on the
    media clock thread, under the port's group lock, until ``~AudioMediaPort`` clears its
    back-pointer under that lock. Left to Python, the C++ destructor runs from inside the
    proxy's deallocation (reference count already 0, ``__dict__`` cleared) with the GIL
    released (SWIG ``-threads``): a callback already holding the group lock then calls a
    method on the dying object, the call's temporary reference drops it to 0 again and it
    is deallocated a second time — a double free in Python's small-object allocator, which
    crashed workers later in ``pymalloc_alloc`` (issue 22). Deleted here, first, the
    destructor waits for any callback in flight (the object is alive for it), and no
    callback can start afterwards. The proxy is disowned; only its Python attributes may
    be read afterwards. The leg's ring segment is unmapped only then, never under a
    callback that may still write into it.
    """
    if getattr(port, "_cxx_deleted", False):
        return
    lp, port.leg_port = port.leg_port or port.retired_leg_port, None
    port.retired_leg_port = None
    port._cxx_deleted = True
    pj._pjsua2.delete_AudioMediaPort(port)
    if lp is not None:  # no callback runs or can start now: the ring segment may go
        with contextlib.suppress(Exception):
            lp.close()


def bury_ports(ports: list[FramePort]) -> int:
    """Free ended legs' frame ports (pjsua2 thread): :func:`destroy_port` on each, then drop
    them; returns how many failed (their Python halves are dropped all the same)."""
    failed = 0
    for port in ports:
        try:
            destroy_port(port)
        except Exception:
            failed += 1
    ports.clear()
    return failed


def account_config(
    *,
    user: str,
    domain: str,
    rtp_start: int,
    rtp_count: int,
    host: str,
    srtp: str = "optional",
    public: str = "",
    session_expires: int = 0,
    dialout: DialOutSettings | None = None,
) -> Any:
    """A registration-less account whose Contact carries ``;isfocus`` (RFC 4579); with
    dial-out on, the calls it places go through the trunk proxy with its credentials. RTP
    binds ``host`` and SDP ``c=`` announces ``public`` (the address callers send media to).

    SRTP keyed by SDES (RFC 4568) on any transport (``srtpSecureSignaling`` 0: pjsua would
    otherwise answer every non-TLS call 406 as soon as SRTP is not ``off``); whether the keys
    were protected by TLS is judged per call for the room notice (bridge.sip.secure).

    ``session_expires`` > 0 puts an RFC 4028 session timer on every call, also when the
    phone did not ask for one: when a worker dies, a phone that supports timers ends the
    call at its next refresh (the restarted worker answers 481) or when ours does not come.
    """
    cfg = pj.AccountConfig()
    if session_expires:
        cfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_ALWAYS
        cfg.callConfig.timerSessExpiresSec = session_expires
        cfg.callConfig.timerMinSESec = 90
    if dialout is not None and dialout.enabled and dialout.proxy:
        proxy = dialout.proxy if ";lr" in dialout.proxy else f"{dialout.proxy};lr"
        cfg.sipConfig.proxies.append(proxy)
    if dialout is not None and dialout.enabled and dialout.username:
        cred = pj.AuthCredInfo("digest", "*", dialout.username, 0,
                               dialout.password.get_secret_value())  # fmt: skip
        cfg.sipConfig.authCreds.append(cred)
    cfg.idUri = f"sip:{user}@{domain}"
    cfg.sipConfig.contactParams = ";isfocus"
    cfg.regConfig.registrarUri = ""
    cfg.mediaConfig.transportConfig.port = rtp_start
    cfg.mediaConfig.transportConfig.portRange = rtp_count
    cfg.mediaConfig.transportConfig.boundAddress = host
    cfg.mediaConfig.srtpUse = SRTP_USE[srtp]
    cfg.mediaConfig.srtpSecureSignaling = 0
    cfg.mediaConfig.transportConfig.publicAddress = public or host
    cfg.natConfig.iceEnabled = False
    cfg.natConfig.sdpNatRewriteUse = 0
    cfg.natConfig.contactRewriteUse = 0
    cfg.natConfig.viaRewriteUse = 0
    return cfg


def rx_packets(call: Any) -> int:
    """RTP packets received so far on the call's first audio stream (-1 if unknown)."""
    with contextlib.suppress(Exception):
        info = call.getInfo()
        for med in info.media:
            if med.type == MEDIA_AUDIO:
                return int(call.getStreamStat(med.index).rtcp.rxStat.pkt)
    return -1


def jitter_stats(call: Any) -> tuple[int, int, int, float] | None:
    """pjmedia jitter buffer (lost, discarded, empty gets, average delay ms) of a call."""
    with contextlib.suppress(Exception):
        info = call.getInfo()
        for med in info.media:
            if med.type == MEDIA_AUDIO:
                jb = call.getStreamStat(med.index).jbuf
                return int(jb.lost), int(jb.discard), int(jb.empty), float(jb.avgDelayMsec)
    return None


def codec_name(call: Any) -> str:
    with contextlib.suppress(Exception):
        info = call.getInfo()
        for med in info.media:
            if med.type == MEDIA_AUDIO:
                si = call.getStreamInfo(med.index)
                return f"{si.codecName}/{si.codecClockRate}"
    return ""


def send_message(call: Any, body: str, content_type: str, headers: dict[str, str]) -> None:
    prm = pj.SendInstantMessageParam()
    prm.content = body
    prm.contentType = content_type
    for name, value in headers.items():
        prm.txOption.headers.append(header(name, value))
    call.sendInstantMessage(prm)


def register_thread(name: str) -> None:
    """Required before any non-owner thread touches pjsua2 (else the process aborts)."""
    ep = pj.Endpoint.instance()
    if not ep.libIsThreadRegistered():
        ep.libRegisterThread(name)


def shared_library() -> ctypes.CDLL:
    """The pjsua2 module's shared object: pjsip's C API (its libraries are beside it)."""
    return ctypes.CDLL(pj._pjsua2.__file__)
