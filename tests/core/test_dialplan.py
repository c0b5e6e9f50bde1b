"""The operator dial plan (issue 19): every trick a room owner could try is refused."""

from __future__ import annotations

import pytest

from bridge.core.dialplan import (
    DialAllowed,
    DialPlan,
    DialRefused,
    check_dial,
    is_public_address,
    outcome_of,
)

PLAN = DialPlan.create(
    enabled=True, number_patterns=[r"\+?49[0-9]{6,12}"], domains=["partner.example"],
    trunk_domain="trunk.example", own_domains=["bridge.example", "127.0.0.1"],
    per_room=2, per_node=3,
)  # fmt: skip


def _check(target: str, *, room: int = 0, node: int = 0, plan: DialPlan = PLAN) -> object:
    is_number = not target.lower().startswith(("sip:", "sips:"))
    return check_dial(plan, target, is_number=is_number, room_dials=room, node_dials=node)


def test_off_by_default() -> None:
    refused = _check("4930123456", plan=DialPlan())
    assert isinstance(refused, DialRefused) and "not enabled" in refused.message


def test_allowed_targets() -> None:
    assert _check("+49 30 123456") == DialAllowed("sip:+4930123456@trunk.example", "trunk.example")
    assert _check("sip:alice@Partner.example") == DialAllowed("sip:alice@partner.example",
                                                              "partner.example")  # fmt: skip


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("01144123456789", "number not in plan"),  # toll fraud: international prefix
        ("900123", "number not in plan"),
        ("sip:x@10.0.0.1", "IP literal"),
        ("sip:x@[::1]", "explicit port or IPv6 literal"),
        ("sip:x@partner.example:5061", "explicit port or IPv6 literal"),
        ("sip:x@partner.example;maddr=10.0.0.1", "URI parameters or headers"),
        ("sip:x@partner.example;transport=tcp", "URI parameters or headers"),
        ("sip:x@partner.example?Route=%3Csip:10.0.0.1%3E", "URI parameters or headers"),
        ("sip:x@intranet.corp", "domain not in plan"),
        ("sip:partner.example", "no or bad user part"),
        ("sip:4930123456@bridge.example", "own domain"),  # a room named like a number
        ("sip:standup@127.0.0.1", "IP literal"),
    ],
)
def test_refused_targets(target: str, why: str) -> None:
    refused = _check(target)
    assert isinstance(refused, DialRefused), refused
    assert refused.why == why
    assert "10.0.0" not in refused.message


def test_caps_and_own_trunk() -> None:
    assert isinstance(_check("4930123456", room=2), DialRefused)
    assert isinstance(_check("4930123456", room=0, node=3), DialRefused)
    ourselves = DialPlan.create(enabled=True, number_patterns=[r"[0-9]+"],
                                trunk_domain="bridge.example", own_domains=["bridge.example"])
    refused = _check("4930123456", plan=ourselves)
    assert isinstance(refused, DialRefused) and refused.why == "trunk is ourselves"


def test_outcomes_and_addresses() -> None:
    assert outcome_of(486) == outcome_of(603) == "busy"
    assert outcome_of(487) == outcome_of(408) == outcome_of(0, timed_out=True) == "no answer"
    assert outcome_of(404) == outcome_of(503) == outcome_of(403) == "refused"
    assert is_public_address("8.8.8.8") and is_public_address("2001:4860::8888")
    for private in ("10.1.2.3", "127.0.0.1", "169.254.1.1", "::1", "fe80::1", "::ffff:10.0.0.1",
                    "192.168.1.1", "100.64.0.1", "0.0.0.0", "224.0.0.1"):
        assert not is_public_address(private), private
