"""Health, readiness and metrics over HTTP: ``/healthz``, ``/readyz``, ``/metrics``.

Kubernetes probes and Prometheus are the only clients, so this is a deliberately tiny HTTP/1.1
server on ``asyncio.start_server`` (GET/HEAD, one request per connection, bounded reads)
instead of another web framework in the image.

Readiness is a set of named checks that subsystems register ("xmpp", "redis", "workers"): a
plain or async callable returning a truthy value, or a :class:`Flag` they set and clear. A
check that is *required* but not registered yet counts as failing, so a node is never reported
ready before the subsystem that should vouch for it exists. Draining makes ``/readyz`` fail on
purpose: the Service stops sending new calls while the calls in progress go on.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from bridge import metrics
from bridge.config import HttpSettings
from bridge.logs import get_logger

log = get_logger(__name__)

Check = Callable[[], Any]
"""A readiness/liveness check: returns (or awaits to) a truthy value when healthy; raising
or returning a falsy value means failing. It must not block: do I/O in an async check."""

CHECK_TIMEOUT: Final = 2.0
READ_TIMEOUT: Final = 5.0
MAX_LINE: Final = 8192
MAX_HEADERS: Final = 64

_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HttpUnavailable(Exception):
    """The health/metrics listener could not bind its address."""


class Flag:
    """A check a subsystem flips itself (e.g. on connect / disconnect events)."""

    def __init__(self, value: bool = False, detail: str = "") -> None:
        self._value = value
        self.detail = detail

    def set(self, detail: str = "") -> None:
        self._value = True
        self.detail = detail

    def clear(self, detail: str = "") -> None:
        self._value = False
        self.detail = detail

    def __bool__(self) -> bool:
        return self._value

    def __call__(self) -> bool:
        if not self._value and self.detail:
            raise CheckFailed(self.detail)
        return self._value


class CheckFailed(Exception):
    """Raised by a check to fail with an explanation shown in the /readyz body."""


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    ok: bool
    checks: tuple[CheckOutcome, ...]
    draining: bool = False

    @property
    def failing(self) -> list[str]:
        return [check.name for check in self.checks if not check.ok]

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "failing",
            "draining": self.draining,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks},
        }


class HealthChecks:
    """Named checks evaluated concurrently, each with a timeout; used for liveness as is."""

    def __init__(self, required: Iterable[str] = (), timeout: float = CHECK_TIMEOUT) -> None:
        self._checks: dict[str, Check] = {}
        self._required: set[str] = set(required)
        self.timeout = timeout

    def register(self, name: str, check: Check, *, required: bool = True) -> None:
        """Add a check; registering a name twice is a bug and raises ValueError."""
        if not name:
            raise ValueError("a check needs a name")
        if name in self._checks:
            raise ValueError(f"check {name!r} is already registered")
        if not callable(check):
            raise TypeError(f"check {name!r} must be callable, got {type(check).__name__}")
        self._checks[name] = check
        if required:
            self._required.add(name)

    def flag(self, name: str, *, initially: bool = False) -> Flag:
        """Register and return a :class:`Flag` check."""
        flag = Flag(initially, "" if initially else "not set yet")
        self.register(name, flag)
        return flag

    def unregister(self, name: str) -> None:
        """Remove a check and stop requiring it (a subsystem that shut down cleanly)."""
        self._checks.pop(name, None)
        self._required.discard(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._required | set(self._checks))

    async def _run(self, name: str) -> CheckOutcome:
        check = self._checks.get(name)
        if check is None:
            return CheckOutcome(name, False, "not registered yet")
        try:
            async with asyncio.timeout(self.timeout):
                result = check()
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            return CheckOutcome(name, False, f"timed out after {self.timeout:g}s")
        except Exception as error:  # a failing check must never take the endpoint down
            detail = str(error) or type(error).__name__
            return CheckOutcome(name, False, detail)
        return CheckOutcome(name, bool(result), "" if result else "check returned false")

    async def evaluate(self) -> Report:
        outcomes = await asyncio.gather(*(self._run(name) for name in self.names))
        return Report(ok=all(o.ok for o in outcomes), checks=tuple(outcomes))


class Readiness(HealthChecks):
    """Readiness: every required check passes and the node is not draining.

    Each evaluation is published as ``sipmuc_ready`` and ``sipmuc_readiness_check{check}``,
    and a change of state is logged once as ``readiness.changed``.
    """

    def __init__(self, required: Iterable[str] = (), timeout: float = CHECK_TIMEOUT) -> None:
        super().__init__(required, timeout)
        self._draining = False
        self._last: bool | None = None

    @property
    def draining(self) -> bool:
        return self._draining

    def start_draining(self) -> None:
        """Stop being ready for good: new calls go elsewhere, calls in progress continue."""
        if not self._draining:
            self._draining = True
            metrics.DRAINING.set(1)
            log.warning("node.draining")

    async def evaluate(self) -> Report:
        checked = await super().evaluate()
        report = Report(
            ok=checked.ok and not self._draining, checks=checked.checks, draining=self._draining
        )
        for outcome in report.checks:
            metrics.READINESS_CHECK.labels(check=outcome.name).set(1 if outcome.ok else 0)
        metrics.READY.set(1 if report.ok else 0)
        if report.ok != self._last:
            self._last = report.ok
            details = {c.name: c.detail for c in report.checks if not c.ok}
            emit = log.info if report.ok else log.warning
            emit("readiness.changed", ready=report.ok, draining=self._draining, failing=details)
        return report


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, payload: dict[str, Any]) -> _Response:
    return _Response(status, json.dumps(payload, sort_keys=True).encode() + b"\n")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HealthServer:
    """The HTTP listener. Use ``async with HealthServer(...)`` or :func:`serve_http`."""

    def __init__(
        self,
        settings: HttpSettings,
        readiness: Readiness,
        *,
        liveness: HealthChecks | None = None,
        registry: CollectorRegistry = metrics.REGISTRY,
    ) -> None:
        self.settings = settings
        self.readiness = readiness
        self.liveness = liveness or HealthChecks()
        self.registry = registry
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when the OS picked it)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the HTTP server is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        host, port = self.settings.host, self.settings.port
        try:
            self._server = await asyncio.start_server(
                self._handle, host, port, limit=MAX_LINE, reuse_address=True
            )
        except OSError as error:
            raise HttpUnavailable(f"cannot listen on {host}:{port}: {error}") from None
        log.info("http.listening", host=host, port=self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- one connection = one request ------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = "GET"
        try:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    method, path, headers = await _read_request(reader)
                response = await self._route(method, path, headers)
            except _BadRequest as error:
                response = _json(error.status, {"error": str(error)})
            except TimeoutError:
                response = _json(408, {"error": "request not received in time"})
            except Exception as error:
                log.exception("http.error", error=str(error))
                metrics.count_error("http", "http.error")
                response = _json(500, {"error": "internal error"})
            writer.write(_serialise(response, head=method == "HEAD"))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    async def _route(self, method: str, path: str, headers: dict[str, str]) -> _Response:
        if path not in ("/healthz", "/readyz", "/metrics"):
            return _json(404, {"error": f"no such endpoint: {path}"})
        if method not in ("GET", "HEAD"):
            return _Response(
                405,
                json.dumps({"error": f"{method} not allowed"}).encode() + b"\n",
                headers=(("Allow", "GET, HEAD"),),
            )
        if path == "/metrics":
            encoder, content_type = choose_encoder(headers.get("accept", ""))
            return _Response(200, encoder(self.registry), content_type)
        report = await (self.liveness if path == "/healthz" else self.readiness).evaluate()
        return _json(200 if report.ok else 503, report.as_json())


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise _BadRequest(400, "request line too long") from None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, "malformed request line")
    method, target, _ = parts
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        try:
            raw = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            raise _BadRequest(431, "header line too long") from None
        if raw == b"\r\n":
            return method, target.split("?", 1)[0], headers
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise _BadRequest(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    raise _BadRequest(431, "too many header lines")


def _serialise(response: _Response, *, head: bool) -> bytes:
    reason = _REASONS.get(response.status, "")
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head_bytes if head else head_bytes + response.body


@asynccontextmanager
async def serve_http(
    settings: HttpSettings,
    readiness: Readiness,
    *,
    liveness: HealthChecks | None = None,
    registry: CollectorRegistry = metrics.REGISTRY,
) -> AsyncIterator[HealthServer]:
    """Listen on ``settings.host:port`` for the duration of the block."""
    async with HealthServer(settings, readiness, liveness=liveness, registry=registry) as server:
        yield server


__all__ = [
    "Check",
    "CheckFailed",
    "CheckOutcome",
    "Flag",
    "HealthChecks",
    "HealthServer",
    "HttpUnavailable",
    "Readiness",
    "Report",
    "serve_http",
]
