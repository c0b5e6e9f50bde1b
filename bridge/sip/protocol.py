"""Worker-internal messages on the pipe between a SIP worker process and its pool.

The public events and commands (``bridge.core.events``) travel on the same pipe; these
extra messages carry what only the pool needs: readiness, slot occupancy, the mixer
attachment handshake of each leg, admission snapshots and shutdown. All are small frozen
dataclasses (pickled by ``multiprocessing.Connection``); audio never crosses this pipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.config import LogSettings, SipSettings
from bridge.core.admission import PeerSlots, RoomDirectory
from bridge.core.caller_gate import CallerPolicy
from bridge.core.limits import CallLimits, parse_networks
from bridge.sip.byemsg import DialogState
from bridge.sip.sipmsg import CallerInfo
from mixer.rings import LegAttachment


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker process needs to start; picklable (spawned, not forked)."""

    index: int
    incarnation: int
    sip: SipSettings
    log: LogSettings
    host: str  # address the worker's SIP and RTP sockets bind to
    port: int  # UDP and TCP
    tls_port: int  # 0 = no TLS
    rtp_port_start: int
    rtp_port_count: int
    calls: int
    is_front: bool
    media_timeout_s: float
    retry_after_s: int
    attach_timeout_s: float
    hooks: tuple[str, ...] = ()
    pjsip_log_level: int = 1
    directory: RoomDirectory = field(default_factory=RoomDirectory)
    aligned_clock: bool = False  # drive pjmedia from our own thread on the node's tick grid
    clock_phase_s: float = 0.0  # phase of that grid (the mixer ticks later)
    ring_reserve: int = 1  # cushion frames of the worker side of each ring
    cushion_hold_ticks: int = 0  # adaptive cushion after an under-run (mixer.rings)
    main_priority: int = 0  # SCHED_FIFO priority of the pjsua2 thread (0 = normal)
    media_quality: int = 0  # pjsua media quality (0 = PJSIP default): picks the resampler
    stats_interval_s: float = 0.0  # WorkerStats reports (0 = none)
    jitter: tuple[int, int, int, int] = (-1, -1, -1, -1)  # jb init, min/max prefetch, size (ms)
    callers: CallerPolicy = field(default_factory=CallerPolicy)  # who is calling (issue 18)
    advertise: str = ""  # address in Contact, Via, SDP c= and 302s ("" = host)
    crash_file: str = ""  # faulthandler writes the last Python stacks here (bridge.sip.forensics)
    core_dump_max_mb: int = 0  # RLIMIT_CORE of the worker (0 = leave it as inherited)
    orphan_grace_s: float = 0.0  # calls carry on this long once the supervisor is gone
    #: its pjmedia conference bridge: 48000 (wideband) or 8000 (narrowband: G.711 legs are
    #: never resampled; every leg's port is capped at it, see bridge.sip.codecs)
    bridge_rate: int = 48000


# ---- worker → pool --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerReady:
    worker: int
    incarnation: int
    pid: int
    port: int
    tls_port: int
    #: (thread id, SCHED_FIFO priority) the worker wants but could not set itself: it has
    #: no capability, the supervisor sets them (bridge.privileges)
    realtime_threads: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class InviteAnswered:
    """How a worker answered an INVITE it did not serve (``outcome`` "redirected",
    "busy" or "rejected"; ``reason`` from :data:`bridge.metrics.REJECT_REASONS` or the
    redirect kind "worker"/"owner"), so the pool can count it: workers have no registry."""

    worker: int
    outcome: str
    reason: str


@dataclass(frozen=True, slots=True)
class SlotsBusy:
    """Calls this worker holds right now (ringing, waiting for media, or up)."""

    worker: int
    busy: int


@dataclass(frozen=True, slots=True)
class LegOffered:
    """An INVITE was admitted: reserve a mixer slot, reply with :class:`AttachLeg`."""

    leg_id: str
    worker: int
    room: str
    caller: CallerInfo
    rate: int


@dataclass(frozen=True, slots=True)
class LegConfirmed:
    """The call is up (ACK received, media flowing): the supervisor may announce it."""

    leg_id: str
    codec: str
    transport: str = ""  # the transport the INVITE really came on ("" = unknown, dial-out)
    srtp: bool = False  # pjmedia's SRTP session is active for the audio
    #: what a BYE needs if this worker dies (None: not known: no dialog tap, no tag…)
    dialog: DialogState | None = None


@dataclass(frozen=True, slots=True)
class DialogCSeq:
    """The worker is about to send a request with this CSeq on the leg's dialog (sent only
    when it has grown by ``byemsg.CSEQ_STEP`` since the last report, before the request)."""

    leg_id: str
    cseq: int


@dataclass(frozen=True, slots=True)
class LegEnded:
    """The call is gone (``reason`` as in ``LegLeft``); the pool frees its mixer slot."""

    leg_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ExtensionMessage:
    """Opaque payload between a worker hook and the supervisor (e.g. conference events)."""

    worker: int
    payload: object


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """Media health of one worker, sent every ``stats_interval`` (cumulative counters).

    ``clock_*`` come from the grid-aligned media clock (zeros with pjmedia's own clock);
    ``jb_*`` are pjmedia's jitter buffer counters summed over every call of this worker
    process so far (ended calls keep their last reading), so they only grow.
    """

    worker: int
    clock_ticks: int
    clock_late: int
    clock_skipped: int
    clock_max_lateness_s: float
    clock_realtime: bool
    frame_errors: int
    calls: int
    jb_lost: int
    jb_discard: int
    jb_empty: int
    jb_avg_delay_ms: float  # mean over those calls
    clock_busy_s: float = 0.0  # time spent inside the bridge's ticks (all legs' audio work)
    clock_max_busy_s: float = 0.0  # the longest tick: must stay below mixer_phase_ms


# ---- pool → worker --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttachLeg:
    """Mixer slot for an offered leg, or ``attachment=None`` to refuse it with ``status``
    (``reason`` for the log and Reason header; ``retry_after`` seconds when > 0)."""

    leg_id: str
    attachment: LegAttachment | None
    error: str = ""
    status: int = 503
    reason: str = ""
    retry_after: int = 0


@dataclass(frozen=True, slots=True)
class DirectoryUpdate:
    directory: RoomDirectory


@dataclass(frozen=True, slots=True)
class PeersUpdate:
    """Slot occupancy of every worker of the node (sent to every worker), and the node's calls
    per room and per source address: the front refuses a capped caller at once instead of
    redirecting it to a worker where the pool would refuse it."""

    peers: tuple[PeerSlots, ...]
    room_calls: dict[str, int] = field(default_factory=dict)
    source_calls: dict[str, int] = field(default_factory=dict)
    #: source addresses with a call in each room (who may subscribe to its events)
    room_sources: dict[str, frozenset[str]] = field(default_factory=dict)


def call_limits(sip: SipSettings, retry_after: int) -> CallLimits:
    """The node's call caps from its settings (pool and workers build the same)."""
    return CallLimits(
        per_source=sip.limits.calls_per_source,
        per_room=sip.limits.callers_per_room,
        retry_after=max(1, retry_after),
        trusted=parse_networks(sip.limits.trusted_sources),
    )


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Hang up every call (BYE), then exit."""

    reason: str = "shutdown"
