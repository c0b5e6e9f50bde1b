"""Pure abuse-limit rules (issue 19): token buckets, call caps, subscription policy."""

from __future__ import annotations

import pytest

from bridge.core.limits import (
    CallLimits,
    SubscribeLimits,
    SubscriberFacts,
    TokenBuckets,
    decide_subscribe,
    limit_call,
    parse_networks,
    retry_seconds,
)


def test_token_buckets_burst_then_rate_and_bounded_memory() -> None:
    buckets = TokenBuckets(burst=2, per_minute=60, max_keys=3)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) == pytest.approx(1.0)  # one token per second
    assert buckets.take("a", 1.0) == 0.0
    assert buckets.take("b", 1.0) == 0.0  # another key is not affected
    for i in range(100):
        buckets.take(f"spoofed-{i}", 2.0)
    assert len(buckets) <= 3
    assert retry_seconds(0.2) == 1 and retry_seconds(9.01) == 10


def test_call_caps_room_for_all_source_for_untrusted() -> None:
    limits = CallLimits(per_source=2, per_room=3, retry_after=7,
                        trusted=parse_networks(["10.0.0.0/8"]))  # fmt: skip
    assert limit_call(limits, source="192.0.2.1", source_calls=1, room_calls=2) is None
    busy = limit_call(limits, source="192.0.2.1", source_calls=2, room_calls=0)
    assert busy is not None and (busy.status, busy.retry_after) == (486, 7)
    assert limit_call(limits, source="10.1.2.3", source_calls=50, room_calls=0) is None
    full = limit_call(limits, source="10.1.2.3", source_calls=0, room_calls=3)
    assert full is not None and full.status == 486 and "full" in full.reason
    assert limit_call(limits, source="", source_calls=0, room_calls=0) is None
    with pytest.raises(ValueError, match="not an IP"):
        parse_networks(["example.org"])


def _facts(**kw: object) -> SubscriberFacts:
    base: dict[str, object] = {"source": "192.0.2.9", "is_caller": False, "room_public": False,
                               "room_subscriptions": 0, "source_subscriptions": 0}
    return SubscriberFacts(**(base | kw))  # type: ignore[arg-type]


def test_subscribe_policy() -> None:
    public = SubscribeLimits(policy="public", per_room=2, per_source=1)
    assert decide_subscribe(public, _facts()).refusal is not None  # members-only: outsiders no
    assert decide_subscribe(public, _facts(is_caller=True)).refusal is None
    assert decide_subscribe(public, _facts(room_public=True)).refusal is None
    capped = decide_subscribe(public, _facts(is_caller=True, room_subscriptions=2))
    assert capped.refusal is not None and capped.refusal.status == 403
    per_source = decide_subscribe(public, _facts(room_public=True, source_subscriptions=1))
    assert per_source.refusal is not None
    anyone = decide_subscribe(SubscribeLimits(policy="anyone"), _facts())
    assert anyone.refusal is None and anyone.redact  # members-only room: no nicks
    assert not decide_subscribe(SubscribeLimits(policy="anyone"), _facts(is_caller=True)).redact
    callers = SubscribeLimits(policy="callers", trusted=parse_networks(["192.0.2.0/24"]))
    assert decide_subscribe(callers, _facts(room_public=True, source="198.51.100.1")).refusal
    assert decide_subscribe(callers, _facts(room_subscriptions=99)).refusal is None  # trusted
    nobody = SubscribeLimits(policy="nobody")
    assert decide_subscribe(nobody, _facts(is_caller=True)).refusal is not None
