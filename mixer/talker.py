"""Per-leg talker detection and per-conference dominant speaker, vectorised over legs.

Plain energy gates fire on any loud noise, so a frame counts as *voiced* only when it is
(1) above an absolute level, (2) well above the leg's own noise floor (a minimum
tracker: follows the power down at once, creeps up slowly) and (3) strongly correlated from one
sample to the next (lag-1 autocorrelation): voiced speech is low-pass, white noise and
hiss are not. Talking starts after a few voiced frames in a row (attack) and stops after
a hangover of unvoiced frames, which bridges unvoiced consonants and short pauses.

Everything runs in the power domain (no logarithms) on arrays kept in the engine's
*leg order*, so one tick costs a fixed, small number of numpy calls however many legs
there are. The engine writes ``power``/``lag`` in place and calls :meth:`update`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FULL_SCALE_POWER = 32768.0**2


def _db_to_ratio(db: float) -> float:
    return float(10.0 ** (db / 10.0))


@dataclass(frozen=True, slots=True)
class TalkerConfig:
    """Thresholds of the detector; the defaults suit telephone speech in 20 ms frames."""

    min_level_dbfs: float = -50.0
    """Frames quieter than this are never speech (digital silence, line hiss)."""
    snr_db: float = 9.0
    """A voiced frame must be this far above the leg's noise floor."""
    min_correlation: float = 0.5
    """Lag-1 autocorrelation a voiced frame needs (white noise ≈ 0, vowels ≈ 0.8–0.99)."""
    attack_frames: int = 3
    """Consecutive voiced frames before "started talking" (60 ms: ignores clicks)."""
    hangover_frames: int = 20
    """Unvoiced frames before "stopped talking" (400 ms: bridges consonants and gaps)."""
    floor_rise_db: float = 0.5
    """How fast the noise floor creeps up per frame (25 dB/s): adapts to new steady noise
    within about a second while staying below speech, whose level keeps dipping."""
    dominance_margin_db: float = 3.0
    """A talker must be this much louder than the current dominant speaker to take over."""
    level_smoothing: float = 0.3
    """Weight of the newest measurement in the smoothed power used for dominance."""
    dominance_every: int = 5
    """While two or more legs talk, re-rank them every this many measurements (200 ms);
    any talker starting or stopping re-ranks at once."""
    every_ticks: int = 2
    """Measure and decide every this many ticks (2 = every 40 ms, on one 20 ms frame of
    two). Talker events need no finer timing than the attack and hangover, and this
    halves the detector's share of the tick; use 1 for a per-frame decision."""


class TalkerDetector:
    """Voice-activity state for up to ``capacity`` legs, stored in the engine's leg order."""

    def __init__(self, capacity: int, config: TalkerConfig | None = None) -> None:
        self.config = cfg = config or TalkerConfig()
        self.capacity = capacity
        self.power = np.zeros(capacity, dtype=np.float32)
        """Mean square of this tick's frame per leg (written by the engine)."""
        self.lag = np.zeros(capacity, dtype=np.float32)
        """Mean lag-1 product of this tick's frame per leg (written by the engine)."""
        self.audible = np.zeros(capacity, dtype=bool)
        """False for muted legs: they cannot be talking."""
        self.talking = np.zeros(capacity, dtype=bool)
        self.level = np.zeros(capacity, dtype=np.float32)
        """Smoothed power per leg, the dominance criterion."""
        self._run = np.zeros(capacity, dtype=np.int32)
        self._quiet = np.zeros(capacity, dtype=np.int32)
        self._floor = np.zeros(capacity, dtype=np.float32)
        self._gate = np.zeros(capacity, dtype=np.float32)  # 1/snr if audible, else 0
        self._tmp = np.zeros(capacity, dtype=np.float32)
        self._b1 = np.zeros(capacity, dtype=bool)
        self._b2 = np.zeros(capacity, dtype=bool)
        self._fresh = np.zeros(capacity, dtype=bool)
        self._any_fresh = False
        self._one = np.int32(1)
        if cfg.every_ticks < 1:
            raise ValueError("every_ticks must be ≥ 1")
        self._attack = np.int32(-(-cfg.attack_frames // cfg.every_ticks))
        self._hangover = np.int32(-(-cfg.hangover_frames // cfg.every_ticks))
        self._inv_snr = np.float32(1.0 / _db_to_ratio(cfg.snr_db))
        self._rise = np.float32(_db_to_ratio(cfg.floor_rise_db * cfg.every_ticks))
        # Clamping the floor here makes "above floor·snr" imply "above min_level".
        self._floor_min = np.float32(
            FULL_SCALE_POWER * _db_to_ratio(cfg.min_level_dbfs - cfg.snr_db)
        )
        self._cmin = np.float32(cfg.min_correlation)
        self._keep = np.float32(1.0 - cfg.level_smoothing)
        self._take = np.float32(cfg.level_smoothing)
        self.dominance_ratio = _db_to_ratio(cfg.dominance_margin_db)

    def rearrange(self, old: NDArray[np.intp], new: NDArray[np.intp], fresh: set[int]) -> None:
        """Move per-leg state from leg order ``old`` to ``new`` (slot ids); reset ``fresh``.

        Called on membership changes only, never per tick.
        """
        n_old, n_new = len(old), len(new)
        for arr in (self.talking, self.level, self._run, self._quiet, self._fresh, self._floor):
            by_slot = np.zeros((self.capacity, *arr.shape[1:]), dtype=arr.dtype)
            by_slot[old] = arr[:n_old]
            arr[:n_new] = by_slot[new]
        is_fresh = np.isin(new, np.fromiter(fresh, dtype=np.intp, count=len(fresh)))
        self.talking[:n_new][is_fresh] = False
        self.level[:n_new][is_fresh] = 0.0
        self._run[:n_new][is_fresh] = 0
        self._quiet[:n_new][is_fresh] = self._hangover
        self._fresh[:n_new] |= is_fresh
        self._any_fresh = bool(self._fresh[:n_new].any())

    def set_audible(self, audible: NDArray[np.bool_]) -> None:
        """Per leg in leg order: False for muted legs, which therefore never talk."""
        n = len(audible)
        self.audible[:n] = audible
        self._gate[:n] = np.where(audible, self._inv_snr, np.float32(0.0))

    def update(self, n: int) -> NDArray[np.intp]:
        """Advance legs ``0..n-1`` by one measurement; return positions whose state flipped.

        Call it once per ``every_ticks`` ticks, after the engine wrote ``power``/``lag``.
        """
        p = self.power[:n]
        floor = self._floor[:n]
        if self._any_fresh:
            # A new leg's floor starts at its first frame: steady noise never looks like speech.
            fresh = self._fresh[:n]
            floor[fresh] = np.maximum(p[fresh], self._floor_min)
            fresh[:] = False
            self._any_fresh = False
        voiced, other = self._b1[:n], self._b2[:n]
        tmp = self._tmp[:n]
        np.multiply(p, self._gate[:n], out=tmp)  # p/snr, or 0 for a muted leg
        np.greater(tmp, floor, out=voiced)
        np.multiply(p, self._cmin, out=tmp)
        np.greater(self.lag[:n], tmp, out=other)  # lag/power > min_correlation
        np.logical_and(voiced, other, out=voiced)
        np.multiply(floor, self._rise, out=floor)
        np.minimum(floor, p, out=floor)
        np.maximum(floor, self._floor_min, out=floor)
        run, quiet = self._run[:n], self._quiet[:n]
        np.add(run, self._one, out=run)
        np.multiply(run, voiced, out=run)
        np.add(quiet, self._one, out=quiet)
        np.logical_not(voiced, out=other)
        np.multiply(quiet, other, out=quiet)
        # talking' = quiet < hangover and (talking or run >= attack); run >= attack ⇒ quiet = 0
        talking = self.talking[:n]
        np.greater_equal(run, self._attack, out=other)
        np.logical_or(other, talking, out=other)
        np.less(quiet, self._hangover, out=voiced)
        np.logical_and(voiced, other, out=voiced)
        np.not_equal(voiced, talking, out=other)
        changed = np.flatnonzero(other) if np.count_nonzero(other) else _EMPTY
        np.copyto(talking, voiced)
        level = self.level[:n]
        np.multiply(level, self._keep, out=level)
        np.multiply(p, self._take, out=tmp)
        np.add(level, tmp, out=level)
        return changed


_EMPTY = np.zeros(0, dtype=np.intp)


def segment_dominant(
    levels: NDArray[np.float32],
    talking: NDArray[np.bool_],
    *,
    starts: NDArray[np.intp],
    segment_of: NDArray[np.intp],
    current: NDArray[np.intp],
    ratio: float,
) -> NDArray[np.intp]:
    """Pick the dominant talker of each contiguous segment (one segment per conference).

    ``levels``/``talking`` are in segment order, ``starts`` are the segment offsets and
    ``segment_of`` gives each position's segment, ``current`` holds each segment's present
    dominant position (-1: none). Returns new positions (-1: nobody talks). The present
    speaker keeps the floor while talking unless someone is ``ratio`` times louder, so the
    choice does not flicker between two voices.
    """
    n = len(levels)
    masked = np.where(talking, levels, -1.0)
    best_level = np.maximum.reduceat(masked, starts)
    is_best = masked == best_level[segment_of]
    positions = np.where(is_best, np.arange(n), n)
    best = np.minimum.reduceat(positions, starts)
    best = np.where(best_level >= 0.0, best, -1)
    has_current = current >= 0
    cur_level = np.where(has_current, masked[np.maximum(current, 0)], -1.0)
    keep = (cur_level >= 0.0) & (best_level <= cur_level * ratio)
    return np.where(keep, current, best).astype(np.intp)
