"""Supervisor side of the SIP workers: start, watch, restart, route events and commands.

``WorkerPool`` spawns ``pool_size`` worker processes. Worker 0 is the *front*: it listens
on the public SIP port, serves calls itself while it has a slot and redirects (302) the
others to the worker with the most free slots; the others listen on private ports.
The mixer runs in its own process (``mixer.service.MixerProcess``, restarted if it dies;
the pool owns the ring segment). One monitor thread reads every worker pipe, reserves each
admitted leg's mixer slot (``mixer.add_leg``) and turns worker messages into
``bridge.core.events`` for ``async for event in pool.events()``. A worker that dies loses
its calls (``LegLeft`` with reason ``worker-died``) and is restarted on the same ports; the
pool's own state (room directory, other workers' legs) is kept.

Usage (supervisor)::

    pool = WorkerPool(settings.sip, settings.workers, settings.log)
    await asyncio.to_thread(pool.start)
    pool.set_directory(RoomDirectory.create(["room1"], bans={"room1": ["sip:eve@x"]}))
    async for event in pool.events(): ...          # LegJoined, LegLeft, TalkingChanged, …
    pool.send(MuteLeg(leg_id, True)); pool.send(HangupLeg(leg_id, "kicked"))
    await asyncio.to_thread(pool.stop)             # BYE to every call, workers exit
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import queue
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Protocol, TypeAlias

from bridge import metrics
from bridge.config import LogSettings, SipSettings, Transport, WorkerSettings
from bridge.core.admission import PeerSlots, RoomDirectory
from bridge.core.caller_gate import CallerPolicy
from bridge.core.events import (
    DialOutCall,
    DialProgress,
    DtmfReceived,
    HangupLeg,
    HoldLeg,
    LegJoined,
    LegLeft,
    MuteLeg,
    PlayTone,
    SendSipMessage,
    SipCommand,
    SipEvent,
    SipMessageReceived,
    TalkingChanged,
)
from bridge.core.limits import limit_call
from bridge.devstack.ports import free_udp_tcp_port
from bridge.logs import configure as configure_logging
from bridge.logs import get_logger
from bridge.privileges import set_fifo
from bridge.sip import byemsg, forensics, orphan_bye, secure
from bridge.sip.codecs import BRIDGE_RATE, NARROWBAND_RATE
from bridge.sip.orphans import end_orphans, write_record
from bridge.sip.protocol import (
    AttachLeg,
    DialogCSeq,
    DirectoryUpdate,
    ExtensionMessage,
    InviteAnswered,
    LegConfirmed,
    LegEnded,
    LegOffered,
    PeersUpdate,
    Shutdown,
    SlotsBusy,
    WorkerReady,
    WorkerSpec,
    WorkerStats,
    call_limits,
)
from bridge.sip.sipmsg import CallerInfo
from mixer.engine import MixerEvent, TalkerEvent
from mixer.rings import LegAttachment
from mixer.service import MixerProcess

log = get_logger(__name__)

PoolEvent: TypeAlias = SipEvent | ExtensionMessage
ATTACH_TIMEOUT_S = 5.0
PHASE_MARGIN_S = 0.004  # aligned clocks: no worker ticks within this of the mixer's tick


def worker_phase(index: int, workers: int, mixer_phase_s: float, period_s: float = 0.02) -> float:
    """Phase of worker ``index`` on the node's tick grid (aligned media clocks).

    A frame written at a worker's tick is mixed at the mixer's next tick and read back at
    the worker's next tick, so it crosses the rings in exactly one period whatever the
    worker's phase — as long as no worker ticks within :data:`PHASE_MARGIN_S` of the mixer
    (that margin absorbs wake-up lateness on either side). Spreading the workers evenly
    over the rest of the period keeps them from all waking at once on a 2-core box.
    """
    span = period_s - 2 * PHASE_MARGIN_S
    offset = span * (index + 0.5) / max(1, workers)
    return (mixer_phase_s + PHASE_MARGIN_S + offset) % period_s


def bridge_rate(index: int, workers: int, narrowband: int) -> int:
    """The conference-bridge rate of worker ``index`` of ``workers``: the first
    ``narrowband`` of them (the front first, so the usual G.711 callers need no redirect)
    run at 8 kHz, the others at 48 kHz; ``narrowband`` ≥ ``workers`` makes them all
    narrowband (a G.711-only node)."""
    return NARROWBAND_RATE if index < min(narrowband, workers) else BRIDGE_RATE


class MixerLike(Protocol):
    """The part of ``mixer.node.MixerNode`` the pool uses (thread-safe calls)."""

    def add_leg(
        self, conference: Hashable, rate: int, gain: float = 1.0, *, muted: bool = False
    ) -> LegAttachment: ...

    def remove_leg(self, leg: int) -> None: ...

    def set_mute(self, leg: int, muted: bool) -> None: ...

    def set_deaf(self, leg: int, deaf: bool) -> None: ...


class PoolError(RuntimeError):
    """A worker could not be started (the message carries the reason)."""


@dataclass(slots=True)
class LegRecord:
    """What the pool knows about one leg (joined = LegJoined was emitted)."""

    leg_id: str
    worker: int
    room: str
    caller: CallerInfo
    slot: int
    rate: int
    joined: bool = False
    muted: bool = False
    held: bool = False  # out of the mix until admitted (dial-in PIN)
    dialog: byemsg.DialogState | None = None  # what a BYE needs if the worker dies
    cseq: int = 0  # the highest CSeq the worker reported on that dialog


@dataclass(slots=True)
class _WorkerState:
    spec: WorkerSpec
    process: BaseProcess | None = None
    conn: Connection | None = None
    pid: int = 0
    ready: bool = False
    busy: int = 0
    failures: int = 0
    restart_at: float = 0.0
    ready_event: threading.Event | None = None
    error: str = ""
    started: float = 0.0  # wall clock of the spawn (a core file must be newer)


class WorkerPool:
    """N pjsua2 worker processes plus the front; see the module docstring for the API."""

    def __init__(
        self,
        sip: SipSettings,
        workers: WorkerSettings,
        log_settings: LogSettings | None = None,
        *,
        mixer: MixerLike | None = None,
        directory: RoomDirectory | None = None,
        callers: CallerPolicy | None = None,
        runtime_record: Path | None = None,
    ) -> None:
        self.sip = sip
        #: where the pids of the mixer and workers are kept for a supervisor that returns
        #: after this one died (bridge.sip.orphans); None = not kept
        self.runtime_record = runtime_record
        self._recorded: tuple[int, ...] = ()
        self.callers = callers or CallerPolicy()
        self.settings = workers
        self.log_settings = log_settings or LogSettings()
        self.directory = directory or RoomDirectory()
        self._owned_mixer: MixerProcess | None = None
        if mixer is None:
            # its own process: XMPP and Redis work in the supervisor never delay a tick
            node = MixerProcess(
                f"sipmuc-{os.getpid()}-{secrets.token_hex(3)}",
                capacity=max(16, workers.resolved_pool_size() * workers.calls_per_worker + 8),
                reserve=workers.ring_reserve,
                hold_ticks=workers.cushion_hold_ticks,
                on_events=self.handle_mixer_events,
                log_setup=functools.partial(configure_logging, self.log_settings),
                orphan_grace_s=workers.orphan_grace,
            )
            self._owned_mixer = node
            mixer = node
        self.mixer: MixerLike = mixer
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_WorkerState] = []
        self._legs: dict[str, LegRecord] = {}
        self._slot_leg: dict[int, LegRecord] = {}
        self._lock = threading.RLock()
        self._events: queue.SimpleQueue[PoolEvent] = queue.SimpleQueue()
        self._aqueue: asyncio.Queue[PoolEvent] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._stats: dict[int, WorkerStats] = {}
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._monitor: threading.Thread | None = None
        self._started = False
        #: one faulthandler file per worker incarnation (bridge.sip.forensics)
        self._crash_dir = tempfile.mkdtemp(prefix="sipmuc-crash-")
        self._reporters: list[threading.Thread] = []
        self._bye_senders: list[threading.Thread] = []
        self._bye_stop = threading.Event()
        self.limits = call_limits(sip, workers.retry_after)

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60.0) -> None:
        """Spawn every worker and wait until each listens (raises PoolError otherwise)."""
        if self._started:
            raise RuntimeError("pool already started")
        self._started = True
        if self.runtime_record is not None:  # a dead predecessor's processes hold our ports
            end_orphans(self.runtime_record)
        if self._owned_mixer is not None:
            aligned = self.settings.media_clock == "aligned"
            phase = self.settings.mixer_phase_ms / 1000 if aligned else None
            self._owned_mixer.start(phase_s=phase)
        specs = self._plan()
        for spec in specs:
            self._workers.append(_WorkerState(spec))
        for state in self._workers:
            self._spawn(state)
        self._monitor = threading.Thread(target=self._run_monitor, name="sip-pool", daemon=True)
        self._monitor.start()
        deadline = time.monotonic() + timeout
        for state in self._workers:
            event = state.ready_event
            assert event is not None
            if not event.wait(max(0.0, deadline - time.monotonic())) or not state.ready:
                why = state.error or "did not report ready in time"
                self.stop()
                raise PoolError(f"SIP worker {state.spec.index} failed to start: {why}")
        self._record()
        log.info("sip.pool.started", workers=len(self._workers), front_port=self.front_port)

    def stop(self, timeout: float = 10.0) -> None:
        """BYE every call, stop every worker, close the mixer if the pool owns it."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            for state in self._workers:
                self._send_to(state, Shutdown("shutdown"))
        started = time.monotonic()
        deadline = started + timeout
        for state in self._workers:
            proc = state.process
            # the sentinel, not join(): the monitor thread reaps dead workers (_on_death),
            # and two threads in waitpid() race — the loser's Popen still says "alive" and
            # it would SIGKILL a pid already reaped (seen as a "kill" at every stop)
            left = max(0.1, deadline - time.monotonic())
            if proc is not None and not wait([proc.sentinel], left):
                log.warning("sip.worker.kill", worker=state.spec.index)
                proc.kill()
                wait([proc.sentinel], 2)
        with contextlib.suppress(OSError):
            self._wake_w.send(None)
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(5)
        for state in self._workers:
            if state.process is not None:
                state.process.join(1)  # reap what the monitor did not (it has ended)
        with self._lock:
            for state in self._workers:
                self._worker_gone(state, "shutdown")
                if state.conn is not None:
                    state.conn.close()
                    state.conn = None
        if self._owned_mixer is not None:
            self._owned_mixer.close()
            self._owned_mixer = None
        for reporter in self._reporters:
            reporter.join(timeout)  # a crash report in progress is not lost at shutdown
        self._bye_stop.set()  # BYEs still waiting for an answer are logged as abandoned
        for sender in self._bye_senders:
            sender.join(1.0)
        shutil.rmtree(self._crash_dir, ignore_errors=True)
        if self.runtime_record is not None:
            self.runtime_record.unlink(missing_ok=True)
        log.info("sip.pool.stopped", seconds=round(time.monotonic() - started, 2))

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ public API
    @property
    def front_port(self) -> int:
        """The public SIP port (UDP and TCP) callers dial."""
        return self._workers[0].spec.port if self._workers else self.sip.port

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    def worker_stats(self) -> dict[int, WorkerStats]:
        """Latest media health report of each worker (every ``stats_interval``; cumulative)."""
        with self._lock:
            return dict(self._stats)

    def slots(self) -> list[PeerSlots]:
        """Every worker's address and occupancy (dead workers show ``alive=False``)."""
        with self._lock:
            return [self._peer(w) for w in self._workers]

    def free_slots(self) -> int:
        return sum(p.free for p in self.slots())

    def legs(self) -> dict[str, LegRecord]:
        """Snapshot of the current legs by id."""
        with self._lock:
            return dict(self._legs)

    def set_directory(self, directory: RoomDirectory) -> None:
        """Push a new admission snapshot to every worker (takes effect on the next INVITE)."""
        with self._lock:
            self.directory = directory
            for state in self._workers:
                self._send_to(state, DirectoryUpdate(directory))

    def send(self, command: SipCommand) -> None:
        """Apply a supervisor command; unknown legs are ignored (they may just have left)."""
        with self._lock:
            record = self._legs.get(command.leg_id)
            if record is None:
                log.info("sip.command.unknown_leg", leg=command.leg_id, kind=type(command).__name__)
                return
            if isinstance(command, MuteLeg):
                record.muted = command.muted
                self.mixer.set_mute(record.slot, command.muted or record.held)
                return
            if isinstance(command, HoldLeg):
                record.held = command.held
                self.mixer.set_mute(record.slot, command.held or record.muted)
                self.mixer.set_deaf(record.slot, command.held)
                return
            if isinstance(command, HangupLeg | SendSipMessage | PlayTone):
                self._send_to(self._workers[record.worker], command)

    def dial(self, command: DialOutCall) -> bool:
        """Hand a dial-out to the live worker with the most free call slots; False when
        every slot is taken (the caller reports it; nothing was sent)."""
        with self._lock:
            # we offer opus first: a wideband worker when one has room (narrowband last)
            peers = sorted(
                (p for p in map(self._peer, self._workers) if p.free > 0),
                key=lambda p: (-p.bridge_rate, -p.free, p.worker),
            )
            if not peers:
                return False
            self._send_to(self._workers[peers[0].worker], command)
            return True

    def send_extension(self, payload: object, worker: int | None = None) -> None:
        """Deliver a hook's control message to one worker or (``None``) to all."""
        with self._lock:
            for state in self._workers:
                if worker is None or state.spec.index == worker:
                    self._send_to(state, payload)

    async def events(self) -> AsyncIterator[PoolEvent]:
        """Every event in order: LegJoined, LegLeft, TalkingChanged, DtmfReceived, …"""
        loop = asyncio.get_running_loop()
        aq: asyncio.Queue[PoolEvent] = asyncio.Queue()
        with self._lock:
            while True:
                try:
                    aq.put_nowait(self._events.get_nowait())
                except queue.Empty:
                    break
            self._loop, self._aqueue = loop, aq
        try:
            while True:
                yield await aq.get()
        finally:
            with self._lock:
                self._loop, self._aqueue = None, None

    def get_event(self, timeout: float | None = None) -> PoolEvent:
        """Blocking alternative to :meth:`events` for non-async callers (queue.Empty)."""
        return self._events.get(timeout=timeout)

    def handle_mixer_events(self, events: Sequence[MixerEvent]) -> None:
        """``on_events`` for the mixer: talker changes become ``TalkingChanged``."""
        for ev in events:
            if isinstance(ev, TalkerEvent):
                record = self._slot_leg.get(ev.leg)
                if record is not None and record.joined:
                    self._emit(TalkingChanged(record.leg_id, record.room, ev.talking))

    def kill_worker(self, index: int) -> None:
        """SIGKILL one worker, as a crash would (for tests and chaos drills)."""
        proc = self._workers[index].process
        if proc is not None and proc.is_alive():
            proc.kill()

    def kill_mixer(self) -> MixerProcess:
        """SIGKILL the pool's mixer process, as a crash would (tests and chaos drills); the
        returned handle tells when it is back (``wait_ready``, ``restarts``)."""
        if self._owned_mixer is None:
            raise RuntimeError("this pool was given its mixer: it does not run a mixer process")
        self._owned_mixer.kill()
        return self._owned_mixer

    # ------------------------------------------------------------------ internals
    def _plan(self) -> list[WorkerSpec]:
        ws, sip = self.settings, self.sip
        n = ws.resolved_pool_size()
        per_worker = (sip.rtp_port_count // n) & ~1
        if per_worker < 4 * ws.calls_per_worker:
            raise PoolError(
                f"sip.rtp_port_count={sip.rtp_port_count} is too small for {n} workers × "
                f"{ws.calls_per_worker} calls (need ≥ {4 * ws.calls_per_worker} per worker)"
            )
        tls = Transport.TLS in sip.transports and sip.tls_certificate is not None
        if not sip.advertised:
            raise PoolError(
                f"sip.bind_host={sip.bind_host!r} is a wildcard: set sip.advertise_host, the "
                "address callers reach (it goes into Contact, Via, SDP and redirects)"
            )
        specs = []
        for i in range(n):
            if i == 0:
                port, tls_port = sip.port, sip.tls_port if tls else 0
            elif ws.base_port:
                port = ws.base_port + 2 * (i - 1)
                tls_port = port + 1 if tls else 0
            else:
                port = free_udp_tcp_port()
                tls_port = free_udp_tcp_port() if tls else 0
            calls = ws.calls_per_worker  # the front too: pjsua has slots left to redirect
            specs.append(
                WorkerSpec(
                    index=i,
                    incarnation=0,
                    sip=sip,
                    log=self.log_settings,
                    host=sip.bind_host,
                    advertise=sip.advertised,
                    port=port,
                    tls_port=tls_port,
                    rtp_port_start=sip.rtp_port_start + i * per_worker,
                    rtp_port_count=per_worker,
                    calls=calls,
                    is_front=i == 0,
                    media_timeout_s=ws.media_timeout,
                    retry_after_s=ws.retry_after,
                    attach_timeout_s=ATTACH_TIMEOUT_S,
                    hooks=tuple(ws.hooks),
                    pjsip_log_level=ws.pjsip_log_level,
                    directory=self.directory,
                    aligned_clock=ws.media_clock == "aligned",
                    clock_phase_s=worker_phase(i, n, ws.mixer_phase_ms / 1000),
                    ring_reserve=ws.ring_reserve,
                    cushion_hold_ticks=ws.cushion_hold_ticks,
                    main_priority=ws.main_thread_priority,
                    media_quality=ws.media_quality,
                    stats_interval_s=ws.stats_interval,
                    jitter=(ws.jb_init_ms, ws.jb_min_pre_ms, ws.jb_max_pre_ms, ws.jb_max_ms),
                    callers=self.callers,
                    core_dump_max_mb=ws.core_dump_max_mb,
                    orphan_grace_s=ws.orphan_grace,
                    bridge_rate=bridge_rate(i, n, ws.narrowband_workers),
                )
            )
        return specs

    def _spawn(self, state: _WorkerState) -> None:
        from bridge.sip.worker import worker_main

        parent, child = self._ctx.Pipe(duplex=True)
        name = f"worker-{state.spec.index}-{state.spec.incarnation}.txt"
        state.spec = spec = replace(state.spec, crash_file=os.path.join(self._crash_dir, name))
        state.started = time.time()
        proc = self._ctx.Process(
            target=worker_main, args=(spec, child), name=f"sip-worker-{spec.index}", daemon=True
        )
        state.ready = False
        state.busy = 0
        state.ready_event = threading.Event()
        state.error = ""
        proc.start()
        child.close()
        state.process, state.conn, state.pid = proc, parent, proc.pid or 0
        # Messages sent before the worker reads them wait in the pipe, in order.
        self._send_to(state, DirectoryUpdate(self.directory))

    def _send_to(self, state: _WorkerState, message: object) -> None:
        conn = state.conn
        if conn is None:
            return
        try:
            conn.send(message)
        except (OSError, ValueError) as exc:
            log.info("sip.worker.send_failed", worker=state.spec.index, error=str(exc))

    def _emit(self, event: PoolEvent) -> None:
        loop, aq = self._loop, self._aqueue
        if loop is not None and aq is not None:
            try:
                loop.call_soon_threadsafe(aq.put_nowait, event)
                return
            except RuntimeError:  # loop closed
                pass
        self._events.put(event)

    def _peer(self, state: _WorkerState) -> PeerSlots:
        return PeerSlots(
            worker=state.spec.index,
            host=state.spec.advertise or state.spec.host,
            port=state.spec.port,
            capacity=state.spec.calls,
            busy=state.busy,
            tls_port=state.spec.tls_port,
            alive=state.ready,
            bridge_rate=state.spec.bridge_rate,
        )

    def _push_peers(self) -> None:
        if self._workers:
            peers = tuple(self._peer(w) for w in self._workers)
            rooms: dict[str, int] = {}
            sources: dict[str, int] = {}
            room_sources: dict[str, set[str]] = {}
            for record in self._legs.values():
                room, source = record.room.lower(), record.caller.source_host
                rooms[room] = rooms.get(room, 0) + 1
                if source:
                    sources[source] = sources.get(source, 0) + 1
                    room_sources.setdefault(room, set()).add(source)
            update = PeersUpdate(peers, rooms, sources,
                                 {r: frozenset(s) for r, s in room_sources.items()})  # fmt: skip
            for state in self._workers:  # the front redirects; every worker serves SUBSCRIBE
                self._send_to(state, update)

    def _run_monitor(self) -> None:
        while True:
            with self._lock:
                if self._stopping and all(
                    w.process is None or not w.process.is_alive() for w in self._workers
                ):
                    conns_open = [w for w in self._workers if w.conn is not None]
                    if not conns_open:
                        return
                by_conn = {w.conn: w for w in self._workers if w.conn is not None}
                by_sentinel = {
                    w.process.sentinel: w
                    for w in self._workers
                    if w.process is not None and w.conn is not None
                }
            waitables: list[object] = [*by_conn, *by_sentinel, self._wake_r]
            ready = wait(waitables, timeout=0.5)  # type: ignore[arg-type]
            for obj in ready:
                if obj is self._wake_r:
                    with contextlib.suppress(EOFError, OSError):
                        self._wake_r.recv()
                    continue
                if isinstance(obj, Connection) and obj in by_conn:
                    self._drain(by_conn[obj])
            for obj in ready:
                if isinstance(obj, int) and obj in by_sentinel:
                    state = by_sentinel[obj]
                    self._drain(state)
                    with self._lock:
                        self._on_death(state)
            self._restart_due()
            self._record()
            if self._stopping and all(
                w.process is None or not w.process.is_alive() for w in self._workers
            ):
                for w in self._workers:
                    self._drain(w)
                return

    def _record(self) -> None:
        """Keep the runtime record up to date when a process was (re)spawned."""
        if self.runtime_record is None or self._stopping:
            return
        mixer = self._owned_mixer
        children = [("worker", w.pid) for w in self._workers if w.pid]
        if mixer is not None and mixer.pid:
            children.insert(0, ("mixer", mixer.pid))
        pids = tuple(pid for _, pid in children)
        if pids != self._recorded:
            write_record(self.runtime_record, mixer.segment if mixer else "", children)
            self._recorded = pids

    def _drain(self, state: _WorkerState) -> None:
        conn = state.conn
        while conn is not None:
            try:
                if not conn.poll():
                    return
                message = conn.recv()
            except (EOFError, OSError):
                return
            try:
                with self._lock:
                    self._on_message(state, message)
            except Exception:
                log.exception("sip.pool.message_failed", kind=type(message).__name__)

    def _on_message(self, state: _WorkerState, message: object) -> None:
        if isinstance(message, WorkerReady):
            state.ready = True
            state.pid = message.pid
            self._grant_realtime(state, message.realtime_threads)
            state.failures = 0
            if state.ready_event is not None:
                state.ready_event.set()
            self._push_peers()
        elif isinstance(message, WorkerStats):
            self._stats[message.worker] = message
        elif isinstance(message, InviteAnswered):
            try:
                metrics.count_invite(message.outcome, message.reason)
            except ValueError as error:
                log.warning("sip.pool.bad_outcome", error=str(error))
        elif isinstance(message, SlotsBusy):
            state.busy = message.busy
            self._push_peers()
        elif isinstance(message, LegOffered):
            self._on_offered(state, message)
        elif isinstance(message, LegConfirmed):
            record = self._legs.get(message.leg_id)
            if record is not None and not record.joined:
                record.joined = True
                record.dialog = message.dialog
                c = record.caller
                self._emit(
                    LegJoined(
                        leg_id=record.leg_id,
                        room=record.room,
                        call_id=c.call_id,
                        worker=record.worker,
                        from_uri=c.from_uri,
                        display_name=c.display_name,
                        asserted_identity=c.asserted_identity,
                        impp_uris=c.impp_uris,
                        xmpp_contacts=c.xmpp_contacts,
                        codec=message.codec,
                        sample_rate=record.rate,
                        transport=message.transport or c.transport,
                        srtp=message.srtp,
                        encrypted=secure.encrypted(message.transport, message.srtp),
                        source_host=c.source_host,
                        identity=c.identity,
                    )
                )
        elif isinstance(message, DialogCSeq):
            record = self._legs.get(message.leg_id)
            if record is not None:
                record.cseq = max(record.cseq, message.cseq)
        elif isinstance(message, LegEnded):
            self._end_leg(message.leg_id, message.reason)
        elif isinstance(
            message, DtmfReceived | SipMessageReceived | ExtensionMessage | DialProgress
        ):
            self._emit(message)
        else:
            log.warning("sip.pool.unknown_message", kind=type(message).__name__)

    def _grant_realtime(
        self, state: _WorkerState, threads: tuple[tuple[int, int], ...]
    ) -> None:
        """Set the SCHED_FIFO priorities a worker could not set itself: workers run without
        any capability, the supervisor keeps CAP_SYS_NICE for this (bridge.privileges)."""
        refused = [tid for tid, priority in threads if not set_fifo(tid, priority)]
        if threads:
            log.info("sip.worker.realtime", worker=state.spec.index,
                     granted=len(threads) - len(refused), refused=len(refused))  # fmt: skip

    def _on_offered(self, state: _WorkerState, msg: LegOffered) -> None:
        # The node-wide caps are checked here, where every leg of every worker is counted
        # under one lock: a burst spread over the workers cannot slip past them.
        room, source = msg.room.lower(), msg.caller.source_host
        legs = self._legs.values()
        refusal = limit_call(
            self.limits,
            source=source,
            source_calls=sum(1 for r in legs if source and r.caller.source_host == source),
            room_calls=sum(1 for r in legs if r.room.lower() == room),
        )
        if refusal is not None:
            log.info("sip.leg.limited", leg=msg.leg_id, room=msg.room, source=source,
                     status=refusal.status, reason=refusal.reason)  # fmt: skip
            metrics.CALLS_LIMITED.labels(reason=refusal.reason).inc()
            self._send_to(state, AttachLeg(msg.leg_id, None, refusal.reason, refusal.status,
                                           refusal.reason, refusal.retry_after))  # fmt: skip
            return
        held = room in self.directory.held  # PIN room: out of the mix at once
        try:
            att = self.mixer.add_leg(msg.room, msg.rate, muted=held)
            if held:
                self.mixer.set_deaf(att.slot, True)
        except Exception as exc:
            log.warning("sip.leg.mixer_refused", leg=msg.leg_id, error=str(exc))
            self._send_to(state, AttachLeg(msg.leg_id, None, str(exc)))
            return
        record = LegRecord(msg.leg_id, msg.worker, msg.room, msg.caller, att.slot, msg.rate,
                           held=held)  # fmt: skip
        self._legs[msg.leg_id] = record
        self._slot_leg[att.slot] = record
        self._send_to(state, AttachLeg(msg.leg_id, att))

    def _end_leg(self, leg_id: str, reason: str) -> None:
        record = self._legs.pop(leg_id, None)
        if record is None:
            return
        if self._slot_leg.get(record.slot) is record:
            del self._slot_leg[record.slot]
        with contextlib.suppress(KeyError):
            self.mixer.remove_leg(record.slot)
        if record.joined:
            self._emit(LegLeft(record.leg_id, record.room, record.caller.call_id, reason))

    def _worker_gone(self, state: _WorkerState, reason: str) -> None:
        for leg_id in [k for k, r in self._legs.items() if r.worker == state.spec.index]:
            self._end_leg(leg_id, reason)
        state.ready = False
        state.busy = 0

    def _on_death(self, state: _WorkerState) -> None:
        proc = state.process
        if proc is not None:
            # its pipes close before the kernel makes it a zombie (a core dump in between)
            proc.join(5.0)
        code = proc.exitcode if proc is not None else None
        if state.conn is not None:
            state.conn.close()
            state.conn = None
        if state.ready_event is not None and not state.ready:
            state.error = f"exited with code {code} before it was ready"
            state.ready_event.set()
        if not self._stopping:
            self._bye_orphans(state)
        self._worker_gone(state, "shutdown" if self._stopping else "worker-died")
        self._report_crash(state, code)
        if self._stopping:
            return
        state.failures += 1
        delay = min(10.0, 0.5 * 2 ** (state.failures - 1))
        state.restart_at = time.monotonic() + delay
        state.process = None
        log.warning("sip.worker.died", worker=state.spec.index, exitcode=code, restart_in=delay)
        self._push_peers()

    def _bye_orphans(self, state: _WorkerState) -> None:
        """BYE every confirmed dialog of a dead worker (its phones would keep the call)."""
        if not self.settings.bye_on_worker_death:
            return
        orphans = [
            orphan_bye.Orphan(r.leg_id, r.room, r.worker, r.dialog, byemsg.bye_cseq(r.cseq))
            for r in self._legs.values()
            if r.worker == state.spec.index and r.joined and r.dialog is not None
        ]
        mine = [r for r in self._legs.values() if r.worker == state.spec.index and r.joined]
        unknown = sum(1 for r in mine if r.dialog is None)
        if unknown:
            log.warning("sip.worker.orphans_unknown", worker=state.spec.index, legs=unknown)
        sender = orphan_bye.send_byes(
            orphans, bind_host=self.sip.bind_host,
            via_host=state.spec.advertise or state.spec.host, stop=self._bye_stop,
        )  # fmt: skip
        if sender is not None:
            self._bye_senders = [t for t in self._bye_senders if t.is_alive()] + [sender]

    def _report_crash(self, state: _WorkerState, code: int | None) -> None:
        """Log a dead worker's last stacks (and core, native backtrace) off the monitor
        thread: gdb on a core takes seconds and the other workers' pipes must be read."""
        crash_file, pid, started = state.spec.crash_file, state.pid, state.started
        # None at shutdown: stop() reaped it first (its exit code is then lost to this thread)
        if code == 0 or (code is None and self._stopping):
            with contextlib.suppress(OSError):
                os.unlink(crash_file)
            return
        index = state.spec.index

        def report() -> None:
            found = forensics.collect(code, pid, crash_file, started=started)
            log.error("sip.worker.crash_report", worker=index, pid=pid, **found.fields())

        thread = threading.Thread(target=report, name=f"crash-report-{index}", daemon=True)
        self._reporters = [t for t in self._reporters if t.is_alive()] + [thread]
        thread.start()

    def _restart_due(self) -> None:
        with self._lock:
            if self._stopping:
                return
            now = time.monotonic()
            for state in self._workers:
                if state.process is None and state.restart_at and now >= state.restart_at:
                    spec = state.spec
                    state.spec = replace(
                        spec, incarnation=spec.incarnation + 1, directory=self.directory
                    )
                    state.restart_at = 0.0
                    self._spawn(state)
                    metrics.WORKER_RESTARTS.inc()
                    log.info("sip.worker.restarted", worker=spec.index)
