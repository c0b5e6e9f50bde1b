"""Security settings outside the demo: the component secret and a Redis password are required
(a loopback or unix-socket Redis is reachable from this host only); the reasons are named."""

from __future__ import annotations

import pytest

from bridge.config import ConfigError, load_settings


def settings(**overrides: object) -> object:
    base: dict[str, object] = {"xmpp": {"secret": "s3cret"}}
    base.update(overrides)
    return load_settings(**base)


@pytest.mark.parametrize("url", [
    "redis://10.0.0.5:6379/0", "redis://redis.example:6379/0", "rediss://redis.example:6380/0",
    "redis://user@redis.example/0",
])  # fmt: skip
def test_remote_redis_without_password_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"redis\.url .*password"):
        settings(redis={"url": url})


@pytest.mark.parametrize("url", [
    "redis://:pw@redis.example:6379/0", "rediss://user:pw@10.0.0.5:6380/0",
    "redis://127.0.0.1:6379/0", "redis://localhost/0", "redis://[::1]:6379/0",
    "unix:///run/redis.sock",
])  # fmt: skip
def test_password_loopback_or_socket_is_accepted(url: str) -> None:
    settings(redis={"url": url})


def test_demo_may_skip_both() -> None:
    load_settings(demo=True, redis={"url": "redis://redis.example/0"})


def test_component_secret_is_required_outside_the_demo() -> None:
    with pytest.raises(ConfigError, match=r"xmpp\.secret is required"):
        load_settings()
