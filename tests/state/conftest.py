"""Fixtures of the state tests: clients of the real ``redis_server``, a linked store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from bridge.devstack.redis_server import RedisServer
from bridge.node.mirror import MirrorEngine
from bridge.state.connection import redis_client
from bridge.state.store import StateStore
from tests.state.state_helpers import MUC, OP_TIMEOUT, ROOM


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[Callable[[], aioredis.Redis]]:
    """Factory of clients (one per simulated replica), all closed at the end."""
    made: list[aioredis.Redis] = []

    def make() -> aioredis.Redis:
        client = redis_client(redis_server.url)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def make_store(clients: Callable[[], aioredis.Redis]) -> Callable[..., StateStore]:
    def make(**kw: Any) -> StateStore:
        kw.setdefault("op_timeout", OP_TIMEOUT)
        return StateStore(clients(), **kw)

    return make


@pytest.fixture
async def store(make_store: Callable[..., StateStore]) -> StateStore:
    s = make_store()
    await s.link_room(ROOM, MUC, event_id="link-1", actor="owner@localhost", origin="muc")
    return s


@pytest.fixture
def engine(store: StateStore) -> MirrorEngine:
    return MirrorEngine(store)
