"""Abuse limits on what an outsider can trigger over SIP: calls and subscriptions.

Pure rules (the clock is passed in, counts are handed over): the SIP workers and the pool
keep the state and ask these functions. Keys are source addresses for now (the address a
request came from, which the sender cannot forge over TCP/TLS and can only spoof blindly
over UDP); operator-trusted sources (a PBX or SBC that carries many callers) are exempt.

Statuses (RFC 3261 §21): a caller over its own rate gets ``503`` with Retry-After (the
node refuses to serve *this* source for a while); a source or a room at its concurrency
cap gets ``486 Busy Here`` with Retry-After (busy right now, retry later); refusals by
policy are ``403``.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from bridge.core.admission import Reject

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "192.0.2.7"]`` → networks; a bad entry raises ValueError naming it."""
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(out)


def in_networks(host: str, networks: Iterable[Network]) -> bool:
    """True when ``host`` (an IP literal, brackets allowed) is inside one of ``networks``."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return any(addr in net for net in networks)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """``burst`` events at once, then ``per_minute`` sustained, per key (a source address).

    Memory is bounded: at ``max_keys`` keys, full buckets (which carry no information) are
    forgotten; if none is full the oldest key goes, so a spray of spoofed UDP sources can
    cost an honest source at most its own burst, never the node's memory.
    """

    def __init__(self, burst: int, per_minute: float, max_keys: int = 10_000) -> None:
        if burst < 1 or per_minute <= 0:
            raise ValueError("burst must be >= 1 and per_minute > 0")
        self.burst = float(burst)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until the next token."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._evict(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.stamp) * self.rate >= self.burst:
                del self._buckets[key]
        while len(self._buckets) >= self.max_keys:
            del self._buckets[next(iter(self._buckets))]


def retry_seconds(wait: float) -> int:
    """Retry-After value for a wait in seconds (whole seconds, at least 1)."""
    return max(1, math.ceil(wait))


@dataclass(frozen=True, slots=True)
class CallLimits:
    """Concurrency caps of one node (0 = no cap) and the sources they do not apply to."""

    per_source: int = 0
    per_room: int = 0
    retry_after: int = 30
    trusted: tuple[Network, ...] = ()

    def is_trusted(self, source: str) -> bool:
        return in_networks(source, self.trusted)


def rate_refusal(wait: float) -> Reject:
    """The answer to a source over its call (or request) rate."""
    return Reject(503, "Too many requests from your address", retry_seconds(wait))


def limit_call(
    limits: CallLimits, *, source: str, source_calls: int, room_calls: int
) -> Reject | None:
    """May one more call start? ``source_calls``/``room_calls`` count the calls already
    held (ringing or up) by this source address and in this room, node-wide.

    The room cap applies to everyone (a full conference is full); the source cap not to
    trusted sources. Dialled legs have no source (``""``) and count against the room only.
    """
    if limits.per_room and room_calls >= limits.per_room:
        return Reject(486, "Conference is full", limits.retry_after)
    if (
        limits.per_source
        and source
        and not limits.is_trusted(source)
        and source_calls >= limits.per_source
    ):
        return Reject(486, "Too many calls from your address", limits.retry_after)
    return None


# ---- conference event subscriptions (RFC 4575) --------------------------------------------

SubscribePolicy = Literal["callers", "public", "anyone", "nobody"]


@dataclass(frozen=True, slots=True)
class SubscribeLimits:
    """Who may subscribe to a room's conference events, and how many at once.

    ``policy``: ``callers`` — only sources that have a call in that room, authenticated or
    asserted subscribers, or trusted sources; ``public`` — as ``callers``, plus anyone for
    rooms that are public (not members-only); ``anyone`` — everyone (members-only rooms
    then show no nicks to outsiders); ``nobody`` — refused (403) to all but trusted sources.
    """

    policy: SubscribePolicy = "public"
    per_room: int = 0
    per_source: int = 0
    trusted: tuple[Network, ...] = ()


@dataclass(frozen=True, slots=True)
class SubscribeDecision:
    """Allowed (``refusal`` None); ``redact`` = send the document without occupant nicks."""

    refusal: Reject | None = None
    redact: bool = False


@dataclass(frozen=True, slots=True)
class SubscriberFacts:
    """What the worker knows about one SUBSCRIBE."""

    source: str
    is_caller: bool  # the source address has a call in this room right now
    room_public: bool  # the MUC room is public and not members-only
    room_subscriptions: int
    source_subscriptions: int
    verified: bool = False  # authenticated (digest) or asserted by a trusted peer (issue 18)


def decide_subscribe(limits: SubscribeLimits, facts: SubscriberFacts) -> SubscribeDecision:
    """Policy first (403), then caps (486 + Retry-After would invite polling: 403 too)."""
    trusted = in_networks(facts.source, limits.trusted)
    if limits.policy == "nobody" and not trusted:
        return SubscribeDecision(Reject(403, "Conference events are not offered"))
    insider = trusted or facts.verified or facts.is_caller
    if not insider:
        if limits.policy == "callers":
            return SubscribeDecision(Reject(403, "Not a participant of this conference"))
        if limits.policy == "public" and not facts.room_public:
            return SubscribeDecision(Reject(403, "Not a participant of this conference"))
    if not trusted:
        if limits.per_room and facts.room_subscriptions >= limits.per_room:
            return SubscribeDecision(Reject(403, "Too many subscriptions to this conference"))
        if limits.per_source and facts.source_subscriptions >= limits.per_source:
            return SubscribeDecision(Reject(403, "Too many subscriptions from your address"))
    return SubscribeDecision(None, redact=not insider and not facts.room_public)
