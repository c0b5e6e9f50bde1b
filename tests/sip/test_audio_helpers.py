"""Pure audio helpers of the SIP tests and tones: G.711 encoders, pcap, correlation."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from bridge.sip.devpeers import (
    alaw_encode,
    best_correlation,
    envelope,
    ulaw_encode,
    write_rtp_pcap,
)
from bridge.sip.tones import TONE_KINDS, tone_frames


def _ulaw_decode(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, np.uint8).astype(np.int32) & 0xFF
    sign, exp, mant = u & 0x80, (u >> 4) & 7, u & 0x0F
    mag = ((mant << 3) + 0x84) << exp
    return np.where(sign, 0x84 - mag, mag - 0x84)


def _alaw_decode(data: bytes) -> np.ndarray:
    a = np.frombuffer(data, np.uint8).astype(np.int32) ^ 0x55
    sign, exp, mant = a & 0x80, (a >> 4) & 7, a & 0x0F
    mag = np.where(exp == 0, (mant << 4) + 8, ((mant << 4) + 0x108) << np.maximum(exp - 1, 0))
    return np.where(sign, mag, -mag)


@pytest.mark.parametrize(("enc", "dec"), [(ulaw_encode, _ulaw_decode), (alaw_encode, _alaw_decode)])
def test_g711_round_trip_error_is_small(enc, dec) -> None:  # type: ignore[no-untyped-def]
    x = (np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440) * 20000).astype(np.int16)
    y = dec(enc(x))
    err = np.abs(y - x.astype(np.int32))
    assert err.max() <= 1100  # G.711 step at full scale
    assert np.corrcoef(x, y)[0, 1] > 0.999


def test_pcap_has_one_rtp_packet_per_20ms(tmp_path: Path) -> None:
    pcap = tmp_path / "a.pcap"
    dur = write_rtp_pcap(pcap, np.zeros(8000, np.int16), payload_type=8)
    data = pcap.read_bytes()
    assert dur == pytest.approx(1.0)
    magic, *_ = struct.unpack("<I", data[:4])
    assert magic == 0xA1B2C3D4
    first_len = struct.unpack("<I", data[24 + 8 : 24 + 12])[0]
    assert first_len == 14 + 20 + 8 + 12 + 160
    assert len(data) == 24 + 50 * (16 + first_len)


def test_correlation_finds_the_lag() -> None:
    rng = np.random.default_rng(1)
    ref = rng.random(50)
    heard = np.concatenate([np.zeros(7), ref * 3, np.zeros(10)])
    c, lag = best_correlation(heard, ref)
    assert c > 0.99 and lag == 7
    assert best_correlation(heard[:10], ref) == (0.0, 0)
    assert envelope(np.ones(320, np.int16), 16000).shape == (1,)


def test_tones_are_distinct_whole_frames() -> None:
    shapes = {kind: tone_frames(kind, 16000) for kind in TONE_KINDS}
    for frames in shapes.values():
        assert all(f.shape == (320,) and f.dtype == np.int16 for f in frames)
        assert max(int(np.abs(f).max()) for f in frames) > 1000
    assert not np.array_equal(np.concatenate(shapes["muted"]), np.concatenate(shapes["unmuted"]))
    with pytest.raises(ValueError):
        tone_frames("siren", 16000)
