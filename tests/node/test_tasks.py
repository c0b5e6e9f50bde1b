"""Node shutdown never waits forever for a background task (bridge.node.tasks)."""

from __future__ import annotations

import asyncio
import time

from structlog.testing import capture_logs

from bridge.node.tasks import cancel_all


async def _obedient() -> None:
    await asyncio.sleep(3600)


async def _stubborn(release: asyncio.Event) -> None:
    """Swallows cancellations (like a library catching CancelledError deep inside) until
    ``release`` is set."""
    while not release.is_set():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


async def test_cancel_all_stops_tasks_and_gives_up_on_a_stubborn_one() -> None:
    good = asyncio.create_task(_obedient(), name="good")
    release = asyncio.Event()
    bad = asyncio.create_task(_stubborn(release), name="node.stubborn")
    await asyncio.sleep(0)
    started = time.monotonic()
    with capture_logs() as logs:
        await cancel_all([good, bad], within=0.3)
    assert time.monotonic() - started < 2.0  # an unbounded await would hang here
    assert good.cancelled()
    stuck = [e for e in logs if e["event"] == "node.task_stuck"]
    assert [e["task"] for e in stuck] == ["node.stubborn"]
    assert "_stubborn" in stuck[0]["where"]
    assert not bad.done()
    release.set()
    bad.cancel()
    await asyncio.wait([bad], timeout=1.0)
    assert bad.done()


async def test_cancel_all_returns_at_once_when_everything_ends() -> None:
    tasks = [asyncio.create_task(_obedient()) for _ in range(3)]
    await asyncio.sleep(0)
    started = time.monotonic()
    await cancel_all(tasks, within=5.0)
    assert time.monotonic() - started < 1.0
    assert all(t.cancelled() for t in tasks)
