"""Fixtures for the XMPP side: a bridge component connected to the test Prosody."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bridge.config import XmppSettings
from bridge.devstack.ejabberd import EjabberdServer
from bridge.devstack.prosody import ProsodyServer
from bridge.xmpp.component import BridgeComponent


def bridge_settings(server: ProsodyServer | EjabberdServer, **overrides: Any) -> XmppSettings:
    values: dict[str, Any] = {
        "component_jid": server.component_domain,
        "secret": server.component_secret,
        "host": "127.0.0.1",
        "port": server.component_port,
        "muc_service": server.muc_domain,
        "join_timeout": 5.0,
        "reconnect_max_delay": 1.0,
    }
    values.update(overrides)
    return XmppSettings(**values)


@asynccontextmanager
async def running_bridge(
    server: ProsodyServer | EjabberdServer, **overrides: Any
) -> AsyncIterator[BridgeComponent]:
    component = BridgeComponent(bridge_settings(server, **overrides))
    await component.start()
    try:
        yield component
    finally:
        await component.close()


BridgeFactory = Callable[..., Any]


@pytest.fixture
def make_bridge() -> BridgeFactory:
    """``async with make_bridge(prosody, **settings) as component:``"""
    return running_bridge


@pytest.fixture
def ejabberd() -> Iterator[EjabberdServer]:
    """A fresh ejabberd 23.01 (anonymous logins), skipped where ejabberd is not installed."""
    if not EjabberdServer.available():
        pytest.skip("ejabberd is not installed (apt-get install ejabberd)")
    server = EjabberdServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
