"""Service lifecycle: connect Redis and XMPP, serve until a signal, shut down in order."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bridge import __version__
from bridge.config import Settings, redacted
from bridge.http import Readiness, serve_http
from bridge.logs import get_logger
from bridge.node.caller_policy import caller_policy
from bridge.node.command_executor import CommandExecutor
from bridge.node.services import build_state
from bridge.node.supervisor import Node, initial_directory
from bridge.sip.orphans import record_path
from bridge.sip.pool import WorkerPool
from bridge.state.connection import open_redis
from bridge.state.errors import StateUnavailable
from bridge.xmpp.adhoc import AdhocCommands
from bridge.xmpp.component import BridgeComponent

log = get_logger(__name__)


@asynccontextmanager
async def open_node(settings: Settings, readiness: Readiness | None = None) -> AsyncIterator[Node]:
    """Redis, XMPP component, SIP worker pool and the supervisor, started in that order and
    stopped in reverse (callers get a BYE, puppets leave, the control occupant leaves).

    Raises RedisUnavailable, XmppUnavailable or PoolError when a dependency is missing at
    start-up, so that a misconfigured node exits at once instead of half-working.
    """
    readiness = readiness or Readiness(required=())
    stop = asyncio.Event()
    async with open_redis(settings.redis) as redis:
        readiness.register("redis", redis.ping)
        services = build_state(redis, settings)
        component = BridgeComponent(settings.xmpp)
        xmpp_up = readiness.flag("xmpp")
        component.add_event_handler("session_start", lambda _: xmpp_up.set())
        component.add_event_handler("disconnected", lambda _: xmpp_up.clear("disconnected"))
        await component.start()
        try:
            directory = await initial_directory(settings, services)
            pool = WorkerPool(
                settings.sip, settings.workers, settings.log, directory=directory,
                callers=caller_policy(settings),
                runtime_record=record_path(settings.workers.runtime_dir, settings.state.node_id),
            )  # fmt: skip
            try:
                await asyncio.to_thread(pool.start)
                # ready = a worker answers SIP. A full node stays ready: it still redirects
                # callers of rooms it does not own, serves SUBSCRIBE/MESSAGE and answers 486
                # with Retry-After; capacity is paged on by SipmucNoFreeCallSlots instead.
                readiness.register("workers", lambda: any(p.alive for p in pool.slots()))
                node = Node(settings, component, pool, services)
                # owner commands: !commands in the rooms and XEP-0050 on the component
                executor = CommandExecutor(node)
                limits = settings.xmpp.limits
                AdhocCommands(
                    component, executor.from_adhoc, muc_service=settings.xmpp.muc_service,
                    session_ttl=limits.adhoc_session_ttl, max_sessions=limits.adhoc_max_sessions,
                ).register()  # fmt: skip
                try:
                    await node.start(stop)
                    yield node
                finally:
                    stop.set()
                    await node.close()
            finally:
                await asyncio.to_thread(pool.stop)
        finally:
            await component.close()


async def _drain(node: Node, readiness: Readiness, stop: asyncio.Event, limit: float) -> None:
    """Let the calls in progress end (new ones get 503) before stopping; a second signal
    or ``limit`` seconds end the wait (the remaining calls then get a BYE)."""
    if not node.calls_in_progress() or limit <= 0:  # also calls still being set up
        return
    readiness.start_draining()
    stop.clear()
    try:
        await node.drain()
    except StateUnavailable as error:  # Redis down: the leases expire by themselves
        log.warning("bridge.handover_failed", error=str(error))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while node.calls_in_progress() and not stop.is_set() and loop.time() < deadline:
        with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
            async with asyncio.timeout(min(1.0, deadline - loop.time())):
                await stop.wait()
    log.info("bridge.drained", legs_left=node.calls_in_progress())


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one node until ``stop`` is set or SIGTERM/SIGINT arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("bridge.starting", version=__version__, settings=redacted(settings))
    readiness = Readiness(required=("redis", "xmpp", "workers"))
    try:
        async with serve_http(settings.http, readiness), open_node(settings, readiness) as node:
            log.info(
                "bridge.ready",
                component=settings.xmpp.component_jid,
                sip=f"{settings.sip.bind_host}:{node.pool.front_port}",
                advertised=settings.sip.advertised,
                rooms=sorted(node.rooms),
            )
            await stop.wait()
            await _drain(node, readiness, stop, settings.workers.drain_timeout)
            log.info("bridge.stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("bridge.stopped")
