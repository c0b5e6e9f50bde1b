"""pool.stop() ends every worker and the mixer without SIGKILL when they exit by themselves."""

from __future__ import annotations

from collections.abc import Callable

from structlog.testing import capture_logs

from tests.sip.conftest import PoolHarness


def test_stop_kills_nobody_that_exits_by_itself(make_pool: Callable[..., PoolHarness]) -> None:
    """stop() used to join() each worker while the pool's monitor thread reaped it too: the
    loser of the two waitpid() calls saw the worker "alive" and SIGKILLed a pid already
    reaped (``sip.worker.kill``), and the mixer's close() did the same ("did not stop")."""
    for _ in range(2):
        h = make_pool(pool_size=3, calls_per_worker=2)
        with capture_logs() as logs:
            h.pool.stop()
        kills = [e for e in logs if e.get("event") == "sip.worker.kill"]
        assert not kills, kills
        assert any(e.get("event") == "sip.pool.stopped" for e in logs)
        assert all(p.exitcode == 0 for p in (w.process for w in h.pool._workers) if p)
