"""Band-limited, stateful integer-ratio resampling for many legs at once.

Every rate pair the mixer needs (8↔16, 16↔48, 8↔48 kHz) is an integer ratio, so a
polyphase FIR is exact and has a fixed output length per 20 ms frame (no variable chunks
as with a general-purpose streaming resampler). The filter is a Kaiser-windowed sinc
designed with numpy only. To keep the per-tick work in BLAS rather than Python, each
frame is cut into blocks and every block is one row of a GEMM against a constant
block-Toeplitz matrix; per-leg filter history lives in a preallocated array indexed by
leg slot, so legs can join and leave without any reallocation.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from mixer.frames import frame_samples

TAPS_PER_PHASE: Final = 48
"""Filter length per polyphase branch; with the Kaiser beta below it gives image
and alias rejection (≥ 65 dB from the lower Nyquist frequency up) with the passband
flat to 80 % of it (3.2 kHz for an 8 kHz leg)."""
KAISER_BETA: Final = 6.5
PASSBAND_FRACTION: Final = 0.80
BLOCK: Final = 40  # divides 160 and 320, the low-rate frame lengths

Float32Array = NDArray[np.float32]
IndexArray = NDArray[np.intp]


def design_lowpass(ratio: int, taps_per_phase: int = TAPS_PER_PHASE) -> Float32Array:
    """Kaiser-windowed sinc at the high rate, cutting at the lower rate's Nyquist.

    The cutoff sits halfway between the passband edge and the low Nyquist frequency so
    that the stopband begins exactly where aliasing would start. The array has
    ``ratio * taps_per_phase`` taps for the polyphase split, the trailing ones zero, so
    that the group delay is a whole number of *low-rate* samples (see
    :func:`effective_length`): mixed-rate paths then stay sample-aligned.
    """
    n = ratio * taps_per_phase
    n_eff = effective_length(ratio, taps_per_phase)
    nyq_fraction = 1.0 / ratio  # low Nyquist relative to high Nyquist
    cutoff = 0.5 * nyq_fraction * (1.0 + PASSBAND_FRACTION) / 2.0  # cycles per sample
    t = np.arange(n_eff) - (n_eff - 1) / 2.0
    h = 2.0 * cutoff * np.sinc(2.0 * cutoff * t) * np.kaiser(n_eff, KAISER_BETA)
    h /= h.sum()  # unity DC gain
    out = np.zeros(n, dtype=np.float64)
    out[:n_eff] = h
    return out.astype(np.float32)


def effective_length(ratio: int, taps_per_phase: int = TAPS_PER_PHASE) -> int:
    """Longest odd filter length that fits and whose centre is a multiple of ``ratio``."""
    return 2 * ratio * ((ratio * taps_per_phase - 1) // (2 * ratio)) + 1


class BatchResampler:
    """Convert frames of ``rate_in`` to ``rate_out`` for a batch of legs, keeping state per slot.

    ``process(x, slots)`` takes ``x`` of shape ``(len(slots), frame_in)`` and returns a view
    of shape ``(len(slots), frame_out)`` into an internal buffer (valid until the next call).
    """

    def __init__(self, rate_in: int, rate_out: int, capacity: int) -> None:
        self.rate_in = rate_in
        self.rate_out = rate_out
        self.frame_in = frame_samples(rate_in)
        self.frame_out = frame_samples(rate_out)
        if rate_out % rate_in == 0 and rate_out > rate_in:
            self.up, self.down = rate_out // rate_in, 1
        elif rate_in % rate_out == 0 and rate_in > rate_out:
            self.up, self.down = 1, rate_in // rate_out
        else:
            raise ValueError(f"no integer ratio between {rate_in} and {rate_out}")
        ratio = max(self.up, self.down)
        h = design_lowpass(ratio)
        if self.up > 1:
            h = h * self.up  # zero-stuffing divides the energy by the ratio
            hist = TAPS_PER_PHASE - 1
            step, block_out = BLOCK, BLOCK * self.up
            window = BLOCK + hist
            self.blocks = self.frame_in // BLOCK
            matrix = _upsample_block_matrix(h, self.up, BLOCK, hist)
        else:
            hist = len(h) - 1
            step, block_out = BLOCK * self.down, BLOCK
            window = (BLOCK - 1) * self.down + len(h)
            self.blocks = self.frame_out // BLOCK
            matrix = _downsample_block_matrix(h, self.down, BLOCK)
        self.delay_out_samples = (effective_length(ratio) - 1) // 2 // self.down
        """Group delay in output-rate samples (an integer; used by tests and latency reports)."""
        self._hist = hist
        self._step = step
        self._window = window
        self._matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self._state = np.zeros((capacity, hist), dtype=np.float32)
        self._ext = np.zeros((capacity, hist + self.frame_in), dtype=np.float32)
        self._windows = np.zeros((capacity * self.blocks, window), dtype=np.float32)
        self._out = np.zeros((capacity * self.blocks, block_out), dtype=np.float32)
        self._gather = np.zeros((capacity, hist), dtype=np.float32)

    def reset(self, slot: int) -> None:
        """Forget a slot's history (a new leg must not hear the previous one's tail)."""
        self._state[slot] = 0.0

    def process(self, x: Float32Array, slots: IndexArray) -> Float32Array:
        """Resample one frame per leg; ``x`` rows correspond to ``slots``."""
        n = len(slots)
        ext = self._ext[:n]
        np.take(self._state, slots, axis=0, out=self._gather[:n])
        ext[:, : self._hist] = self._gather[:n]
        ext[:, self._hist :] = x
        views = sliding_window_view(ext, self._window, axis=1)[:, :: self._step][:, : self.blocks]
        win = self._windows[: n * self.blocks]
        np.copyto(win.reshape(n, self.blocks, self._window), views)
        out = self._out[: n * self.blocks]
        np.matmul(win, self._matrix, out=out)
        self._state[slots] = ext[:, self.frame_in :]
        return out.reshape(n, self.frame_out)


def _upsample_block_matrix(h: Float32Array, up: int, block: int, hist: int) -> Float32Array:
    """Map a window of ``block + hist`` input samples to ``block * up`` output samples.

    Output ``y[q*up + p] = sum_k h[k*up + p] * x[q - k]``; window index ``i`` holds
    ``x[q0 - hist + i]`` for the block starting at input ``q0``.
    """
    taps = len(h) // up
    m = np.zeros((block + hist, block * up), dtype=np.float64)
    for qq in range(block):
        for p in range(up):
            for k in range(taps):
                i = hist + qq - k
                if 0 <= i < block + hist:
                    m[i, qq * up + p] = h[k * up + p]
    return m.astype(np.float32)


def _downsample_block_matrix(h: Float32Array, down: int, block: int) -> Float32Array:
    """Map a window of ``(block-1)*down + len(h)`` input samples to ``block`` outputs.

    Output ``y[q] = sum_j h[j] * x[q*down - j]``; window index ``i`` holds
    ``x[q0*down - (len(h)-1) + i]`` for the block starting at output ``q0``.
    """
    n = len(h)
    window = (block - 1) * down + n
    m = np.zeros((window, block), dtype=np.float64)
    for qq in range(block):
        for j in range(n):
            m[n - 1 + qq * down - j, qq] = h[j]
    return m.astype(np.float32)
