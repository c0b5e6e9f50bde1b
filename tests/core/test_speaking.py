"""The speaking status a room shows: at most one change per interval, short pauses hidden."""

from __future__ import annotations

import itertools

from bridge.core.speaking import SpeakingStatus


def _run(state: SpeakingStatus, flips: list[tuple[float, bool]], until: float) -> list[bool]:
    """Feed the mixer's flips, call ``due`` whenever ``next_check`` asks: what the room sees."""
    shown: list[bool] = []
    events = sorted(flips)
    now, i = 0.0, 0
    while now <= until:
        while i < len(events) and events[i][0] <= now:
            state.set(now, events[i][1])
            i += 1
        change = state.due(now)
        if change is not None:
            shown.append(change)
        now = round(now + 0.01, 2)
    return shown


def test_a_start_shows_at_once() -> None:
    state = SpeakingStatus(min_interval=2.0)
    state.set(0.0, True)
    assert state.next_check(0.0) == 0.0
    assert state.due(0.0) is True
    assert state.due(0.1) is None  # nothing new


def test_pauses_shorter_than_the_interval_never_show() -> None:
    # talking with 300 ms pauses every second for 10 s: the mixer flips 20 times
    flips = [(t / 10, (t % 10) < 7) for t in range(0, 100)]
    shown = _run(SpeakingStatus(min_interval=2.0), [*flips, (10.0, False)], until=15.0)
    assert shown == [True, False]


def test_at_most_one_change_per_interval() -> None:
    flips = [(t / 100, t % 2 == 0) for t in range(0, 1000)]  # flapping every 10 ms for 10 s
    shown = _run(SpeakingStatus(min_interval=1.0), flips, until=12.0)
    assert len(shown) <= 11
    assert all(a != b for a, b in itertools.pairwise(shown))  # real changes only


def test_the_last_state_always_arrives() -> None:
    shown = _run(SpeakingStatus(min_interval=2.0), [(0.0, True), (0.5, False)], until=3.0)
    assert shown == [True, False]  # the stop waited for 2 s of silence, but it came


def test_a_stop_waits_for_silence_to_last() -> None:
    state = SpeakingStatus(min_interval=2.0)
    state.set(0.0, True)
    assert state.due(0.0) is True
    state.set(5.0, False)
    assert state.due(6.0) is None  # silent for 1 s only
    assert state.next_check(6.0) == 1.0
    assert state.due(7.0) is False
