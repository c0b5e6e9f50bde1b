"""Short audible cues for one leg (muted / unmuted / beep), generated once as int16 frames.

Played by the worker on top of the leg's mix, so only that caller hears them.
Pure numpy; the frames are cached per (kind, rate).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from mixer.frames import frame_samples

# (frequency Hz, duration ms) steps; 0 Hz = a pause.
_PATTERNS: dict[str, tuple[tuple[int, int], ...]] = {
    "muted": ((880, 120), (0, 60), (440, 160)),  # falling pair: "off"
    "unmuted": ((440, 120), (0, 60), (880, 160)),  # rising pair: "on"
    "beep": ((1000, 200),),
}
TONE_KINDS = frozenset(_PATTERNS)
AMPLITUDE = 6000  # about −15 dBFS: audible over a conversation, never clipping the mix


@lru_cache(maxsize=16)
def tone_frames(kind: str, rate: int) -> tuple[NDArray[np.int16], ...]:
    """The cue as a tuple of 20 ms int16 frames (last one zero-padded)."""
    if kind not in _PATTERNS:
        raise ValueError(f"unknown tone {kind!r}; use one of {sorted(TONE_KINDS)}")
    parts: list[NDArray[np.float64]] = []
    for freq, ms in _PATTERNS[kind]:
        n = rate * ms // 1000
        t = np.arange(n) / rate
        wave = np.sin(2 * np.pi * freq * t) if freq else np.zeros(n)
        ramp = min(n // 2, rate // 200)  # 5 ms fades: no clicks
        if ramp:
            env = np.ones(n)
            env[:ramp] = np.linspace(0, 1, ramp)
            env[-ramp:] = np.linspace(1, 0, ramp)
            wave = wave * env
        parts.append(wave)
    signal = np.concatenate(parts) * AMPLITUDE
    frame = frame_samples(rate)
    total = -(-len(signal) // frame) * frame
    padded = np.zeros(total)
    padded[: len(signal)] = signal
    frames = np.rint(padded).astype(np.int16).reshape(-1, frame)
    for f in frames:
        f.flags.writeable = False
    return tuple(frames)
