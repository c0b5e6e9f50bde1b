"""Pure abuse-limit rules: token buckets, occupant keys, reply routing, link policy."""

from __future__ import annotations

from bridge.core.commands import CommandReply
from bridge.core.commands.delivery import reply_privately
from bridge.core.linking import link_refusal, room_allowed
from bridge.core.ratelimit import RateLimiter, occupant_key


def test_rate_limiter() -> None:
    limiter = RateLimiter(burst=2, per_minute=60)  # one per second sustained
    assert limiter.allow("a", 0.0) == (True, False)
    assert limiter.allow("a", 0.0) == (True, False)
    assert limiter.allow("a", 0.0) == (False, True)  # told once
    assert limiter.allow("a", 0.5) == (False, False)
    assert limiter.allow("b", 0.5) == (True, False)  # per sender
    assert limiter.allow("a", 1.6) == (True, False)  # refilled


def test_rate_limiter_memory_is_bounded_under_a_flood_of_fresh_keys() -> None:
    limiter = RateLimiter(burst=1, per_minute=1, max_senders=100)
    for n in range(10_000):
        limiter.allow(f"key{n}", 0.0)
    assert len(limiter) == 100


def test_occupant_key_prefers_the_real_jid_then_the_occupant_id() -> None:
    assert occupant_key("Bob@Localhost/phone", "oid", "Bob") == "jid:bob@localhost"
    assert occupant_key("bob@localhost/laptop", "", "Bobby") == "jid:bob@localhost"
    assert occupant_key("", "abc=", "Bob") == occupant_key("", "abc=", "Bobby")
    assert occupant_key("", "", "Bob") == "nick:Bob"


def test_reply_routing() -> None:
    assert reply_privately("help", CommandReply("ok", "x"), 3)
    assert reply_privately("status", CommandReply("ok", "x"), 3)
    assert reply_privately("mute", CommandReply("refused", "Only moderators"), 3)
    assert reply_privately("mute", CommandReply("failed", "Redis down"), 3)
    assert not reply_privately("mute", CommandReply("ok", "Muted Carl."), 3)
    assert reply_privately("mute", CommandReply("ok", "a\nb\nc\nd"), 3)


def test_link_policy() -> None:
    base = {"patterns": (), "muc_service": "muc.example.org", "linked": 0, "max_rooms": 2}
    assert "turned off" in link_refusal("a@muc.example.org", self_service=False, **base)
    assert link_refusal("a@muc.example.org", self_service=True, **base) == ""
    assert "allow-list" in link_refusal("a@other.org", self_service=True, **base)
    full = base | {"linked": 2}
    assert "maximum of 2" in link_refusal("a@muc.example.org", self_service=True, **full)
    assert link_refusal("a@muc.example.org", self_service=False, preapproved=True, **full) == ""
    assert room_allowed("team-x@muc.example.org", ["team-*@muc.example.org"], "")
    assert not room_allowed("other@muc.example.org", ["team-*@muc.example.org"], "")
