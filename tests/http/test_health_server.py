"""/healthz, /readyz and /metrics over a real socket, plus the Readiness rules behind them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, Counter

from bridge import metrics
from bridge.config import HttpSettings
from bridge.devstack.ports import free_port
from bridge.http import CheckFailed, HealthChecks, HealthServer, HttpUnavailable, Readiness


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.body)
        return data


async def request(port: int, raw: bytes) -> Answer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()  # the server closes after one response
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


async def get(port: int, path: str, method: str = "GET", accept: str | None = None) -> Answer:
    extra = f"Accept: {accept}\r\n" if accept else ""
    raw = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode()
    return await request(port, raw)


@pytest.fixture
async def served() -> AsyncIterator[tuple[HealthServer, Readiness]]:
    readiness = Readiness(required=("redis", "xmpp"))
    server = HealthServer(HttpSettings(host="127.0.0.1", port=free_port()), readiness)
    async with server:
        yield server, readiness


async def test_healthz_answers_while_dependencies_are_missing(
    served: tuple[HealthServer, Readiness],
) -> None:
    server, _ = served
    answer = await get(server.port, "/healthz")
    assert answer.status == 200
    assert answer.json()["status"] == "ok"
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["content-length"]) == len(answer.body)


async def test_readyz_fails_until_every_required_check_is_registered_and_passing(
    served: tuple[HealthServer, Readiness],
) -> None:
    server, readiness = served
    answer = await get(server.port, "/readyz")
    assert answer.status == 503
    checks = answer.json()["checks"]
    assert checks == {
        "redis": {"ok": False, "detail": "not registered yet"},
        "xmpp": {"ok": False, "detail": "not registered yet"},
    }

    async def redis_ping() -> bool:
        return True

    readiness.register("redis", redis_ping)
    xmpp = readiness.flag("xmpp")
    answer = await get(server.port, "/readyz")
    assert answer.status == 503
    assert answer.json()["checks"]["xmpp"] == {"ok": False, "detail": "not set yet"}

    xmpp.set()
    answer = await get(server.port, "/readyz?verbose=1")  # the query string is ignored
    assert answer.status == 200
    assert answer.json()["status"] == "ok"
    assert metrics.READY._value.get() == 1
    assert metrics.READINESS_CHECK.labels(check="xmpp")._value.get() == 1

    xmpp.clear("disconnected")
    answer = await get(server.port, "/readyz")
    assert answer.status == 503
    assert answer.json()["checks"]["xmpp"] == {"ok": False, "detail": "disconnected"}
    assert metrics.READY._value.get() == 0
    assert metrics.READINESS_CHECK.labels(check="xmpp")._value.get() == 0


async def test_a_raising_or_hanging_check_fails_without_breaking_the_endpoint() -> None:
    never = asyncio.Event()

    async def hangs() -> bool:
        await never.wait()
        return True

    def explodes() -> bool:
        raise CheckFailed("redis: connection refused")

    readiness = Readiness(timeout=0.05)
    readiness.register("workers", hangs)
    readiness.register("redis", explodes)
    readiness.register("falsy", lambda: 0)
    report = await readiness.evaluate()
    assert not report.ok
    details = {c.name: c.detail for c in report.checks}
    assert details == {
        "workers": "timed out after 0.05s",
        "redis": "redis: connection refused",
        "falsy": "check returned false",
    }
    assert sorted(report.failing) == ["falsy", "redis", "workers"]


async def test_draining_makes_readyz_fail_even_with_healthy_checks(
    served: tuple[HealthServer, Readiness],
) -> None:
    server, readiness = served
    readiness.flag("redis", initially=True)
    readiness.flag("xmpp", initially=True)
    assert (await get(server.port, "/readyz")).status == 200
    readiness.start_draining()
    answer = await get(server.port, "/readyz")
    assert answer.status == 503
    assert answer.json()["draining"] is True
    assert metrics.DRAINING._value.get() == 1
    assert (await get(server.port, "/healthz")).status == 200  # draining is not dead
    metrics.DRAINING.set(0)


async def test_liveness_checks_drive_healthz() -> None:
    liveness = HealthChecks()
    alive = liveness.flag("mixer", initially=True)
    settings = HttpSettings(host="127.0.0.1", port=free_port())
    async with HealthServer(settings, Readiness(), liveness=liveness) as server:
        assert (await get(server.port, "/healthz")).status == 200
        alive.clear("mixer thread stopped ticking")
        answer = await get(server.port, "/healthz")
        assert answer.status == 503
        assert answer.json()["checks"]["mixer"]["detail"] == "mixer thread stopped ticking"


async def test_metrics_exposes_the_product_registry(
    served: tuple[HealthServer, Readiness],
) -> None:
    server, _ = served
    metrics.CALLS.labels(outcome="redirected").inc()
    answer = await get(server.port, "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.body.decode()
    assert "# HELP sipmuc_calls_total " in text
    # closed label sets exist from the start (the values depend on what else ran here)
    assert 'sipmuc_calls_total{outcome="busy"} ' in text
    assert 'sipmuc_mirrored_actions_total{direction="muc_to_sip",kind="kick"} ' in text
    assert "sipmuc_mixer_tick_seconds_bucket" in text
    assert "process_resident_memory_bytes" in text
    assert "_created" not in text

    openmetrics = await get(server.port, "/metrics", accept="application/openmetrics-text")
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.body.rstrip().endswith(b"# EOF")


async def test_a_custom_registry_is_served_instead_of_the_product_one() -> None:
    registry = CollectorRegistry()
    Counter("only_here", "A test counter.", registry=registry).inc(3)
    settings = HttpSettings(host="127.0.0.1", port=free_port())
    async with HealthServer(settings, Readiness(), registry=registry) as server:
        text = (await get(server.port, "/metrics")).body.decode()
    assert "only_here_total 3.0" in text
    assert "sipmuc_" not in text


async def test_head_has_headers_but_no_body(served: tuple[HealthServer, Readiness]) -> None:
    server, _ = served
    answer = await get(server.port, "/healthz", method="HEAD")
    assert answer.status == 200
    assert answer.body == b""
    assert int(answer.headers["content-length"]) > 0


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /nope HTTP/1.1\r\n\r\n", 404),
        (b"POST /readyz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /healthz SPDY/3\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nno-colon-here\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * 100 + b"\r\n", 431),
        (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"b" * 10000 + b"\r\n\r\n", 431),
    ],
)
async def test_bad_requests_get_a_clear_status(
    served: tuple[HealthServer, Readiness], raw: bytes, status: int
) -> None:
    server, _ = served
    answer = await request(server.port, raw)
    assert answer.status == status
    assert "error" in answer.json()
    if status == 405:
        assert answer.headers["allow"] == "GET, HEAD"


async def test_a_client_that_sends_nothing_and_leaves_does_not_hurt_the_server(
    served: tuple[HealthServer, Readiness],
) -> None:
    server, _ = served
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.close()
    await writer.wait_closed()
    assert (await get(server.port, "/healthz")).status == 200


async def test_a_busy_port_is_a_clear_error(served: tuple[HealthServer, Readiness]) -> None:
    server, _ = served
    taken = HttpSettings(host="127.0.0.1", port=server.port)
    with pytest.raises(HttpUnavailable, match=f"cannot listen on 127.0.0.1:{server.port}"):
        await HealthServer(taken, Readiness()).start()


def test_registering_a_check_twice_is_refused() -> None:
    readiness = Readiness()
    readiness.register("redis", lambda: True)
    with pytest.raises(ValueError, match="already registered"):
        readiness.register("redis", lambda: True)
    with pytest.raises(TypeError, match="must be callable"):
        readiness.register("xmpp", True)  # type: ignore[arg-type]
    readiness.unregister("redis")
    assert readiness.names == []
