"""The conference mixer: every listener hears the sum of all other unmuted legs.

All rooms of a node are mixed in one pass per 20 ms tick. Legs live in fixed *slots* of
preallocated arrays (``inbuf``/``outbuf`` rows); membership changes only rebuild small
index vectors (the *plan*), never the audio buffers. Per tick and per internal rate the
work is a constant number of numpy calls whatever the number of rooms:

1. gather each leg's int16 frame, convert to float32, measure talker features;
2. resample legs whose rate differs from their conference's internal rate (band-limited);
3. weight by gain (mute = gain 0, hence exact digital silence from that leg);
4. sum per conference once (``np.add.reduceat`` over legs sorted by conference);
5. each listener gets ``total − own`` (mix-minus: O(N) per conference, not O(N²));
6. resample back, round, saturate to int16 (never wrap) and scatter to ``outbuf``.

The internal rate of a conference is the highest rate among its legs (capped by
``max_internal_rate``), so narrowband-only rooms stay cheap and no leg loses bandwidth.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

from mixer.frames import INT16_MAX, INT16_MIN, MAX_FRAME, SUPPORTED_RATES, check_rate
from mixer.frames import frame_samples as _frame
from mixer.resample import BatchResampler
from mixer.talker import FULL_SCALE_POWER, TalkerConfig, TalkerDetector, segment_dominant

ConferenceKey: TypeAlias = Hashable
IntArray: TypeAlias = NDArray[np.intp]
_EMPTY = np.zeros(0, dtype=np.intp)


@dataclass(frozen=True, slots=True)
class TalkerEvent:
    """A leg started (``talking=True``) or stopped talking."""

    leg: int
    conference: ConferenceKey
    talking: bool


@dataclass(frozen=True, slots=True)
class DominantSpeakerEvent:
    """The loudest current talker of a conference changed (``leg=None``: nobody talks)."""

    conference: ConferenceKey
    leg: int | None


MixerEvent: TypeAlias = TalkerEvent | DominantSpeakerEvent


@dataclass(slots=True)
class _Conference:
    key: ConferenceKey
    rate: int = 0
    legs: list[int] = field(default_factory=list)
    dominant: int = -1  # slot


@dataclass(slots=True)
class _Group:
    """The legs of one sample rate inside one plane."""

    rate: int
    frame: int
    slots: IntArray
    positions: IntArray  # rows in the plane's conference-sorted order
    order: IntArray | slice  # the same legs' positions in the engine's leg order
    full: bool  # the group is the whole plane, in order: no scatter needed
    up: BatchResampler | None
    down: BatchResampler | None
    stage: int  # first row of this group in the per-rate staging buffers
    gains: NDArray[np.float32]  # (legs, 1) effective gains, refreshed when they change
    unity: bool = True  # every gain is exactly 1: skip the multiply


@dataclass(frozen=True, slots=True)
class FrameTable:
    """Where frames live: ``frames[rows[i], :rate/50]`` is the frame of leg ``active_slots[i]``.

    ``rows`` follows the engine's leg order (:attr:`Mixer.active_slots`), so the shared-memory
    rings can be read and written in place, without a copy through ``inbuf``/``outbuf``
    and without per-tick gathers by slot.
    """

    frames: NDArray[np.int16]
    rows: IntArray


@dataclass(frozen=True, slots=True)
class _Bucket:
    """Conferences of equal size ``legs``: rows ``[row, row + count*legs)`` of the plane."""

    row: int
    first: int  # index of the first of these conferences in the plane
    count: int
    legs: int


@dataclass(slots=True)
class _Plane:
    """All conferences whose internal rate is ``rate``, legs sorted by conference.

    Conferences are ordered by size so that equal-sized ones form one ``(count, legs,
    frame)`` block: the per-conference sum is then one reduction per distinct size.
    """

    rate: int
    frame: int
    offset: int  # position of the plane's first leg in the engine's leg order
    slots: IntArray
    starts: IntArray
    segment_of: IntArray
    conferences: list[_Conference]
    groups: list[_Group]
    buckets: list[_Bucket]
    dominant: IntArray  # per conference: slot of the dominant speaker or -1
    exact: bool = True  # same-rate legs at unity gain: sums are integers, no rounding


class Mixer:
    """Vectorised mix-minus for all conferences of a node; not thread-safe (one owner)."""

    def __init__(
        self,
        capacity: int = 256,
        *,
        max_internal_rate: int = 48000,
        talker: TalkerConfig | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.max_internal_rate = check_rate(max_internal_rate)
        self.inbuf = np.zeros((capacity, MAX_FRAME), dtype=np.int16)
        """Row ``slot`` holds the leg's newest received frame in its first ``rate/50`` samples."""
        self.outbuf = np.zeros((capacity, MAX_FRAME), dtype=np.int16)
        """Row ``slot`` receives the leg's mix (everyone else) after each :meth:`tick`."""
        self.talker = TalkerDetector(capacity, talker)
        self._rate = np.zeros(capacity, dtype=np.int32)
        self._gain = np.ones(capacity, dtype=np.float32)
        self._muted = np.zeros(capacity, dtype=bool)
        self._deaf: set[int] = set()  # listeners whose mix is replaced by silence
        self._eff_gain = np.zeros(capacity, dtype=np.float32)
        self._conf_of: list[_Conference | None] = [None] * capacity
        self._order_pos = np.zeros(capacity, dtype=np.intp)  # slot → position in leg order
        self._fresh: set[int] = set()
        self._gains_dirty = False
        self._ticks = 0
        self._evaluations = 0
        self._measuring = False
        self._free: deque[int] = deque(range(capacity))
        self._conferences: dict[ConferenceKey, _Conference] = {}
        self._planes: list[_Plane] = []
        self._active: IntArray = _EMPTY
        self._pending: list[MixerEvent] = []
        self._resamplers: dict[tuple[int, int], BatchResampler] = {}
        # Work buffers, allocated once per rate when first needed (never inside tick()).
        self._leg_f32: dict[int, NDArray[np.float32]] = {}
        self._plane_x: dict[int, NDArray[np.float32]] = {}
        self._plane_s: dict[int, NDArray[np.float32]] = {}
        self._plane_y: dict[int, NDArray[np.float32]] = {}
        self._feat_a = np.zeros(capacity, dtype=np.float32)
        self._feat_b = np.zeros(capacity, dtype=np.float32)
        self._gains = np.zeros(capacity, dtype=np.float32)
        self._plane_pos = np.zeros(capacity, dtype=np.intp)
        self._in_table = FrameTable(self.inbuf, _EMPTY)
        self._out_table = FrameTable(self.outbuf, _EMPTY)

    # ----------------------------------------------------------------- membership
    def add_leg(
        self,
        conference: ConferenceKey,
        rate: int,
        gain: float = 1.0,
        *,
        muted: bool = False,
        slot: int | None = None,
    ) -> int:
        """Put a new leg into ``conference`` (created on first leg) and return its slot.

        ``slot``: take this free slot (a mixer process adopting the supervisor's slots).
        """
        check_rate(rate)
        _check_gain(gain)
        if slot is None:
            if not self._free:
                raise RuntimeError(f"mixer is full ({self.capacity} legs)")
            slot = self._free.popleft()
        else:
            try:
                self._free.remove(slot)
            except ValueError:
                raise ValueError(f"slot {slot} is not free") from None
        conf = self._conferences.get(conference)
        if conf is None:
            conf = self._conferences[conference] = _Conference(conference)
        self._rate[slot] = rate
        self._gain[slot] = gain
        self._muted[slot] = muted
        self._update_eff_gain(slot)
        self._conf_of[slot] = conf
        self.inbuf[slot] = 0
        self.outbuf[slot] = 0
        self._fresh.add(slot)
        self._ensure_buffers(rate)
        conf.legs.append(slot)
        self._set_conference_rate(conf, slot)
        self._rebuild_plan()
        return slot

    def remove_leg(self, leg: int) -> None:
        """Take a leg out; the next :meth:`tick` reports it stopped talking if it was."""
        conf = self._conference_of(leg)
        conf.legs.remove(leg)
        if self.talker.talking[self._order_pos[leg]]:
            self._pending.append(TalkerEvent(leg, conf.key, False))
        if conf.dominant == leg:
            conf.dominant = -1
            self._pending.append(DominantSpeakerEvent(conf.key, None))
        self._conf_of[leg] = None
        self._deaf.discard(leg)
        self.outbuf[leg] = 0
        if conf.legs:
            self._set_conference_rate(conf, None)
        else:
            del self._conferences[conf.key]
        self._free.append(leg)
        self._rebuild_plan()

    def set_mute(self, leg: int, muted: bool) -> None:
        """Muted legs contribute exact zeros to every mix; they still hear the others."""
        self._conference_of(leg)
        self._muted[leg] = muted
        self._update_eff_gain(leg)

    def set_deaf(self, leg: int, deaf: bool) -> None:
        """Deaf legs get exact silence instead of their mix (e.g. a caller still entering a
        dial-in PIN must not hear the conference); what they say is governed by mute."""
        self._conference_of(leg)
        (self._deaf.add if deaf else self._deaf.discard)(leg)

    def is_deaf(self, leg: int) -> bool:
        self._conference_of(leg)
        return leg in self._deaf

    def set_gain(self, leg: int, gain: float) -> None:
        """Linear gain applied to what this leg says (1.0 = unchanged)."""
        self._conference_of(leg)
        _check_gain(gain)
        self._gain[leg] = gain
        self._update_eff_gain(leg)

    # ------------------------------------------------------------------ queries
    def leg_rate(self, leg: int) -> int:
        """Sample rate of a leg (its frames hold ``rate/50`` samples)."""
        self._conference_of(leg)
        return int(self._rate[leg])

    def leg_conference(self, leg: int) -> ConferenceKey:
        """The conference a leg belongs to."""
        return self._conference_of(leg).key

    def is_muted(self, leg: int) -> bool:
        """Whether the leg's voice is currently removed from the mix."""
        self._conference_of(leg)
        return bool(self._muted[leg])

    def gain(self, leg: int) -> float:
        """The leg's configured gain (independent of mute)."""
        self._conference_of(leg)
        return float(self._gain[leg])

    def conferences(self) -> list[ConferenceKey]:
        """Keys of all conferences with at least one leg."""
        return list(self._conferences)

    def conference_legs(self, conference: ConferenceKey) -> list[int]:
        """Slots of a conference's legs, in joining order."""
        conf = self._conferences.get(conference)
        return list(conf.legs) if conf else []

    def conference_rate(self, conference: ConferenceKey) -> int:
        """Internal mixing rate chosen for a conference."""
        return self._conferences[conference].rate

    def dominant_speaker(self, conference: ConferenceKey) -> int | None:
        """The conference's current dominant talker, if anyone talks."""
        conf = self._conferences.get(conference)
        return conf.dominant if conf and conf.dominant >= 0 else None

    def is_talking(self, leg: int) -> bool:
        """Talker state of a leg after the last tick."""
        self._conference_of(leg)
        return bool(self.talker.talking[self._order_pos[leg]])

    def levels(self) -> dict[int, tuple[float, float]]:
        """Per slot: smoothed power of what the leg says and of what it adds to the mix
        (× gain², so exactly 0 while muted), as fractions of full-scale power. For
        dashboards and the demo; updated at the talker detector's pace."""
        power = self.talker.level
        out: dict[int, tuple[float, float]] = {}
        for slot in self._active.tolist():
            p = float(power[self._order_pos[slot]]) / FULL_SCALE_POWER
            g = float(self._eff_gain[slot])
            out[slot] = (p, p * g * g)
        return out

    @property
    def active_slots(self) -> IntArray:
        """Slots of all legs, grouped by internal rate then conference (read-only use)."""
        return self._active

    def input_frame(self, leg: int) -> NDArray[np.int16]:
        """Writable view of the leg's input row, exactly one frame long."""
        return self.inbuf[leg, : _frame(self.leg_rate(leg))]

    def output_frame(self, leg: int) -> NDArray[np.int16]:
        """View of the leg's latest mix, exactly one frame long."""
        return self.outbuf[leg, : _frame(self.leg_rate(leg))]

    # --------------------------------------------------------------------- tick
    def tick(self) -> list[MixerEvent]:
        """Mix one 20 ms frame from ``inbuf`` into ``outbuf``; return talker events."""
        self.load(self._in_table)
        return self.mix(self._out_table)

    def load(self, source: FrameTable) -> None:
        """First half of a tick: take every leg's frame from ``source`` and stage it."""
        if self._gains_dirty:
            self._refresh_gains()
        self._ticks += 1
        self._measuring = self._ticks % self.talker.config.every_ticks == 0
        for plane in self._planes:
            self._load_plane(plane, source)

    def discard(self, legs: IntArray) -> None:
        """Replace staged input of ``legs`` by silence (e.g. a torn shared-memory read)."""
        for leg in legs.tolist():
            conf = self._conference_of(leg)
            self._plane_x[conf.rate][self._plane_pos[leg]] = 0.0
            self.talker.power[self._order_pos[leg]] = 0.0

    def mix(self, sink: FrameTable) -> list[MixerEvent]:
        """Second half of a tick: mix-minus, write every leg's mix into ``sink``."""
        events, self._pending = self._pending, []
        for plane in self._planes:
            self._mix_plane(plane, sink)
        for leg in self._deaf:  # few at a time: a loop beats a mask over every leg
            sink.frames[sink.rows[self._order_pos[leg]], : _frame(int(self._rate[leg]))] = 0
        n = len(self._active)
        if n and self._measuring:
            changed = self.talker.update(n)
            if len(changed):
                talking = self.talker.talking
                for pos in changed.tolist():
                    leg = int(self._active[pos])
                    events.append(
                        TalkerEvent(leg, self._conference_of(leg).key, bool(talking[pos]))
                    )
            # One talker (or none) and no change: the dominant speaker cannot have changed.
            self._evaluations += 1
            rerank = self._evaluations % self.talker.config.dominance_every == 0
            if len(changed) or (rerank and np.count_nonzero(self.talker.talking[:n]) >= 2):
                for plane in self._planes:
                    self._update_dominant(plane, events)
        return events

    def _load_plane(self, plane: _Plane, source: FrameTable) -> None:
        n = len(plane.slots)
        x = self._plane_x[plane.rate][:n]
        for g in plane.groups:
            ng = len(g.slots)
            # Fancy indexing gathers just these rows (np.take would copy a strided source).
            raw = source.frames[source.rows[g.order], : g.frame]
            direct = g.up is None and g.full  # stage straight into the plane
            sig = x if direct else self._leg_f32[g.rate][g.stage : g.stage + ng]
            np.copyto(sig, raw)
            if self._measuring:
                self._measure(sig, plane.offset, None if g.full else g.positions)
            if g.up is None:
                if not g.unity:
                    np.multiply(sig, g.gains, out=sig)
                if not g.full:
                    x[g.positions] = sig
            else:
                up = g.up.process(sig, g.slots)
                if not g.unity:
                    np.multiply(up, g.gains, out=up)  # after the filter: mute is exact
                if g.full:
                    np.copyto(x, up)
                else:
                    x[g.positions] = up

    def _mix_plane(self, plane: _Plane, sink: FrameTable) -> None:
        n = len(plane.slots)
        frame = plane.frame
        x = self._plane_x[plane.rate]
        y = self._plane_y[plane.rate]
        totals = self._plane_s[plane.rate]
        for b in plane.buckets:
            end = b.row + b.count * b.legs
            xb = x[b.row : end].reshape(b.count, b.legs, frame)
            sums = totals[b.first : b.first + b.count]
            np.add.reduce(xb, axis=1, out=sums)  # each conference's total, once
            # total − own: the listener never hears itself, O(N) per conference.
            np.subtract(sums[:, None, :], xb, out=y[b.row : end].reshape(xb.shape))
        y = y[:n]
        for g in plane.groups:
            mix = y if g.full else y[g.positions]
            if g.down is not None:
                mix = g.down.process(mix, g.slots)
            if not plane.exact:
                np.rint(mix, out=mix)
            np.clip(mix, INT16_MIN, INT16_MAX, out=mix)  # saturate, never wrap
            sink.frames[sink.rows[g.order], : g.frame] = mix

    def _measure(self, sig: NDArray[np.float32], offset: int, positions: IntArray | None) -> None:
        """Mean power and mean lag-1 product per leg (pre-gain) into the talker's arrays."""
        ng, frame = sig.shape
        if positions is None:
            energy = self.talker.power[offset : offset + ng]
            lag1 = self.talker.lag[offset : offset + ng]
        else:
            energy, lag1 = self._feat_a[:ng], self._feat_b[:ng]
        np.matmul(sig[:, None, :], sig[:, :, None], out=energy[:, None, None])
        np.matmul(sig[:, None, 1:], sig[:, :-1, None], out=lag1[:, None, None])
        scale = np.float32(1.0 / frame)
        np.multiply(energy, scale, out=energy)
        np.multiply(lag1, scale, out=lag1)
        if positions is not None:
            self.talker.power[offset + positions] = energy
            self.talker.lag[offset + positions] = lag1

    def _update_dominant(self, plane: _Plane, events: list[MixerEvent]) -> None:
        slots = plane.slots
        current = plane.dominant
        span = slice(plane.offset, plane.offset + len(slots))
        current_pos = np.where(current >= 0, self._plane_pos[np.maximum(current, 0)], -1)
        best = segment_dominant(
            self.talker.level[span],
            self.talker.talking[span],
            starts=plane.starts,
            segment_of=plane.segment_of,
            current=current_pos,
            ratio=self.talker.dominance_ratio,
        )
        new = np.where(best >= 0, slots[np.maximum(best, 0)], -1)
        for i in np.flatnonzero(new != current).tolist():
            leg = int(new[i])
            current[i] = leg
            conf = plane.conferences[i]
            conf.dominant = leg
            events.append(DominantSpeakerEvent(conf.key, leg if leg >= 0 else None))

    # --------------------------------------------------------------- internals
    def _conference_of(self, leg: int) -> _Conference:
        conf = self._conf_of[leg] if 0 <= leg < self.capacity else None
        if conf is None:
            raise KeyError(f"no leg in slot {leg}")
        return conf

    def _update_eff_gain(self, slot: int) -> None:
        self._eff_gain[slot] = 0.0 if self._muted[slot] else self._gain[slot]
        self._gains_dirty = True

    def _refresh_gains(self) -> None:
        """Re-gather per-group gains after set_gain/set_mute (not on every tick)."""
        for plane in self._planes:
            exact = True
            for g in plane.groups:
                g.gains[:, 0] = self._eff_gain[g.slots]
                g.unity = bool(np.all(g.gains == 1.0))
                exact = exact and g.unity and g.up is None
            plane.exact = exact
        self.talker.set_audible(self._eff_gain[self._active] > 0.0)
        self._gains_dirty = False

    def _set_conference_rate(self, conf: _Conference, new_slot: int | None) -> None:
        rate = min(max(int(self._rate[s]) for s in conf.legs), self.max_internal_rate)
        changed = rate != conf.rate
        conf.rate = rate
        self._ensure_buffers(rate)
        # A changed internal rate changes every leg's conversion path: start them clean.
        resets = conf.legs if changed else [new_slot] if new_slot is not None else []
        for slot in resets:
            leg_rate = int(self._rate[slot])
            if leg_rate != rate:
                self._resampler(leg_rate, rate).reset(slot)
                self._resampler(rate, leg_rate).reset(slot)

    def _resampler(self, rate_in: int, rate_out: int) -> BatchResampler:
        key = (rate_in, rate_out)
        rs = self._resamplers.get(key)
        if rs is None:
            rs = self._resamplers[key] = BatchResampler(rate_in, rate_out, self.capacity)
        return rs

    def _ensure_buffers(self, rate: int) -> None:
        if rate in self._leg_f32:
            return
        frame = _frame(rate)
        self._leg_f32[rate] = np.zeros((self.capacity, frame), dtype=np.float32)
        self._plane_x[rate] = np.zeros((self.capacity, frame), dtype=np.float32)
        self._plane_s[rate] = np.zeros((self.capacity, frame), dtype=np.float32)
        self._plane_y[rate] = np.zeros((self.capacity, frame), dtype=np.float32)

    def _rebuild_plan(self) -> None:
        planes: list[_Plane] = []
        stage_next = dict.fromkeys(SUPPORTED_RATES, 0)
        offset = 0
        for rate in SUPPORTED_RATES:
            confs = sorted(
                (c for c in self._conferences.values() if c.rate == rate), key=lambda c: len(c.legs)
            )
            if not confs:
                continue
            sizes = np.array([len(c.legs) for c in confs], dtype=np.intp)
            slots = np.array([s for c in confs for s in c.legs], dtype=np.intp)
            starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.intp)
            segment_of = np.repeat(np.arange(len(confs), dtype=np.intp), sizes)
            buckets = []
            for size in np.unique(sizes).tolist():
                members = np.flatnonzero(sizes == size)
                first = int(members[0])
                buckets.append(_Bucket(int(starts[first]), first, len(members), size))
            leg_rates = self._rate[slots]
            groups = []
            for leg_rate in SUPPORTED_RATES:
                mask = leg_rates == leg_rate
                if not mask.any():
                    continue
                resampled = leg_rate != rate
                count = int(mask.sum())
                groups.append(
                    _Group(
                        rate=leg_rate,
                        frame=_frame(leg_rate),
                        slots=slots[mask],
                        positions=np.flatnonzero(mask).astype(np.intp),
                        order=(
                            slice(offset, offset + count)
                            if count == len(slots)
                            else offset + np.flatnonzero(mask).astype(np.intp)
                        ),
                        full=bool(mask.all()),
                        up=self._resampler(leg_rate, rate) if resampled else None,
                        down=self._resampler(rate, leg_rate) if resampled else None,
                        stage=stage_next[leg_rate],
                        gains=np.ones((count, 1), dtype=np.float32),
                    )
                )
                stage_next[leg_rate] += count
            self._plane_pos[slots] = np.arange(len(slots))
            dominant = np.array([c.dominant for c in confs], dtype=np.intp)
            planes.append(
                _Plane(
                    rate=rate,
                    frame=_frame(rate),
                    offset=offset,
                    slots=slots,
                    starts=starts,
                    segment_of=segment_of,
                    conferences=confs,
                    groups=groups,
                    buckets=buckets,
                    dominant=dominant,
                )
            )
            offset += len(slots)
        active = np.concatenate([p.slots for p in planes]) if planes else _EMPTY
        self.talker.rearrange(self._active, active, self._fresh)
        self._fresh.clear()
        self._order_pos[active] = np.arange(len(active))
        self._planes = planes
        self._active = active
        self._in_table = FrameTable(self.inbuf, active)
        self._out_table = FrameTable(self.outbuf, active)
        self._refresh_gains()


def _check_gain(gain: float) -> None:
    if not (np.isfinite(gain) and gain >= 0.0):
        raise ValueError(f"gain must be finite and ≥ 0, got {gain}")
