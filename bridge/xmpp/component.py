"""The bridge's XEP-0114 external component connection."""

from __future__ import annotations

import asyncio
from typing import Any

from slixmpp import ComponentXMPP

from bridge.config import XmppSettings
from bridge.logs import get_logger

log = get_logger(__name__)


class XmppUnavailable(Exception):
    """The component could not reach or authenticate with the XMPP server."""


class BridgeComponent(ComponentXMPP):
    """slixmpp component with the settings we always want (see DESIGN §5)."""

    def __init__(self, settings: XmppSettings) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            settings.component_jid,
            settings.secret.get_secret_value(),
            host=settings.host,
            port=settings.port,
            # Without it slixmpp reads every error as feature-not-implemented.
            fix_error_ns=True,
        )
        self.settings = settings

    async def connect_and_wait(self) -> None:
        """Connect and wait for the handshake; raise XmppUnavailable with the reason.

        At start-up a wrong host, port or secret must stop the service with a clear message
        rather than retry silently forever.
        """
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[None] = loop.create_future()
        where = f"{self.settings.host}:{self.settings.port}"

        def settle(error: str | None) -> None:
            if outcome.done():
                return
            if error is None:
                outcome.set_result(None)
            else:
                outcome.set_exception(XmppUnavailable(error))

        def on_start(_: Any) -> None:
            settle(None)

        def on_failed(reason: Any) -> None:
            settle(f"cannot connect to XMPP server at {where}: {reason}")

        def on_stream_error(error: Any) -> None:
            condition = error["condition"] if error is not None else "unknown"
            settle(f"XMPP server at {where} refused the component: {condition}")

        handlers = {
            "session_start": on_start,
            "connection_failed": on_failed,
            "stream_error": on_stream_error,
        }
        for name, handler in handlers.items():
            self.add_event_handler(name, handler)
        try:
            self.connect()
            await asyncio.wait_for(outcome, self.settings.connect_timeout)
        except TimeoutError:
            raise XmppUnavailable(
                f"no component handshake from {where} within "
                f"{self.settings.connect_timeout:g}s (wrong port or secret?)"
            ) from None
        except XmppUnavailable:
            self.cancel_connection_attempt()
            self.abort()
            raise
        finally:
            for name, handler in handlers.items():
                self.del_event_handler(name, handler)
        log.info("xmpp.connected", component=self.settings.component_jid, server=where)
