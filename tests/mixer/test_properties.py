"""Property tests: shapes and invariants of the mixer for arbitrary layouts and inputs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.engine import Mixer
from mixer.frames import SUPPORTED_RATES, frame_samples
from mixer.resample import BatchResampler

layouts = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from([16000]),
            st.sampled_from([0.0, 0.5, 1.0, 2.0]),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(layout=layouts, seed=st.integers(0, 2**32 - 1), loud=st.booleans())
def test_same_rate_mix_is_exact_sum_of_others(
    layout: list[list[tuple[int, float, bool]]], seed: int, loud: bool
) -> None:
    rng = np.random.default_rng(seed)
    mixer = Mixer(32)
    legs: list[tuple[int, int, float]] = []  # (slot, conference, effective gain)
    for c, conf in enumerate(layout):
        for rate, gain, muted in conf:
            slot = mixer.add_leg(c, rate, gain, muted=muted)
            legs.append((slot, c, 0.0 if muted else gain))
    amp = 32767 if loud else 3000
    for _ in range(3):
        inputs = {s: rng.integers(-amp, amp + 1, 320).astype(np.int16) for s, _, _ in legs}
        for s, x in inputs.items():
            mixer.input_frame(s)[:] = x
        mixer.tick()
        for s, c, _ in legs:
            ref = sum(
                (g * inputs[o].astype(np.float64) for o, oc, g in legs if oc == c and o != s),
                np.zeros(320),
            )
            out = mixer.output_frame(s)
            assert out.shape == (320,) and out.dtype == np.int16
            expected = np.clip(ref, -32768, 32767)
            # gains 0.5/1/2 and int16 inputs sum exactly in float32: only rounding differs
            assert np.max(np.abs(out - expected)) <= 0.5
            # saturation never flips the sign (no wrap-around)
            big = np.abs(ref) > 32767
            assert np.all(np.sign(out[big]) == np.sign(ref[big]))


@settings(max_examples=40, deadline=None)
@given(
    rates=st.lists(st.sampled_from(SUPPORTED_RATES), min_size=1, max_size=6),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=12),
)
def test_membership_changes_keep_shapes_and_silence_invariants(
    rates: list[int], ops: list[tuple[bool, int]]
) -> None:
    mixer = Mixer(12)
    legs = [mixer.add_leg("room", r) for r in rates]
    for add, index in ops:
        if add and len(legs) < 12:
            legs.append(mixer.add_leg("room", SUPPORTED_RATES[index % 3]))
        elif not add and legs:
            mixer.remove_leg(legs.pop(index % len(legs)))
        # all inputs silent: every output is exact digital silence, of the leg's frame size
        for leg in legs:
            mixer.input_frame(leg)[:] = 0
        mixer.tick()
        for leg in legs:
            out = mixer.output_frame(leg)
            assert out.shape == (frame_samples(mixer.leg_rate(leg)),)
            assert not out.any()
        if legs:
            assert mixer.conference_rate("room") == max(mixer.leg_rate(leg) for leg in legs)
        assert sorted(mixer.conference_legs("room")) == sorted(legs)


@settings(max_examples=30, deadline=None)
@given(
    pair=st.sampled_from(
        [(8000, 16000), (16000, 8000), (16000, 48000), (48000, 16000), (8000, 48000), (48000, 8000)]
    ),
    n=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_resampler_is_linear_and_per_leg(pair: tuple[int, int], n: int, seed: int) -> None:
    rate_in, rate_out = pair
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1000, (n, frame_samples(rate_in))).astype(np.float32)
    slots = np.arange(n, dtype=np.intp)
    batch = BatchResampler(rate_in, rate_out, 8)
    y = batch.process(x, slots).copy()
    assert y.shape == (n, frame_samples(rate_out))
    for i in range(n):  # each row depends only on its own leg's samples and history
        single = BatchResampler(rate_in, rate_out, 8)
        yi = single.process(x[i : i + 1], np.array([3], dtype=np.intp))
        assert np.allclose(yi[0], y[i], atol=1e-2)
    twice = BatchResampler(rate_in, rate_out, 8).process(2 * x, slots)
    assert np.allclose(twice, 2 * y, atol=1e-2)
