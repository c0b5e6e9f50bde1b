"""Fixtures for SIP tests: a worker pool on free loopback ports and real speech assets."""

from __future__ import annotations

import queue
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from bridge.config import LogSettings, SipSettings, WorkerSettings
from bridge.core.admission import RoomDirectory
from bridge.devstack.ports import free_udp_tcp_port
from bridge.sip import devpeers as dp
from bridge.sip.pool import PoolEvent, WorkerPool

sys.path.insert(0, str(Path(__file__).parent))

_rtp_base = [21000]


def rtp_range(count: int = 400) -> int:
    """Disjoint RTP ranges per pool in this test process (other engineers use others)."""
    start = _rtp_base[0]
    _rtp_base[0] += count
    return start


@dataclass
class Speech:
    a: NDArray[np.int16]  # 8 kHz
    b: NDArray[np.int16]  # 8 kHz
    a_pcap: Path
    dir: Path


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    d = tmp_path_factory.mktemp("speech")
    a = dp.speech(
        "one two three four five six seven eight nine ten. "
        "the quick brown fox jumps over the lazy dog",
        8000,
        d,
    )
    b = dp.speech("mary had a little lamb", 8000, d)
    pcap = d / "a.pcap"
    dp.write_rtp_pcap(pcap, a)
    return Speech(a, b, pcap, d)


class PoolHarness:
    """A started pool plus helpers to wait for its events."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.seen: list[tuple[float, PoolEvent]] = []

    @property
    def port(self) -> int:
        return self.pool.front_port

    def wait_for(
        self, what: Callable[[PoolEvent], bool], timeout: float = 20.0, label: str = ""
    ) -> PoolEvent:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ev = self.pool.get_event(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append((time.monotonic(), ev))
            if what(ev):
                return ev
        raise AssertionError(f"no event {label or what} within {timeout}s; seen {self.seen}")

    def drain(self, seconds: float = 0.3) -> list[PoolEvent]:
        deadline = time.monotonic() + seconds
        out = []
        while time.monotonic() < deadline:
            try:
                ev = self.pool.get_event(timeout=0.05)
            except queue.Empty:
                continue
            self.seen.append((time.monotonic(), ev))
            out.append(ev)
        return out

    def until(self, cond: Callable[[], bool], timeout: float = 15.0, label: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            self.drain(0.1)
        raise AssertionError(f"condition {label} not reached within {timeout}s")


@pytest.fixture
def make_pool() -> Iterator[Callable[..., PoolHarness]]:
    pools: list[WorkerPool] = []

    def factory(
        rooms: tuple[str, ...] = ("demo",),
        *,
        pool_size: int = 1,
        calls_per_worker: int = 4,
        media_timeout: float = 30.0,
        retry_after: int = 30,
        directory: RoomDirectory | None = None,
        extra_hooks: tuple[str, ...] = (),
        sip_settings: dict[str, Any] | None = None,
        narrowband_workers: int = 0,
        **kw: object,
    ) -> PoolHarness:
        base: dict[str, Any] = {
            "port": free_udp_tcp_port(),
            "rtp_port_start": rtp_range(),
            "rtp_port_count": 400,
            # 127.0.0.1 plays a trusted PBX; abuse tests call from other 127.x addresses
            "limits": {"trusted_sources": ["127.0.0.1"]},
        }
        sip = SipSettings(**(base | (sip_settings or {})))
        ws = WorkerSettings(
            pool_size=pool_size,
            calls_per_worker=calls_per_worker,
            media_timeout=media_timeout,
            retry_after=retry_after,
            narrowband_workers=narrowband_workers,
        )
        ws.hooks = [*ws.hooks, *extra_hooks]
        pool = WorkerPool(
            sip,
            ws,
            LogSettings(format="console", level="warning"),  # type: ignore[arg-type]
            directory=directory or RoomDirectory.create(rooms),
            **kw,  # type: ignore[arg-type]
        )
        pools.append(pool)
        pool.start()
        return PoolHarness(pool)

    yield factory
    for pool in pools:
        pool.stop()
