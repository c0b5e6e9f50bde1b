"""Service lifecycle: connect Redis and XMPP, serve until a signal, shut down in order."""

from __future__ import annotations

import asyncio
import signal

from bridge import __version__
from bridge.config import Settings, redacted
from bridge.logs import get_logger
from bridge.state.connection import open_redis
from bridge.xmpp.component import BridgeComponent

log = get_logger(__name__)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one node until ``stop`` is set or SIGTERM/SIGINT arrives.

    Raises RedisUnavailable or XmppUnavailable when a dependency is missing at start-up,
    so that a misconfigured node exits at once instead of half-working.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("bridge.starting", version=__version__, settings=redacted(settings))
    try:
        async with open_redis(settings.redis):
            component = BridgeComponent(settings.xmpp)
            await component.connect_and_wait()
            log.info("bridge.ready", component=settings.xmpp.component_jid)
            await stop.wait()
            log.info("bridge.stopping")
            component.disconnect()
            await component.disconnected
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("bridge.stopped")
