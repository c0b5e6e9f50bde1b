"""Frame geometry shared by every mixer module: 20 ms ticks at 8, 16 or 48 kHz.

One place defines the tick and the legal rates so that rings, resamplers and the
engine can never disagree about how many samples a frame holds.
"""

from __future__ import annotations

from typing import Final

TICK_MS: Final = 20
TICK_SECONDS: Final = TICK_MS / 1000.0
SUPPORTED_RATES: Final = (8000, 16000, 48000)
MAX_RATE: Final = max(SUPPORTED_RATES)
MAX_FRAME: Final = MAX_RATE * TICK_MS // 1000  # 960 samples: room for any leg in a ring row
INT16_MIN: Final = -32768
INT16_MAX: Final = 32767


def check_rate(rate: int) -> int:
    """Return ``rate`` if the mixer supports it, else raise: rates are a closed set on purpose."""
    if rate not in SUPPORTED_RATES:
        raise ValueError(f"unsupported sample rate {rate}; use one of {SUPPORTED_RATES}")
    return rate


def frame_samples(rate: int) -> int:
    """Samples in one 20 ms frame: 160 at 8 kHz, 320 at 16 kHz, 960 at 48 kHz."""
    return check_rate(rate) * TICK_MS // 1000
