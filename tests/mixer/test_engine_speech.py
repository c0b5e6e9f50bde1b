"""Mix-minus on real speech: what each listener hears, and what it must never hear."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import soxr
from numpy.typing import NDArray

from mixer.engine import Mixer
from mixer.frames import frame_samples
from tests.mixer.mixer_signals import band_snr_db, frames_of, leak_db, scaled, snr_db, tone

Speech = Callable[[str, int], NDArray[np.int16]]
TICKS = 150  # 3 s


def run(mixer: Mixer, inputs: dict[int, NDArray[np.int16]]) -> dict[int, NDArray[np.int16]]:
    """Feed per-leg frame arrays tick by tick; return each leg's concatenated output."""
    ticks = len(next(iter(inputs.values())))
    outs: dict[int, list[NDArray[np.int16]]] = {leg: [] for leg in inputs}
    for t in range(ticks):
        for leg, frames in inputs.items():
            mixer.input_frame(leg)[:] = frames[t]
        mixer.tick()
        for leg in inputs:
            outs[leg].append(mixer.output_frame(leg).copy())
    return {leg: np.concatenate(o) for leg, o in outs.items()}


def three_leg_inputs(speech: Speech, rate: int, dbfs: float) -> list[NDArray[np.int16]]:
    return [
        frames_of(scaled(speech(n, rate), dbfs), rate, TICKS) for n in ("alice", "bob", "carol")
    ]


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_each_listener_hears_the_others_and_not_itself(speech: Speech, rate: int) -> None:
    mixer = Mixer(8)
    legs = [mixer.add_leg("room", rate) for _ in range(3)]
    inputs = three_leg_inputs(speech, rate, -24.0)
    out = run(mixer, dict(zip(legs, inputs, strict=True)))
    flat = [x.reshape(-1).astype(np.float64) for x in inputs]
    for i, leg in enumerate(legs):
        reference = sum(flat[j] for j in range(3) if j != i)
        assert snr_db(reference, out[leg]) >= 40.0
        assert leak_db(out[leg], reference, flat[i]) <= -60.0
        # the own voice really is in the inputs: a plain sum would leak it at 0 dB
        assert leak_db(reference + flat[i], reference, flat[i]) > -1.0


def test_other_conferences_are_not_heard(speech: Speech) -> None:
    mixer = Mixer(8)
    a1, a2 = mixer.add_leg("a", 16000), mixer.add_leg("a", 16000)
    b1 = mixer.add_leg("b", 16000)
    b2 = mixer.add_leg("b", 16000)
    x = three_leg_inputs(speech, 16000, -24.0)
    out = run(mixer, {a1: x[0], a2: x[1], b1: x[2], b2: np.zeros_like(x[2])})
    assert np.array_equal(out[a1], x[1].reshape(-1))
    assert np.array_equal(out[b2], x[2].reshape(-1))
    assert not out[b1].any()


def test_mute_is_exact_silence(speech: Speech) -> None:
    x = three_leg_inputs(speech, 16000, -24.0)
    muted = Mixer(8)
    legs = [muted.add_leg("room", 16000) for _ in range(3)]
    muted.set_mute(legs[2], True)
    out_muted = run(muted, dict(zip(legs, x, strict=True)))
    silent = Mixer(8)
    legs2 = [silent.add_leg("room", 16000) for _ in range(3)]
    out_silent = run(silent, dict(zip(legs2, [x[0], x[1], np.zeros_like(x[2])], strict=True)))
    for a, b in zip(legs, legs2, strict=True):
        assert np.array_equal(out_muted[a], out_silent[b])  # bit-identical: no trace of carol
    # the muted leg still hears everyone else
    assert np.array_equal(out_muted[legs[2]], x[0].reshape(-1) + x[1].reshape(-1))
    # unmuting brings the voice back
    muted.set_mute(legs[2], False)
    for leg, frames in zip(legs, x, strict=True):
        muted.input_frame(leg)[:] = frames[60]
    muted.tick()
    assert np.array_equal(muted.output_frame(legs[0]), x[1][60] + x[2][60])


def test_only_muted_talker_gives_digital_silence_everywhere(speech: Speech) -> None:
    mixer = Mixer(8)
    legs = [mixer.add_leg("room", rate) for rate in (8000, 16000, 48000)]
    mixer.set_mute(legs[1], True)
    voice = frames_of(scaled(speech("bob", 16000), -12.0), 16000, 60)
    zeros = {leg: np.zeros((60, frame_samples(mixer.leg_rate(leg))), np.int16) for leg in legs}
    zeros[legs[1]] = voice
    out = run(mixer, zeros)
    assert not out[legs[0]].any() and not out[legs[2]].any()


def test_clipping_saturates_instead_of_wrapping(speech: Speech) -> None:
    mixer = Mixer(8)
    legs = [mixer.add_leg("room", 16000) for _ in range(3)]
    x = three_leg_inputs(speech, 16000, -6.0)  # loud: sums of two exceed int16
    out = run(mixer, dict(zip(legs, x, strict=True)))
    flat = [v.reshape(-1).astype(np.int64) for v in x]
    reference = flat[1] + flat[2]
    assert (np.abs(reference) > 32767).sum() > 100, "the test must actually clip"
    assert np.array_equal(out[legs[0]], np.clip(reference, -32768, 32767))
    over = reference > 32767
    assert (out[legs[0]][over] == 32767).all()  # wrap-around would turn these negative


def test_gain_scales_a_leg(speech: Speech) -> None:
    mixer = Mixer(8)
    legs = [mixer.add_leg("room", 16000) for _ in range(3)]
    mixer.set_gain(legs[1], 0.5)
    mixer.set_gain(legs[2], 1.7)
    x = three_leg_inputs(speech, 16000, -26.0)
    out = run(mixer, dict(zip(legs, x, strict=True)))
    ref = 0.5 * x[1].reshape(-1).astype(np.float64) + 1.7 * x[2].reshape(-1)
    assert snr_db(ref, out[legs[0]]) >= 40.0
    assert np.max(np.abs(out[legs[0]] - ref)) <= 0.5 + 1e-3  # rounded, not truncated


def test_8k_and_16k_legs_mix_band_limited(speech: Speech) -> None:
    mixer = Mixer(8)
    narrow = mixer.add_leg("room", 8000)
    wide1 = mixer.add_leg("room", 16000)
    wide2 = mixer.add_leg("room", 16000)
    assert mixer.conference_rate("room") == 16000
    a = frames_of(scaled(speech("alice", 8000), -24.0), 8000, TICKS)
    b = frames_of(scaled(speech("bob", 16000), -24.0), 16000, TICKS)
    c = frames_of(scaled(speech("carol", 16000), -24.0), 16000, TICKS)
    out = run(mixer, {narrow: a, wide1: b, wide2: c})
    up = mixer._resampler(8000, 16000)
    down = mixer._resampler(16000, 8000)
    # wide listener: carol as is + alice upsampled (delayed by the interpolation filter)
    d_up = up.delay_out_samples
    a_up = soxr.resample(a.reshape(-1).astype(np.float64), 8000, 16000, quality="VHQ")
    ref_wide = c.reshape(-1).astype(np.float64)
    ref_wide[d_up:] += a_up[: len(ref_wide) - d_up]
    heard = out[wide1].astype(np.float64)
    assert band_snr_db(ref_wide[d_up:], heard[d_up:], 16000, 3000.0) >= 40.0
    assert leak_db(heard, ref_wide, b.reshape(-1)) <= -60.0
    # narrow listener: (bob + carol) low-passed and decimated; the path goes up then down
    both = b.reshape(-1).astype(np.float64) + c.reshape(-1)
    ref_narrow = soxr.resample(both, 16000, 8000, quality="VHQ")
    d = down.delay_out_samples
    heard_n = out[narrow].astype(np.float64)
    snr = band_snr_db(ref_narrow[: len(heard_n) - d], heard_n[d:], 8000, 3000.0)
    assert snr >= 40.0
    assert (
        leak_db(heard_n, np.r_[np.zeros(d), ref_narrow[: len(heard_n) - d]], a.reshape(-1)) <= -60.0
    )


def test_downsampling_removes_what_8k_cannot_carry() -> None:
    mixer = Mixer(4)
    narrow = mixer.add_leg("room", 8000)
    wide = mixer.add_leg("room", 16000)
    ticks = 50
    high = frames_of(tone(6000.0, 16000, 1.0), 16000, ticks)  # would alias to 2 kHz
    out = run(mixer, {narrow: np.zeros((ticks, 160), np.int16), wide: high})
    tail = out[narrow][4000:].astype(np.float64)
    level = 10 * np.log10(np.mean(tail**2) + 1e-9) - 10 * np.log10(np.mean(high.astype(float) ** 2))
    assert level <= -60.0


def test_upsampling_leaves_no_image() -> None:
    mixer = Mixer(4)
    narrow = mixer.add_leg("room", 8000)
    wide = mixer.add_leg("room", 16000)
    ticks = 50
    low = frames_of(tone(1000.0, 8000, 1.0), 8000, ticks)
    out = run(mixer, {narrow: low, wide: np.zeros((ticks, 320), np.int16)})
    heard = out[wide][8000:].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(heard * np.hanning(len(heard)))) ** 2
    freqs = np.fft.rfftfreq(len(heard), 1 / 16000)
    signal = spectrum[np.abs(freqs - 1000) < 50].sum()
    image = spectrum[np.abs(freqs - 7000) < 50].sum()
    assert 10 * np.log10(image / signal) <= -60.0


def test_48k_conference_with_16k_leg(speech: Speech) -> None:
    mixer = Mixer(4)
    full = mixer.add_leg("room", 48000)
    wide = mixer.add_leg("room", 16000)
    assert mixer.conference_rate("room") == 48000
    b = frames_of(scaled(speech("bob", 16000), -24.0), 16000, TICKS)
    out = run(mixer, {full: np.zeros((TICKS, 960), np.int16), wide: b})
    d = mixer._resampler(16000, 48000).delay_out_samples
    ref = soxr.resample(b.reshape(-1).astype(np.float64), 16000, 48000, quality="VHQ")
    heard = out[full].astype(np.float64)
    assert band_snr_db(ref[: len(heard) - d], heard[d:], 48000, 6000.0) >= 40.0
    assert not out[wide].any()  # the 48 kHz leg is silent, so is the 16 kHz leg's mix


def test_internal_rate_follows_membership() -> None:
    mixer = Mixer(4)
    a = mixer.add_leg("room", 8000)
    assert mixer.conference_rate("room") == 8000
    b = mixer.add_leg("room", 48000)
    assert mixer.conference_rate("room") == 48000
    mixer.remove_leg(b)
    assert mixer.conference_rate("room") == 8000
    mixer.remove_leg(a)
    assert mixer.conferences() == []
    capped = Mixer(4, max_internal_rate=16000)
    capped.add_leg("room", 48000)
    assert capped.conference_rate("room") == 16000
