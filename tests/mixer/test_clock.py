"""The tick thread: it ticks, counts lateness, survives errors and degrades without SCHED_FIFO."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from mixer import clock as clock_mod
from mixer.clock import TickClock


def wait_until(predicate: object, limit_s: float = 10.0) -> None:
    """Poll without asserting on timing: only a hard limit against hanging forever."""
    deadline = time.monotonic() + limit_s
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def test_ticks_until_stopped() -> None:
    count = 0

    def on_tick() -> None:
        nonlocal count
        count += 1

    clk = TickClock(on_tick, period_s=0.005, realtime=False)
    clk.start()
    wait_until(lambda: count >= 5)
    clk.stop()
    assert not clk.running
    stats = clk.stats()
    assert stats.ticks == count >= 5
    assert stats.realtime is False


def test_slow_ticks_are_counted_late_and_skipped() -> None:
    ticks = 0

    def slow() -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 2:
            time.sleep(0.1)  # 20 periods: far beyond the catch-up budget

    clk = TickClock(slow, period_s=0.005, realtime=False, max_catch_up=2)
    clk.start()
    wait_until(lambda: ticks >= 5)
    clk.stop()
    stats = clk.stats()
    assert stats.late >= 1
    assert stats.skipped >= 10
    assert stats.max_lateness_s >= 0.05
    durations = clk.take_durations()  # what feeds sipmuc_mixer_tick_seconds
    assert len(durations) == stats.ticks
    assert max(durations) >= 0.1  # the slow tick, measured, not assumed
    assert clk.take_durations() == []


def test_errors_are_logged_and_ticking_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    ticks = 0

    def flaky() -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 1:
            raise RuntimeError("boom")

    clk = TickClock(flaky, period_s=0.005, realtime=False)
    with caplog.at_level(logging.ERROR, logger="mixer.clock"):
        clk.start()
        wait_until(lambda: ticks >= 3)
        clk.stop()
    assert clk.stats().errors == 1
    assert "mixer tick failed" in caplog.text


def test_realtime_refused_falls_back_with_a_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*_: object) -> None:
        raise PermissionError("Operation not permitted")

    monkeypatch.setattr(clock_mod.os, "sched_setscheduler", refuse)
    ran = threading.Event()
    clk = TickClock(ran.set, period_s=0.005, realtime=True)
    with caplog.at_level(logging.WARNING, logger="mixer.clock"):
        clk.start()
        ran.wait(10)
        clk.stop()
    assert ran.is_set()
    assert clk.stats().realtime is False
    assert "without real-time priority" in caplog.text


@pytest.mark.skipif(not hasattr(os, "SCHED_FIFO"), reason="Linux only")
def test_realtime_when_permitted() -> None:
    seen: list[int] = []

    def probe() -> None:
        if not seen:
            seen.append(os.sched_getscheduler(0))

    clk = TickClock(probe, period_s=0.005, realtime=True)
    clk.start()
    wait_until(lambda: bool(seen))
    clk.stop()
    assert seen
    if clk.stats().realtime:
        assert seen[0] == os.SCHED_FIFO
    else:
        assert seen[0] != os.SCHED_FIFO
