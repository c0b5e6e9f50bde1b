"""Mixer test fixtures: real speech made by espeak-ng, resampled by sox, once per session."""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

SENTENCES = {
    "alice": ("en-us", "The quick brown fox jumps over the lazy dog near the river bank."),
    "bob": ("en-gb", "Please call Stella and ask her to bring these things from the store."),
    "carol": ("de", "Heute ist ein schoener Tag, wir treffen uns um drei Uhr im Park."),
}
RATES = (8000, 16000, 48000)


def _read_wav(path: Path) -> NDArray[np.int16]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """WAV files ``<name>_<rate>.wav`` for each speaker at 8, 16 and 48 kHz."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed for the speech tests")
    out = tmp_path_factory.mktemp("speech")
    for name, (voice, text) in SENTENCES.items():
        raw = out / f"{name}_raw.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True)
        for rate in RATES:
            subprocess.run(
                [
                    "sox",
                    str(raw),
                    "-r",
                    str(rate),
                    "-c",
                    "1",
                    "-b",
                    "16",
                    str(out / f"{name}_{rate}.wav"),
                ],
                check=True,
            )
    return out


@pytest.fixture(scope="session")
def speech(speech_dir: Path) -> Callable[[str, int], NDArray[np.int16]]:
    """``speech(name, rate)``: that speaker's sentence as int16 samples at ``rate``."""
    cache: dict[tuple[str, int], NDArray[np.int16]] = {}

    def load(name: str, rate: int) -> NDArray[np.int16]:
        key = (name, rate)
        if key not in cache:
            cache[key] = _read_wav(speech_dir / f"{name}_{rate}.wav")
        return cache[key]

    return load
