"""A deaf leg (dial-in PIN pending) hears exact silence; the others are unaffected."""

from __future__ import annotations

import numpy as np

from mixer.engine import Mixer


def test_deaf_listener_gets_silence_and_mute_still_governs_its_voice() -> None:
    mixer = Mixer(8)
    a, b, c = (mixer.add_leg("room", 16000) for _ in range(3))
    for slot, value in ((a, 1000), (b, 2000), (c, 4000)):
        mixer.input_frame(slot)[:] = value
    mixer.set_deaf(c, True)
    mixer.set_mute(c, True)
    mixer.tick()
    assert not mixer.output_frame(c).any()
    assert np.all(mixer.output_frame(a) == 2000) and np.all(mixer.output_frame(b) == 1000)

    mixer.set_deaf(c, False)
    mixer.set_mute(c, False)
    mixer.tick()
    assert np.all(mixer.output_frame(c) == 3000) and np.all(mixer.output_frame(a) == 6000)
    assert not mixer.is_deaf(c)

    mixer.set_deaf(b, True)
    mixer.remove_leg(b)
    d = mixer.add_leg("room", 16000)  # reuses the slot: not deaf
    assert not mixer.is_deaf(d)
