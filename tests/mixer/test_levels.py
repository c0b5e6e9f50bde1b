"""``Mixer.levels``: what a leg says and what it adds to the mix (the demo's mute display)."""

from __future__ import annotations

import numpy as np

from mixer.engine import Mixer


def _tone(rate: int, ticks: int) -> np.ndarray:
    n = rate // 50
    t = np.arange(n * ticks) / rate
    return (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16).reshape(ticks, n)


def test_levels_follow_speech_and_a_mute_zeroes_only_the_mix_share() -> None:
    mixer = Mixer(capacity=4)
    talker, listener = mixer.add_leg("room", 8000), mixer.add_leg("room", 8000)
    frames = _tone(8000, 60)
    for frame in frames[:30]:
        mixer.input_frame(talker)[:] = frame
        mixer.tick()
    spoken, in_mix = mixer.levels()[talker]
    assert spoken > 1e-3 and in_mix == spoken  # unity gain: all of it goes into the mix
    assert mixer.levels()[listener] == (0.0, 0.0)

    mixer.set_mute(talker, True)
    for frame in frames[30:]:
        mixer.input_frame(talker)[:] = frame
        mixer.tick()
    spoken, in_mix = mixer.levels()[talker]
    assert spoken > 1e-3  # still speaking …
    assert in_mix == 0.0  # … but exactly nothing of it reaches the others
    assert not mixer.output_frame(listener).any()


def test_gain_scales_the_mix_share_by_its_square() -> None:
    mixer = Mixer(capacity=2)
    leg = mixer.add_leg("room", 8000, gain=0.5)
    mixer.add_leg("room", 8000)
    for frame in _tone(8000, 20):
        mixer.input_frame(leg)[:] = frame
        mixer.tick()
    spoken, in_mix = mixer.levels()[leg]
    assert np.isclose(in_mix, spoken * 0.25)
