"""Build the state services of a node from its settings (one place for the wiring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from bridge.config import Settings
from bridge.node.mirror import MirrorEngine
from bridge.state.lease import LeaseKeeper, LeaseManager
from bridge.state.outbox import Outbox
from bridge.state.store import ReplicaAcks, StateStore


def redirect_contact_for(settings: Settings) -> Callable[[str], str]:
    """Room → the SIP contact other replicas put in their 302 for rooms this node owns."""
    host = settings.sip.advertised
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal in a SIP URI
    template = settings.state.redirect_contact or f"sip:{{room}}@{host}:{settings.sip.port}"
    if "{room}" not in template:
        raise ValueError("state.redirect_contact must contain '{room}'")
    return lambda room: template.replace("{room}", room)


@dataclass
class StateServices:
    store: StateStore
    leases: LeaseManager
    engine: MirrorEngine
    keepers: dict[str, LeaseKeeper] = field(default_factory=dict)
    #: rooms whose lease this node gave up while draining → the token it held (any write
    #: with it is fenced off: the replica that takes the room is the only writer)
    handed_over: dict[str, int] = field(default_factory=dict)

    def fence(self, room: str) -> int | None:
        """The token of our lease on ``room`` (writes are fenced with it)."""
        keeper = self.keepers.get(room)
        if keeper is not None:
            return keeper.token
        return self.handed_over.get(room)


def build_state(client: aioredis.Redis, settings: Settings) -> StateServices:
    cfg = settings.state
    acks = ReplicaAcks(settings.redis.replica_acks, settings.redis.replica_ack_timeout)
    store = StateStore(
        client,
        prefix=cfg.key_prefix,
        op_timeout=cfg.op_timeout,
        event_ttl=cfg.event_ttl,
        change_log_length=cfg.change_log_length,
        acks=acks,
    )
    leases = LeaseManager(
        client,
        node_id=cfg.node_id,
        contact_for=redirect_contact_for(settings),
        ttl=cfg.lease_ttl,
        prefix=cfg.key_prefix,
        op_timeout=cfg.op_timeout,
        acks=acks,
    )
    outbox = Outbox(cfg.outbox_path, cfg.outbox_max)
    services = StateServices(store, leases, MirrorEngine(store, outbox))
    services.engine.fence_for = services.fence
    return services


__all__ = ["StateServices", "build_state", "redirect_contact_for"]
