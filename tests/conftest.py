"""Shared fixtures: real Prosody and Redis servers on loopback, torn down even on failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer

TEST_USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"prosody", "prosody_avu", "redis_server"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


@pytest.fixture
def prosody(tmp_path: Path) -> Iterator[ProsodyServer]:
    """A fresh Prosody with users alice/bob/carol, a MUC service and the bridge component."""
    server = ProsodyServer(tmp_path / "prosody", users=dict(TEST_USERS))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prosody_avu(tmp_path: Path) -> Iterator[ProsodyServer]:
    """Like ``prosody``, with our mod_muc_audio_video_uri loaded on the MUC component."""
    server = ProsodyServer(
        tmp_path / "prosody", users=dict(TEST_USERS), muc_modules=["muc_audio_video_uri"]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server with AOF on, so restart tests keep their data."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
