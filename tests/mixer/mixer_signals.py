"""Signal helpers shared by the mixer tests (frames, scaling, SNR and leak measures)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mixer.frames import frame_samples


def frames_of(signal: NDArray[np.int16], rate: int, count: int) -> NDArray[np.int16]:
    """``count`` consecutive 20 ms frames of ``signal`` (zero-padded), shape (count, F)."""
    f = frame_samples(rate)
    out = np.zeros(count * f, dtype=np.int16)
    n = min(len(signal), len(out))
    out[:n] = signal[:n]
    return out.reshape(count, f)


def scaled(signal: NDArray[np.int16], rms_dbfs: float) -> NDArray[np.int16]:
    """The signal rescaled to an RMS level in dBFS (saturating, as a real line would)."""
    x = signal.astype(np.float64)
    rms = np.sqrt(np.mean(x**2))
    target = 32768.0 * 10 ** (rms_dbfs / 20)
    return np.clip(np.rint(x * target / rms), -32768, 32767).astype(np.int16)


def snr_db(reference: NDArray[np.floating], actual: NDArray[np.floating]) -> float:
    """Signal-to-error ratio of ``actual`` against ``reference`` (inf when identical)."""
    err = np.sum((actual.astype(np.float64) - reference) ** 2)
    sig = np.sum(np.asarray(reference, dtype=np.float64) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(sig / err))


def leak_db(
    output: NDArray[np.floating], reference: NDArray[np.floating], own: NDArray[np.floating]
) -> float:
    """How much of ``own`` is in ``output`` beyond the reference, as an amplitude ratio in dB."""
    own64 = own.astype(np.float64)
    coef = np.dot(output.astype(np.float64) - reference, own64) / np.dot(own64, own64)
    return float("-inf") if coef == 0 else float(20 * np.log10(abs(coef)))


def band_snr_db(
    reference: NDArray[np.floating], actual: NDArray[np.floating], rate: int, f_max: float
) -> float:
    """SNR restricted to 0..f_max Hz (where a band-limited path must be transparent)."""
    n = len(reference)
    ref = np.fft.rfft(np.asarray(reference, dtype=np.float64))
    act = np.fft.rfft(np.asarray(actual, dtype=np.float64))
    band = np.fft.rfftfreq(n, 1 / rate) <= f_max
    return float(
        10 * np.log10(np.sum(np.abs(ref[band]) ** 2) / np.sum(np.abs(act[band] - ref[band]) ** 2))
    )


def tone(freq: float, rate: int, seconds: float, dbfs: float = -12.0) -> NDArray[np.int16]:
    """A sine tone as int16."""
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(np.sin(2 * np.pi * freq * t) * 32767 * 10 ** (dbfs / 20)).astype(np.int16)
