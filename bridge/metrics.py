"""Every Prometheus metric of the product, in one place.

Subsystems import the objects below and increment them; nobody defines a metric elsewhere, so
names, help texts and label sets stay consistent and the chart's alert rules
(``charts/sipmuc-bridge/templates/prometheusrule.yaml``) can be checked against this module.

All metrics live in :data:`REGISTRY` (not prometheus-client's global default) so that tests and
several bridges in one process never clash. Label values are closed sets given below as tuples;
series for them are created at import with value 0 so that ``rate()`` and ``absent()`` alerts
work from the first scrape. The one open label is ``room`` on :data:`ROOM_LEGS`: call
:func:`set_room_legs` (which drops the series when a room empties) instead of setting it
directly, or the series count grows with every room ever seen.
"""

from __future__ import annotations

from typing import Final, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from bridge import __version__

NAMESPACE: Final = "sipmuc"

# ``*_created`` series double the series count and no alert of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY: Final = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes…
PlatformCollector(registry=REGISTRY)  # python_info

# --- closed label sets -------------------------------------------------------------------------

CallOutcome = Literal["answered", "redirected", "busy", "rejected", "failed"]
CALL_OUTCOMES: Final[tuple[CallOutcome, ...]] = (
    "answered",  # 200 OK on this node, a leg joined a conference
    "redirected",  # 302 to a worker of this node or to the room's owner node
    "busy",  # 486/503: no free call slot on this node
    "rejected",  # 403/404/503/400/488 and wrong PINs: see sipmuc_calls_rejected_total
    "failed",  # media or signalling error before the call was established
)

RejectReason = Literal[
    "busy", "banned", "locked", "pin", "unknown_room", "draining", "bad_request", "state_unknown"
]
REJECT_REASONS: Final[tuple[RejectReason, ...]] = (
    "busy",  # 486 Busy Here (a worker) / 503 full (the front): no free call slot
    "banned",  # 403: the caller is banned from the room
    "locked",  # 403: the room is locked
    "pin",  # the caller gave up or failed the room's dial-in PIN
    "unknown_room",  # 404: no linked conference by that name
    "draining",  # 503: the node is shutting down (drain)
    "bad_request",  # 400/488: unparsable INVITE or no audio offered
    "state_unknown",  # 503: the room's bans/lock/PIN could not be read (fail closed)
)

RealtimeComponent = Literal["mixer", "workers"]
REALTIME_COMPONENTS: Final[tuple[RealtimeComponent, ...]] = ("mixer", "workers")

LegEndReason = Literal["hangup", "kicked", "banned", "conference_ended", "worker_lost", "error"]
LEG_END_REASONS: Final[tuple[LegEndReason, ...]] = (
    "hangup",
    "kicked",
    "banned",
    "conference_ended",
    "worker_lost",
    "error",
)

SlotState = Literal["busy", "free"]
SLOT_STATES: Final[tuple[SlotState, ...]] = ("busy", "free")

LateFrameCause = Literal["tick_overrun", "underrun"]
LATE_FRAME_CAUSES: Final[tuple[LateFrameCause, ...]] = (
    "tick_overrun",  # the mixer tick started or finished after its 20 ms deadline
    "underrun",  # a leg had no fresh frame: the last one was repeated or silence sent
)

MirrorKind = Literal[
    "join", "leave", "mute", "unmute", "kick", "ban", "unban", "role", "message", "subject"
]
MIRROR_KINDS: Final[tuple[MirrorKind, ...]] = (
    "join",
    "leave",
    "mute",
    "unmute",
    "kick",
    "ban",
    "unban",
    "role",
    "message",
    "subject",
)

JitterEvent = Literal["lost", "discarded", "empty"]
JITTER_EVENTS: Final[tuple[JitterEvent, ...]] = ("lost", "discarded", "empty")

Direction = Literal["muc_to_sip", "sip_to_muc"]
DIRECTIONS: Final[tuple[Direction, ...]] = ("muc_to_sip", "sip_to_muc")

Subsystem = Literal["sip", "worker", "mixer", "xmpp", "redis", "core", "http"]
SUBSYSTEMS: Final[tuple[Subsystem, ...]] = (
    "sip",
    "worker",
    "mixer",
    "xmpp",
    "redis",
    "core",
    "http",
)

# --- build -------------------------------------------------------------------------------------

BUILD_INFO: Final = Info(
    "build", "Version of the running bridge.", namespace=NAMESPACE, registry=REGISTRY
)
BUILD_INFO.info({"version": __version__})

# --- calls and legs ----------------------------------------------------------------------------

CALLS: Final = Counter(
    "calls",
    "Incoming SIP INVITEs by outcome (answered here, redirected, busy, rejected, failed).",
    ["outcome"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
CALLS_REJECTED: Final = Counter(
    "calls_rejected",
    "Calls turned away, by reason (busy, banned, locked, pin, unknown_room, draining, "
    "bad_request).",
    ["reason"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
LEGS_ACTIVE: Final = Gauge(
    "legs_active",
    "SIP call legs currently connected to a conference on this node.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
LEGS_ENDED: Final = Counter(
    "legs_ended",
    "Call legs that ended, by reason.",
    ["reason"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
ROOM_LEGS: Final = Gauge(
    "room_legs",
    "SIP call legs per room on this node (series removed when the room has no leg).",
    ["room"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
ROOMS_ACTIVE: Final = Gauge(
    "rooms_active",
    "Rooms with at least one SIP leg on this node.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)

# --- worker pool -------------------------------------------------------------------------------

WORKERS_UP: Final = Gauge(
    "workers_up",
    "SIP media worker processes running on this node.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
WORKER_SLOTS: Final = Gauge(
    "worker_slots",
    "Call slots of the worker pool by state; busy + free = workers_up * calls_per_worker.",
    ["state"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
CALLS_LIMITED: Final = Counter(
    "calls_limited",
    "Calls refused by a node-wide abuse limit (per-source or per-room cap), by reason.",
    ["reason"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
WORKER_RESTARTS: Final = Counter(
    "worker_restarts",
    "SIP media worker processes restarted by the supervisor after they died.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)

WORKER_CLOCK_LATE_TICKS: Final = Counter(
    "worker_clock_late_ticks",
    "Ticks of the workers' media clocks that started more than 5 ms after their instant.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
WORKER_CLOCK_SKIPPED_TICKS: Final = Counter(
    "worker_clock_skipped_ticks",
    "Ticks the workers' media clocks gave up because they were more than 40 ms behind.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
WORKER_CLOCK_MAX_LATENESS: Final = Gauge(
    "worker_clock_max_lateness_seconds",
    "Worst wake-up lateness of any live worker's media clock since that worker started.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
JITTER_FRAMES: Final = Counter(
    "jitter_buffer_frames",
    "pjmedia jitter buffer events of all calls: lost (RTP never arrived), discarded (too "
    "late or too many), empty (a frame was due and the buffer had none).",
    ["event"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
JITTER_DELAY: Final = Gauge(
    "jitter_buffer_delay_seconds",
    "Mean jitter buffer delay over the calls up now (latency the buffers add).",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
WORKER_FRAME_ERRORS: Final = Counter(
    "worker_frame_errors",
    "Audio frames a worker's media port failed to move between pjmedia and the rings.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
REALTIME: Final = Gauge(
    "realtime_scheduling",
    "1 when the component's audio threads got SCHED_FIFO (mixer clock; workers: every live "
    "worker's media clock), 0 when they run with normal scheduling.",
    ["component"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)

# --- mixer -------------------------------------------------------------------------------------

MIXER_TICK_SECONDS: Final = Histogram(
    "mixer_tick_seconds",
    "Time the mixer spent computing one 20 ms tick for all rooms of the node.",
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.030, 0.050),
)
MIXER_LATE_FRAMES: Final = Counter(
    "mixer_late_frames",
    "Audio frames that missed their deadline, by cause (tick_overrun, underrun).",
    ["cause"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)

# --- XMPP --------------------------------------------------------------------------------------

XMPP_CONNECTED: Final = Gauge(
    "xmpp_connected",
    "1 while the XEP-0114 component stream is authenticated, else 0.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
MUC_RECONNECTS: Final = Counter(
    "muc_reconnects",
    "Reconnections of the component to the XMPP server, and MUC rejoins that followed.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)

# --- mirroring (DESIGN §4) ---------------------------------------------------------------------

MIRRORED_ACTIONS: Final = Counter(
    "mirrored_actions",
    "Actions applied to the other side by the mirror policy, by kind and direction.",
    ["kind", "direction"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)

# --- errors and health -------------------------------------------------------------------------

ERRORS: Final = Counter(
    "errors",
    "Errors handled without stopping the node, by subsystem and log event name.",
    ["subsystem", "event"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
READY: Final = Gauge(
    "ready",
    "1 when the last readiness evaluation passed (what /readyz answered), else 0.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
READINESS_CHECK: Final = Gauge(
    "readiness_check",
    "Result of each named readiness check at the last evaluation (1 ok, 0 failing).",
    ["check"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
DRAINING: Final = Gauge(
    "draining",
    "1 once the node stopped taking new calls to drain, else 0.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)


def _initialise_series() -> None:
    """Create every closed-set series at 0 so alerts see them before the first event."""
    for outcome in CALL_OUTCOMES:
        CALLS.labels(outcome=outcome)
    for rejected in REJECT_REASONS:
        CALLS_REJECTED.labels(reason=rejected)
    for event in JITTER_EVENTS:
        JITTER_FRAMES.labels(event=event)
    for component in REALTIME_COMPONENTS:
        REALTIME.labels(component=component)
    for reason in LEG_END_REASONS:
        LEGS_ENDED.labels(reason=reason)
    for state in SLOT_STATES:
        WORKER_SLOTS.labels(state=state)
    for cause in LATE_FRAME_CAUSES:
        MIXER_LATE_FRAMES.labels(cause=cause)
    for kind in MIRROR_KINDS:
        for direction in DIRECTIONS:
            MIRRORED_ACTIONS.labels(kind=kind, direction=direction)


_initialise_series()

_rooms_with_legs: set[str] = set()


def set_room_legs(room: str, legs: int) -> None:
    """Publish a room's leg count; 0 removes the room's series (bounded cardinality)."""
    if legs < 0:
        raise ValueError(f"leg count cannot be negative: {legs}")
    if legs == 0:
        if room in _rooms_with_legs:
            _rooms_with_legs.discard(room)
            ROOM_LEGS.remove(room)
    else:
        _rooms_with_legs.add(room)
        ROOM_LEGS.labels(room=room).set(legs)
    ROOMS_ACTIVE.set(len(_rooms_with_legs))


def count_invite(outcome: str, reason: str) -> None:
    """Count an INVITE a worker answered without serving it (unknown labels are a bug)."""
    if outcome not in CALL_OUTCOMES:
        raise ValueError(f"unknown call outcome {outcome!r}; one of {CALL_OUTCOMES}")
    CALLS.labels(outcome=outcome).inc()
    if outcome in ("busy", "rejected"):
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {reason!r}; one of {REJECT_REASONS}")
        CALLS_REJECTED.labels(reason=reason).inc()


def count_error(subsystem: Subsystem, event: str) -> None:
    """Count a handled error under the log event name that reported it (docs/log-events.md)."""
    if subsystem not in SUBSYSTEMS:
        raise ValueError(f"unknown subsystem {subsystem!r}; one of {SUBSYSTEMS}")
    ERRORS.labels(subsystem=subsystem, event=event).inc()
