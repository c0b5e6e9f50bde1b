"""A whole node (Redis, XMPP component, SIP worker pool, supervisor) against real servers."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from bridge.app import open_node
from bridge.config import Settings
from bridge.devstack.ports import free_port, free_udp_tcp_port
from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer
from bridge.node.supervisor import Node
from tests.conftest import TEST_USERS

ROOM = "standup"
TRUSTED_PEER = "127.0.0.2"
SECOND = "bridge2.localhost"  # component JID of a second replica


@pytest.fixture
def moderated_prosody(tmp_path: Path) -> Any:
    """Prosody with our module and alice as server admin (owner of every room)."""
    server = ProsodyServer(
        tmp_path / "prosody",
        users=dict(TEST_USERS),
        muc_modules=["muc_audio_video_uri"],
        admins=["alice@localhost"],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def two_component_prosody(tmp_path: Path) -> Iterator[ProsodyServer]:
    # Each replica has its own component JID (XEP-0114 allows one connection per JID);
    # both must be able to own the rooms, here as server admins (see docs/operations.md).
    server = ProsodyServer(
        tmp_path / "prosody",
        users=dict(TEST_USERS),
        muc_modules=["muc_audio_video_uri"],
        extra_components={SECOND: "second-secret"},
        admins=["alice@localhost", "bridge.localhost", SECOND],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def node_settings(prosody: ProsodyServer, redis: RedisServer, **overrides: Any) -> Settings:
    sip_port = free_udp_tcp_port()
    data: dict[str, Any] = {
        "rooms": [ROOM],
        "xmpp": {
            "component_jid": prosody.component_domain,
            "secret": prosody.component_secret,
            "port": prosody.component_port,
            "muc_service": prosody.muc_domain,
        },
        "sip": {
            "domain": "127.0.0.1",
            "port": sip_port,
            # below the ephemeral range, so never the SIP port itself
            "rtp_port_start": 10000 + sip_port % 20000,
            # 127.0.0.1 plays a trusted PBX; abuse tests call from other 127.x addresses
            "limits": {"trusted_sources": ["127.0.0.1", TRUSTED_PEER]},
        },
        "workers": {"pool_size": 1, "media_timeout": 0},
        "redis": {"url": redis.url},
        "http": {"port": free_port()},
        # 127.0.0.2 plays the operator's PBX: its P-Asserted-Identity is believed
        "identity": {"trusted_peers": [TRUSTED_PEER]},
        "log": {"format": "json"},
    }
    merge(data, overrides)
    return Settings(**data)


def merge(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Overrides into the settings data; a section given as a dict is merged key by key (so
    ``xmpp={"limits": {...}}`` keeps the connection settings)."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            merge(data[key], value)
        else:
            data[key] = value


NodeFactory = Callable[..., AbstractAsyncContextManager[Node]]


@pytest.fixture
def make_node(moderated_prosody: ProsodyServer, redis_server: RedisServer) -> NodeFactory:
    def factory(**overrides: Any) -> AbstractAsyncContextManager[Node]:
        return open_node(node_settings(moderated_prosody, redis_server, **overrides))

    return factory


@pytest.fixture
async def node(make_node: NodeFactory) -> AsyncIterator[Node]:
    async with make_node() as running:
        yield running


def process_env(
    prosody: ProsodyServer, redis: RedisServer, sip_port: int, **extra: str
) -> dict[str, str]:
    """Environment of a ``python -m bridge run`` process for this Prosody and Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMUC_")}
    env.update(
        SIPMUC_ROOMS=json.dumps([ROOM]),
        SIPMUC_XMPP__COMPONENT_JID=prosody.component_domain,
        SIPMUC_XMPP__SECRET=prosody.component_secret,
        SIPMUC_XMPP__PORT=str(prosody.component_port),
        SIPMUC_XMPP__MUC_SERVICE=prosody.muc_domain,
        SIPMUC_SIP__DOMAIN="127.0.0.1",
        SIPMUC_SIP__PORT=str(sip_port),
        SIPMUC_SIP__RTP_PORT_START=str(20000 + sip_port % 10000),
        SIPMUC_WORKERS__POOL_SIZE="1",
        SIPMUC_WORKERS__MEDIA_TIMEOUT="0",
        SIPMUC_REDIS__URL=redis.url,
        SIPMUC_HTTP__PORT=str(free_port()),
        SIPMUC_LOG__FORMAT="json",
    )
    env.update(extra)
    return env
