"""Shared-memory frame rings between SIP worker processes and the mixer.

One ``multiprocessing.shared_memory`` segment holds, per leg *slot*, a control row and two
rings of ``depth`` int16 frames (960 samples wide, enough for 48 kHz): the *input* ring
(worker writes what the caller said, mixer reads) and the *output* ring (mixer writes the
mix, worker reads). Each ring has exactly one writer and one reader, so no lock is needed:

* the writer copies a frame into row ``W % depth`` and only then publishes ``W + 1``;
* the reader checks ``W − R``, copies row ``R % depth`` and re-reads ``W``: if the writer
  has lapped it meanwhile (``W − R ≥ depth``) the copy may be torn and is discarded.

Counters are monotonic int64 words that survive slot reuse; a slot's *generation* is
bumped on every assign and release (odd = in use), so a worker holding an old
attachment notices that its slot was taken away and stops touching it. A process that
dies mid-copy never published that frame, so it leaves nothing half-written behind.

The creator (mixer) stamps an *epoch* and a heartbeat (monotonic ns per tick) in the
header; attached workers use them to notice a dead or replaced mixer and re-attach.

Python 3.11 pitfalls handled here: an attaching process must ``resource_tracker.unregister``
the segment or its exit unlinks it under everybody's feet; numpy views into the buffer
must be dropped before ``close()``. Memory ordering relies on x86-64 TSO plus a full
barrier (a lock round-trip) between the frame copy and the counter store.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from typing import Final

import numpy as np
from numpy.typing import NDArray

from mixer.engine import FrameTable
from mixer.frames import MAX_FRAME, check_rate, frame_samples

log = logging.getLogger(__name__)

MAGIC: Final = 0x5349504D55435247  # "SIPMUCRG"
LAYOUT_VERSION: Final = 1
HEADER_WORDS: Final = 16
CTRL_WORDS: Final = 16  # two 64-byte cache lines: mixer-written, then worker-written

# header words
H_MAGIC, H_VERSION, H_SLOTS, H_DEPTH, H_FRAME = 0, 1, 2, 3, 4
H_CREATOR_PID, H_EPOCH, H_HEARTBEAT_NS, H_TICKS, H_CLOSED = 5, 6, 7, 8, 9
# control words written by the mixer
C_GEN, C_CONF, C_RATE, C_OUT_W, C_IN_UNDERRUNS, C_IN_DROPPED, C_IN_TORN, C_IN_R = range(8)
# control words written by the worker
C_IN_W, C_OUT_R, C_WORKER_PID, C_OUT_UNDERRUNS, C_OUT_REPEATS, C_OUT_DROPPED, C_OUT_TORN = range(
    8, 15
)

QUIET_PEAK: Final = 328  # ≈ −40 dBFS: a backlog frame this quiet may be skipped unheard
CUSHION_HOLD_TICKS: Final = 500
"""Default adaptive cushion: after an under-run, a leg keeps the one-frame backlog that the
late frame leaves behind for this many ticks (10 s) instead of trimming it at the next
pause: +20 ms only on legs whose writer was just late, so a worker that is late again soon
costs nothing more. 0 = trim at once (no adaptive cushion)."""

_barrier_lock = threading.Lock()


def _quiet(frame: NDArray[np.int16]) -> bool:
    """Whether a frame is silence or near it (both signs: abs(-32768) wraps in int16)."""
    return bool(frame.max() < QUIET_PEAK and frame.min() > -QUIET_PEAK)


_memmove = ctypes.memmove


def memory_barrier() -> None:
    """Full memory barrier: a lock round-trip executes locked (serialising) instructions."""
    with _barrier_lock:
        pass


class StaleAttachmentError(RuntimeError):
    """The segment or slot no longer belongs to this attachment (mixer restarted, leg gone)."""


@dataclass(frozen=True, slots=True)
class LegAttachment:
    """Everything a worker needs to attach to one leg; small and picklable."""

    segment: str
    slot: int
    generation: int
    epoch: int
    rate: int


@dataclass(frozen=True, slots=True)
class RingCounters:
    """Health counters of one leg (all monotonic since the slot was created)."""

    in_frames: int
    in_underruns: int
    in_dropped: int
    in_torn: int
    out_frames: int
    out_underruns: int
    out_repeats: int
    out_dropped: int
    out_torn: int


@dataclass(frozen=True, slots=True)
class RingLayout:
    """Byte layout of a segment; both sides derive the same offsets from the header."""

    slots: int
    depth: int

    @property
    def ctrl_offset(self) -> int:
        return HEADER_WORDS * 8

    @property
    def in_offset(self) -> int:
        return _align(self.ctrl_offset + self.slots * CTRL_WORDS * 8)

    @property
    def in_rows(self) -> int:
        return self.slots * self.depth + 1  # + one row of silence for legs with no frame

    @property
    def out_offset(self) -> int:
        return _align(self.in_offset + self.in_rows * MAX_FRAME * 2)

    @property
    def size(self) -> int:
        return self.out_offset + self.slots * self.depth * MAX_FRAME * 2


def _align(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


class _Segment:
    """Owns the mapping and the numpy views into it; closes them in the safe order."""

    def __init__(self, shm: shared_memory.SharedMemory, layout: RingLayout) -> None:
        self.shm = shm
        self.layout = layout
        buf = shm.buf
        assert buf is not None
        self.header: NDArray[np.int64] = np.ndarray((HEADER_WORDS,), np.int64, buf, 0)
        self.ctrl: NDArray[np.int64] = np.ndarray(
            (layout.slots, CTRL_WORDS), np.int64, buf, layout.ctrl_offset
        )
        self.inp: NDArray[np.int16] = np.ndarray(
            (layout.in_rows, MAX_FRAME), np.int16, buf, layout.in_offset
        )
        self.out: NDArray[np.int16] = np.ndarray(
            (layout.slots * layout.depth, MAX_FRAME), np.int16, buf, layout.out_offset
        )

    def close(self) -> None:
        # numpy 2: closing the mapping while views exist crashes on the next access.
        del self.header, self.ctrl, self.inp, self.out
        self.shm.close()


def attach_segment(name: str) -> tuple[shared_memory.SharedMemory, RingLayout]:
    """Map an existing segment without taking ownership of its lifetime."""
    shm = shared_memory.SharedMemory(name=name)
    # Python 3.11 registers attached segments too; unregister or our exit unlinks it.
    resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    buf = shm.buf
    assert buf is not None
    header = np.ndarray((HEADER_WORDS,), np.int64, buf, 0)
    try:
        if int(header[H_MAGIC]) != MAGIC or int(header[H_VERSION]) != LAYOUT_VERSION:
            raise StaleAttachmentError(f"segment {name!r} is not a mixer ring segment")
        if int(header[H_FRAME]) != MAX_FRAME:
            raise StaleAttachmentError(f"segment {name!r} has an incompatible frame size")
        layout = RingLayout(int(header[H_SLOTS]), int(header[H_DEPTH]))
    except BaseException:
        del header
        shm.close()
        raise
    del header
    return shm, layout


class MixerRings:
    """Creator side of the segment: slot assignment and the vectorised per-tick I/O.

    Used only by the mixer thread (plus assign/release under the caller's lock).
    """

    def __init__(
        self,
        name: str,
        slots: int,
        *,
        depth: int = 8,
        reserve: int = 1,
        hold_ticks: int = CUSHION_HOLD_TICKS,
        create: bool = True,
    ) -> None:
        """``create=False``: attach to a segment another process created and owns (the
        supervisor of a mixer process): slots, depth and epoch come from its header, and
        :meth:`close` only unmaps it. Slot generations then belong to the owner; this side
        takes legs with :meth:`adopt`."""
        if depth < 4 or depth & (depth - 1):
            raise ValueError("depth must be a power of two ≥ 4")
        if not 0 <= reserve <= depth - 3:
            raise ValueError("reserve must leave room in the ring")
        self.name = name
        self.owner = create
        if create:
            self.layout = RingLayout(slots, depth)
            self.epoch = secrets.randbits(62)
            self._seg = _Segment(_create_segment(name, self.layout.size), self.layout)
            h = self._seg.header
            h[H_SLOTS], h[H_DEPTH], h[H_FRAME] = slots, depth, MAX_FRAME
            h[H_CREATOR_PID], h[H_EPOCH] = os.getpid(), self.epoch
            h[H_HEARTBEAT_NS] = time.monotonic_ns()
            h[H_VERSION] = LAYOUT_VERSION
            memory_barrier()
            h[H_MAGIC] = MAGIC  # last: attachers never see a half-initialised header
        else:
            shm, layout = attach_segment(name)
            self._seg = _Segment(shm, layout)
            if layout.slots != slots or layout.depth != depth:
                self._seg.close()
                raise StaleAttachmentError(
                    f"segment {name!r} has {layout.slots} slots × depth {layout.depth}, "
                    f"expected {slots} × {depth}"
                )
            self.layout = layout
            self.epoch = int(self._seg.header[H_EPOCH])
        self.depth = depth
        self.reserve = reserve
        self._mask = np.int64(depth - 1)
        self._zero_row = np.intp(slots * depth)
        self._keep = np.int64(reserve + 2)  # beyond this backlog the oldest frames are dropped
        self._reserve = np.int64(reserve)
        self.trimmed = 0
        """Quiet frames skipped to shrink a standing backlog (latency given back unheard)."""
        self._tick = 0
        self._hold_ticks = hold_ticks
        self._slot_hold = np.zeros(slots, dtype=np.int64)  # cushion kept until this tick
        self._zero = np.int64(0)
        # Per-slot reader/writer positions, authoritative between ticks ...
        self._slot_r_in = np.zeros(slots, dtype=np.int64)
        self._slot_w_out = np.zeros(slots, dtype=np.int64)
        self._slot_primed = np.zeros(slots, dtype=bool)
        # ... and the same state in the engine's leg order while ticking (see arrange()).
        self._slots = np.zeros(0, dtype=np.intp)
        self._base = np.zeros(slots, dtype=np.int64)  # first ring row of each leg
        self._r_in = np.zeros(slots, dtype=np.int64)
        self._w_out = np.zeros(slots, dtype=np.int64)
        self._primed = np.zeros(slots, dtype=bool)
        self._take = np.zeros(slots, dtype=bool)
        self._flag = np.zeros(slots, dtype=bool)
        self._i2 = np.zeros(slots, dtype=np.int64)
        self._in_rows = np.zeros(slots, dtype=np.intp)
        self._out_rows = np.zeros(slots, dtype=np.intp)
        self.source = FrameTable(self._seg.inp, self._in_rows)
        """Engine source: row of each leg's current input frame (the silent row if none)."""
        self.sink = FrameTable(self._seg.out, self._out_rows)
        """Engine sink: the row each leg's mix goes to this tick."""

    def arrange(self, slots: NDArray[np.intp]) -> None:
        """Adopt the engine's new leg order (after a membership change, not per tick)."""
        n_old = len(self._slots)
        self._slot_r_in[self._slots] = self._r_in[:n_old]
        self._slot_w_out[self._slots] = self._w_out[:n_old]
        self._slot_primed[self._slots] = self._primed[:n_old]
        n = len(slots)
        self._slots = slots.copy()
        self._r_in[:n] = self._slot_r_in[slots]
        self._w_out[:n] = self._slot_w_out[slots]
        self._primed[:n] = self._slot_primed[slots]
        self._base[:n] = slots * self.depth

    # ------------------------------------------------------------- slot lifetime
    def assign(self, slot: int, conference_id: int, rate: int) -> LegAttachment:
        """Hand a slot to a new leg; returns what the worker needs to attach."""
        check_rate(rate)
        ctrl = self._seg.ctrl[slot]
        gen = int(ctrl[C_GEN])
        gen = gen + 1 if gen % 2 == 0 else gen + 2  # odd = in use
        self.adopt(slot)
        ctrl[C_CONF], ctrl[C_RATE] = conference_id, rate
        memory_barrier()
        ctrl[C_GEN] = gen
        return LegAttachment(self.name, slot, gen, self.epoch, rate)

    def adopt(self, slot: int) -> None:
        """Start reading/writing a slot from its current counters (new leg, or a restarted
        mixer process taking over a live leg: the worker's port stays valid)."""
        ctrl = self._seg.ctrl[slot]
        self._slot_r_in[slot] = ctrl[C_IN_W]  # start after anything a previous leg wrote
        self._slot_w_out[slot] = ctrl[C_OUT_W]
        self._slot_primed[slot] = False
        self._slot_hold[slot] = 0

    def release(self, slot: int) -> None:
        """Take a slot back: its worker's port goes stale on its next call."""
        ctrl = self._seg.ctrl[slot]
        if int(ctrl[C_GEN]) % 2 == 1:
            ctrl[C_GEN] += 1

    # --------------------------------------------------------------- per tick
    def begin_tick(self) -> None:
        """Pick each leg's next input frame (rows in :attr:`source`) and its output row.

        A fixed number of numpy calls on arrays in leg order, whatever the number of legs.
        """
        n = len(self._slots)
        ctrl = self._seg.ctrl
        self._tick += 1
        w = ctrl[self._slots, C_IN_W]
        r, avail = self._r_in[:n], self._i2[:n]
        np.subtract(w, r, out=avail)
        most = int(avail.max(initial=0))
        if most > self._reserve + 1:  # rare: some leg has a backlog (keep > reserve + 1)
            held = self._held()
            if most > self._keep:
                # Too far behind (stalled mixer, bursty writer, lapped ring): drop the oldest.
                dropped = np.maximum(avail - (self._keep + held), 0)
                ctrl[self._slots, C_IN_DROPPED] += dropped
                r += dropped
                avail -= dropped
            self._trim_quiet(r, avail, held)
        primed, take, flag = self._primed[:n], self._take[:n], self._flag[:n]
        np.greater(avail, self._reserve, out=flag)
        np.logical_or(primed, flag, out=primed)  # the cushion has filled up once
        np.greater(avail, self._zero, out=take)
        np.logical_and(take, primed, out=take)
        np.logical_xor(primed, take, out=flag)  # primed but nothing there: an under-run
        if np.count_nonzero(flag):
            ctrl[self._slots, C_IN_UNDERRUNS] += flag
            self._slot_hold[self._slots[flag]] = self._tick + self._hold_ticks
        np.copyto(primed, take)  # an under-run re-primes the cushion
        rows = self._in_rows[:n]
        np.bitwise_and(r, self._mask, out=rows)
        np.add(rows, self._base[:n], out=rows)
        np.logical_not(take, out=flag)
        np.putmask(rows, flag, self._zero_row)
        np.add(r, take, out=r)
        out_rows = self._out_rows[:n]
        np.bitwise_and(self._w_out[:n], self._mask, out=out_rows)
        np.add(out_rows, self._base[:n], out=out_rows)

    def _trim_quiet(
        self, r: NDArray[np.int64], avail: NDArray[np.int64], held: NDArray[np.int64]
    ) -> None:
        """Skip the oldest frame of legs with a standing backlog when that frame is quiet.

        A writer that was late once leaves one extra frame queued for good (it is never
        dropped: nothing was lost); skipping it during a pause gives the 20 ms back without
        an audible cut. Rare path: only legs with ``avail > reserve + 1`` are looked at.
        """
        legs = np.flatnonzero((avail > self._reserve + 1) & (held == 0))
        rows = self._base[legs] + (r[legs] & self._mask)
        frames = self._seg.inp[rows]
        quiet = (frames.max(axis=1) < QUIET_PEAK) & (frames.min(axis=1) > -QUIET_PEAK)
        skip = legs[quiet]
        if len(skip):
            r[skip] += 1
            avail[skip] -= 1
            self.trimmed += len(skip)

    def _held(self) -> NDArray[np.int64]:
        """1 for legs (in leg order) keeping an adaptive cushion, else 0. Rare paths only."""
        return (self._slot_hold[self._slots] > self._tick).astype(np.int64)

    def torn_after_read(self) -> NDArray[np.intp]:
        """Legs (positions in leg order) whose input was overwritten while it was copied."""
        n = len(self._slots)
        if not n:
            return _NONE
        lag = self._seg.ctrl[self._slots, C_IN_W] - self._r_in[:n]
        if int(lag.max()) < self.depth - 1:  # the common case: nobody lapped us
            return _NONE
        torn: NDArray[np.intp] = np.flatnonzero((lag >= self.depth - 1) & self._take[:n])
        if len(torn):
            self._seg.ctrl[self._slots[torn], C_IN_TORN] += 1
        return torn

    def publish(self) -> None:
        """Make this tick's mixes visible to the workers and beat the heartbeat."""
        n = len(self._slots)
        w = self._w_out[:n]
        np.add(w, 1, out=w)
        memory_barrier()  # frames before counters
        self._seg.ctrl[self._slots, C_OUT_W] = w
        h = self._seg.header
        h[H_HEARTBEAT_NS] = time.monotonic_ns()
        h[H_TICKS] += 1

    # ---------------------------------------------------------------- queries
    def heartbeat_age_s(self) -> float:
        """Seconds since whoever ticks this segment last published (any process)."""
        return (time.monotonic_ns() - int(self._seg.header[H_HEARTBEAT_NS])) / 1e9

    def counters(self, slot: int) -> RingCounters:
        """Snapshot of one slot's health counters (both directions)."""
        return _counters(self._seg.ctrl[slot])

    def close(self, *, unlink: bool = True) -> None:
        """Mark the segment closed for attached workers, unmap it and (by default) unlink it.

        An attached (``create=False``) side only unmaps: the owner decides the lifetime.
        Idempotent."""
        if not hasattr(self, "source"):
            return
        if self.owner:
            self._seg.header[H_CLOSED] = 1
        del self.source, self.sink
        shm = self._seg.shm
        self._seg.close()
        if unlink and self.owner:
            # Re-register first: an attacher in our own process tree may have unregistered
            # the name from the shared tracker, and unlink() unregisters it again.
            resource_tracker.register(shm._name, "shared_memory")  # type: ignore[attr-defined]
            shm.unlink()


_NONE = np.zeros(0, dtype=np.intp)


def discard_segment(name: str) -> None:
    """Mark an orphaned segment closed and unlink it (its owner died without doing so).

    Needed because every attacher's ``resource_tracker.unregister`` also cancels the
    owner's registration in the tracker the process tree shares, so the dead owner's
    tracker does not clean it up."""
    try:
        shm = shared_memory.SharedMemory(name=name)  # registers: unlink() below balances it
    except FileNotFoundError:
        return
    if shm.size >= HEADER_WORDS * 8 and shm.buf is not None:
        header = np.ndarray((HEADER_WORDS,), np.int64, shm.buf, 0)
        header[H_CLOSED] = 1
        del header
    shm.close()
    shm.unlink()


def _create_segment(name: str, size: int) -> shared_memory.SharedMemory:
    try:
        return shared_memory.SharedMemory(name=name, create=True, size=size)
    except FileExistsError:
        # A previous mixer died without unlinking: its attached workers see the closed
        # flag and a stale heartbeat, and re-attach to the fresh segment by name.
        old = shared_memory.SharedMemory(name=name)
        if old.size >= HEADER_WORDS * 8 and old.buf is not None:
            header = np.ndarray((HEADER_WORDS,), np.int64, old.buf, 0)
            header[H_CLOSED] = 1
            del header
        old.unlink()
        old.close()
        log.warning("replaced a stale shared-memory segment %s", name)
        return shared_memory.SharedMemory(name=name, create=True, size=size)


def _counters(ctrl: NDArray[np.int64]) -> RingCounters:
    return RingCounters(
        in_frames=int(ctrl[C_IN_W]),
        in_underruns=int(ctrl[C_IN_UNDERRUNS]),
        in_dropped=int(ctrl[C_IN_DROPPED]),
        in_torn=int(ctrl[C_IN_TORN]),
        out_frames=int(ctrl[C_OUT_W]),
        out_underruns=int(ctrl[C_OUT_UNDERRUNS]),
        out_repeats=int(ctrl[C_OUT_REPEATS]),
        out_dropped=int(ctrl[C_OUT_DROPPED]),
        out_torn=int(ctrl[C_OUT_TORN]),
    )


class LegPort:
    """Worker side of one leg: write what the caller said, read what they should hear.

    Call :meth:`write_received` from ``onFrameReceived`` and :meth:`read_mixed` from
    ``onFrameRequested``; both are O(one frame copy). Not thread-safe per port (one
    pjmedia clock thread calls both).
    """

    def __init__(
        self, attachment: LegAttachment, *, reserve: int = 1, hold_ticks: int = CUSHION_HOLD_TICKS
    ) -> None:
        shm, layout = attach_segment(attachment.segment)
        seg = _Segment(shm, layout)
        try:
            if int(seg.header[H_EPOCH]) != attachment.epoch:
                raise StaleAttachmentError("the mixer was restarted: ask for a new attachment")
            if not 0 <= attachment.slot < layout.slots:
                raise StaleAttachmentError(f"slot {attachment.slot} out of range")
            if int(seg.ctrl[attachment.slot, C_GEN]) != attachment.generation:
                raise StaleAttachmentError(f"slot {attachment.slot} was reassigned")
        except BaseException:
            seg.close()
            raise
        self.attachment = attachment
        self.frame = frame_samples(attachment.rate)
        self.reserve = reserve
        self._seg = seg
        self._slot = attachment.slot
        self._gen = attachment.generation
        self._depth = layout.depth
        self._ctrl = seg.ctrl[attachment.slot]
        self._in = seg.inp[attachment.slot * layout.depth : (attachment.slot + 1) * layout.depth]
        self._out = seg.out[attachment.slot * layout.depth : (attachment.slot + 1) * layout.depth]
        self._w = int(self._ctrl[C_IN_W])
        self._r = int(self._ctrl[C_OUT_W])  # only mixes produced from now on
        self._primed = False
        self._repeated = False
        self._have_last = False
        self._reads = 0
        self._hold_ticks = hold_ticks
        self._hold_until = 0  # adaptive cushion after an under-run (CUSHION_HOLD_TICKS)
        self.trimmed = 0
        """Quiet frames skipped to shrink a standing backlog (see MixerRings._trim_quiet)."""
        self._last = np.zeros(self.frame, dtype=np.int16)
        self._scratch = np.zeros(self.frame, dtype=np.int16)
        # raw addresses for the worker's 20 ms path (write_from / read_mixed_address): a
        # FramePort moves frames with ctypes.memmove, without numpy calls per frame
        self._nbytes = self.frame * 2
        self._in_addrs = tuple(int(row.ctypes.data) for row in self._in)
        self._out_addrs = tuple(int(row.ctypes.data) for row in self._out)
        # the control row as plain int64 words: a memoryview item is a Python int, without
        # numpy's scalar machinery (≈ 5 % of a worker's CPU in perf with numpy indexing)
        self._cv = memoryview(self._ctrl).cast("B").cast("q")
        self._last_addr = int(self._last.ctypes.data)
        self._scratch_addr = int(self._scratch.ctypes.data)
        self._ctrl[C_WORKER_PID] = os.getpid()
        self._ctrl[C_OUT_R] = self._r

    @property
    def valid(self) -> bool:
        """False once the mixer released or reassigned the slot, or closed the segment."""
        return int(self._ctrl[C_GEN]) == self._gen and int(self._seg.header[H_CLOSED]) == 0

    def write_received(self, frame: NDArray[np.int16]) -> bool:
        """Publish one received 20 ms frame; False (and nothing written) if the port is stale."""
        if frame.shape != (self.frame,) or frame.dtype != np.int16:
            raise ValueError(f"expected int16 frame of {self.frame} samples, got {frame.shape}")
        if int(self._ctrl[C_GEN]) != self._gen:
            return False
        np.copyto(self._in[self._w % self._depth, : self.frame], frame)
        self._w += 1
        memory_barrier()  # the frame must be visible before the counter that announces it
        self._ctrl[C_IN_W] = self._w
        return True

    def write_from(self, address: int) -> bool:
        """:meth:`write_received` from raw memory: ``frame`` int16 samples at ``address``
        (the caller guarantees the size). The worker's per-frame path: one memmove, no
        numpy call; False (nothing written) if the port is stale."""
        cv = self._cv
        if cv[C_GEN] != self._gen:
            return False
        _memmove(self._in_addrs[self._w % self._depth], address, self._nbytes)
        self._w += 1
        memory_barrier()  # the frame must be visible before the counter that announces it
        cv[C_IN_W] = self._w
        return True

    def read_mixed_address(self) -> int:
        """:meth:`read_mixed` as the address of the frame's ``frame`` int16 samples (valid
        until the next call), 0 for silence: no ``ndarray.ctypes`` per frame."""
        return self._last_addr if self.read_mixed() is not None else 0

    @property
    def last(self) -> NDArray[np.int16]:
        """The frame the last :meth:`read_mixed` returned (reused by the next call)."""
        return self._last

    def read_mixed(self) -> NDArray[np.int16] | None:
        """Next mix frame, or None when silence should be played.

        Policy (DESIGN §5): a fresh frame if there is one; on an under-run repeat the last
        frame once, then silence (None) until the cushion of ``reserve`` frames refills.
        The returned array is reused by the next call: copy it out before then.
        """
        ctrl = self._cv  # int64 words (see __init__)
        if ctrl[C_GEN] != self._gen:
            return None
        w = ctrl[C_OUT_W]
        self._reads += 1
        held = int(self._reads < self._hold_until)
        if w - self._r > self.reserve + 2 + held:  # fell behind: skip to keep latency bounded
            ctrl[C_OUT_DROPPED] += w - (self.reserve + 1 + held) - self._r
            self._r = w - (self.reserve + 1 + held)
        avail = w - self._r
        # A standing backlog (the mixer was late once): skip its oldest frame if quiet,
        # unless this port just under-ran (the backlog is then its adaptive cushion).
        if (
            avail > self.reserve + 1
            and self._primed
            and not held
            and _quiet(self._out[self._r % self._depth, : self.frame])
        ):
            self._r += 1
            avail -= 1
            self.trimmed += 1
        if not self._primed and avail > self.reserve:
            self._primed = True
        if self._primed and avail > 0:
            _memmove(self._scratch_addr, self._out_addrs[self._r % self._depth], self._nbytes)
            lapped = ctrl[C_OUT_W] - self._r >= self._depth
            self._r += 1
            ctrl[C_OUT_R] = self._r
            if not lapped:
                self._last, self._scratch = self._scratch, self._last
                self._last_addr, self._scratch_addr = self._scratch_addr, self._last_addr
                self._have_last, self._repeated = True, False
                return self._last
            ctrl[C_OUT_TORN] += 1  # overwritten while copying: never play a torn frame
        if self._primed:
            ctrl[C_OUT_UNDERRUNS] += 1
            self._primed = False
            self._hold_until = self._reads + self._hold_ticks
        if self._have_last and not self._repeated:
            self._repeated = True
            ctrl[C_OUT_REPEATS] += 1
            return self._last
        return None

    def mixer_alive(self, max_silence_s: float = 0.5) -> bool:
        """Whether the mixer still ticks this segment (else re-attach or give up)."""
        header = self._seg.header
        if int(header[H_CLOSED]) or int(header[H_EPOCH]) != self.attachment.epoch:
            return False
        age_ns = time.monotonic_ns() - int(header[H_HEARTBEAT_NS])
        return age_ns < max_silence_s * 1e9

    def counters(self) -> RingCounters:
        """This leg's health counters (same numbers the mixer sees)."""
        return _counters(self._ctrl)

    def close(self) -> None:
        """Unmap the segment (never unlinks: the mixer owns it)."""
        if int(self._ctrl[C_GEN]) == self._gen:
            self._ctrl[C_WORKER_PID] = 0
        self._cv.release()
        del self._cv, self._ctrl, self._in, self._out
        self._seg.close()

    def __enter__(self) -> LegPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
