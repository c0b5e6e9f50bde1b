"""Talker detection on real speech, silence and noise; dominant speaker per conference."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray

from mixer.engine import DominantSpeakerEvent, Mixer, MixerEvent, TalkerEvent
from mixer.talker import TalkerConfig
from tests.mixer.mixer_signals import frames_of, scaled

Speech = Callable[[str, int], NDArray[np.int16]]


def drive(mixer: Mixer, inputs: dict[int, NDArray[np.int16]]) -> list[tuple[int, MixerEvent]]:
    """Run all ticks; return (tick, event) pairs."""
    ticks = len(next(iter(inputs.values())))
    events: list[tuple[int, MixerEvent]] = []
    for t in range(ticks):
        for leg, frames in inputs.items():
            mixer.input_frame(leg)[:] = frames[t]
        events.extend((t, e) for e in mixer.tick())
    return events


def with_silence(
    signal: NDArray[np.int16], rate: int, before_s: float, after_s: float
) -> NDArray[np.int16]:
    pad = np.zeros(int(rate * before_s), np.int16), np.zeros(int(rate * after_s), np.int16)
    return np.concatenate([pad[0], signal, pad[1]])


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
@pytest.mark.parametrize("every", [1, 2])
def test_speech_starts_and_stops_talking(speech: Speech, rate: int, every: int) -> None:
    mixer = Mixer(4, talker=TalkerConfig(every_ticks=every))
    leg = mixer.add_leg("room", rate)
    voice = scaled(speech("alice", rate), -26.0)
    signal = with_silence(voice, rate, 1.0, 1.5)
    ticks = len(signal) // (rate // 50)
    events = [
        (t, e)
        for t, e in drive(mixer, {leg: frames_of(signal, rate, ticks)})
        if isinstance(e, TalkerEvent)
    ]
    speech_start = 50
    speech_end = 50 + len(voice) // (rate // 50)
    assert [e.talking for _, e in events] == [True, False]  # one utterance, no flapping
    started, stopped = events[0][0], events[1][0]
    assert speech_start <= started <= speech_start + 25
    assert speech_end <= stopped <= speech_end + 40
    assert events[0][1].leg == leg and events[0][1].conference == "room"


@pytest.mark.parametrize(
    "kind", ["silence", "white", "white_after_silence", "lowpass_noise", "hum"]
)
def test_no_talker_events_on_silence_or_noise(kind: str) -> None:
    rate, seconds = 16000, 4.0
    rng = np.random.default_rng(7)
    n = int(rate * seconds)
    if kind == "silence":
        signal = np.zeros(n)
    elif kind == "white":
        signal = rng.normal(0, 3000, n)
    elif kind == "white_after_silence":
        signal = np.r_[np.zeros(n // 4), rng.normal(0, 3000, n - n // 4)]
    elif kind == "lowpass_noise":  # brown-ish, strongly correlated, stationary from the start
        signal = np.convolve(rng.normal(0, 1000, n), np.ones(8) / 8, mode="same") * 3
    else:  # constant 50 Hz hum with a little hiss
        t = np.arange(n) / rate
        signal = 2000 * np.sin(2 * np.pi * 50 * t) + rng.normal(0, 30, n)
    frames = frames_of(np.clip(signal, -32768, 32767).astype(np.int16), rate, int(seconds * 50))
    mixer = Mixer(4, talker=TalkerConfig(every_ticks=1))
    leg = mixer.add_leg("room", rate)
    assert drive(mixer, {leg: frames}) == []


def test_muted_leg_never_talks(speech: Speech) -> None:
    mixer = Mixer(4)
    leg = mixer.add_leg("room", 16000, muted=True)
    voice = with_silence(scaled(speech("bob", 16000), -20.0), 16000, 0.5, 0.5)
    assert drive(mixer, {leg: frames_of(voice, 16000, len(voice) // 320)}) == []


def test_dominant_speaker_is_the_louder_talker(speech: Speech) -> None:
    mixer = Mixer(4)
    quiet = mixer.add_leg("room", 16000)
    loud = mixer.add_leg("room", 16000)
    listener = mixer.add_leg("room", 16000)
    rate = 16000
    a = with_silence(scaled(speech("alice", rate), -32.0), rate, 0.5, 2.0)
    b = with_silence(scaled(speech("bob", rate), -18.0), rate, 1.0, 0.2)
    n = max(len(a), len(b)) // 320
    events = drive(
        mixer,
        {
            quiet: frames_of(a, rate, n),
            loud: frames_of(b, rate, n),
            listener: np.zeros((n, 320), np.int16),
        },
    )
    dominant = [(t, e.leg) for t, e in events if isinstance(e, DominantSpeakerEvent)]
    legs_in_order = [leg for _, leg in dominant]
    assert legs_in_order[0] == quiet  # alone first
    assert loud in legs_in_order  # takes over when it starts, being 14 dB louder
    assert legs_in_order[-1] is None  # nobody talks at the end
    assert listener not in legs_in_order
    assert mixer.dominant_speaker("room") is None


def test_removing_a_talking_leg_reports_it_stopped(speech: Speech) -> None:
    mixer = Mixer(4)
    leg = mixer.add_leg("room", 16000)
    other = mixer.add_leg("room", 16000)
    voice = scaled(speech("carol", 16000), -20.0)
    frames = frames_of(voice, 16000, 60)
    drive(mixer, {leg: frames, other: np.zeros_like(frames)})
    assert mixer.is_talking(leg)
    mixer.remove_leg(leg)
    events = mixer.tick()
    assert TalkerEvent(leg, "room", False) in events
    assert DominantSpeakerEvent("room", None) in events
