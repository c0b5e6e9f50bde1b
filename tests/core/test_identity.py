"""Caller ↔ JID binding: a header alone never binds (RFC 7081 §3.5, §7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.events import LegJoined
from bridge.core.identity import (
    bare_jid,
    caller_key,
    hinted_jids,
    normalize_trusted,
    participant_key,
    sender_leg,
    verify_binding,
)

TRUSTED = normalize_trusted({"sip:Alice@PBX.example": "Alice@Localhost"})


def test_header_alone_never_binds() -> None:
    d = verify_binding(
        "sip:mallory@evil.example",
        trusted=TRUSTED,
        impp_uris=["<xmpp:alice@localhost>"],
        xmpp_contacts=["xmpp:alice@localhost"],
    )
    assert not d.bound
    assert d.hints == ("alice@localhost",)
    assert "never binds" in d.reason


def test_hint_confirmed_by_trusted_mapping_binds() -> None:
    d = verify_binding(
        "<sips:alice@pbx.example;transport=tls>",
        trusted=TRUSTED,
        impp_uris=["xmpp:alice@localhost"],
    )
    assert (d.jid, d.verified_by) == ("alice@localhost", "config")


def test_trusted_mapping_binds_without_hint() -> None:
    d = verify_binding("sip:alice@pbx.example", trusted=TRUSTED)
    assert d.jid == "alice@localhost"


def test_contradicting_hint_loses_to_the_mapping() -> None:
    d = verify_binding("sip:alice@pbx.example", trusted=TRUSTED, impp_uris=["xmpp:boss@localhost"])
    assert d.jid == "alice@localhost" and "wins" in d.reason


def test_asserted_identity_only_when_trusted() -> None:
    kw = dict(
        trusted=TRUSTED,
        asserted_identity="<sip:alice@pbx.example>",
        impp_uris=["xmpp:alice@localhost"],
    )
    assert not verify_binding("sip:anonymous@anonymous.invalid", **kw).bound  # type: ignore[arg-type]
    d = verify_binding("sip:anonymous@anonymous.invalid", trust_asserted_identity=True, **kw)  # type: ignore[arg-type]
    assert (d.jid, d.verified_by) == ("alice@localhost", "asserted-identity")


def test_garbage_hints_are_ignored() -> None:
    assert hinted_jids(["http://x", "xmpp:", "<xmpp:a@b/res>", "xmpp:A@B"], ["junk"]) == ("a@b",)


def test_normalisation_matches_the_workers_admission() -> None:
    from bridge.core.admission import normalize_caller

    for uri in ["sip:Bob@Example.org;user=phone", "<sips:+49@pbx?x=y>", "tel:+4912345"]:
        assert caller_key(uri) == normalize_caller(uri)


def test_bad_identities_raise() -> None:
    with pytest.raises(ValueError):
        caller_key("bob")
    with pytest.raises(ValueError):
        bare_jid("@localhost")


def test_participant_key_prefers_the_bound_jid() -> None:
    assert participant_key("sip:a@b") == "sip:a@b"
    assert participant_key("sip:a@b", "Alice@X/phone") == "xmpp:alice@x"


_USER = st.text(st.characters(blacklist_characters=";?@<>\n"), max_size=30)
_HINT = st.one_of(st.text(max_size=40), st.builds("xmpp:{}@localhost".format, _USER))


@given(_USER, st.lists(_HINT, max_size=3))
def test_no_header_ever_binds_an_unlisted_caller(user: str, hints: list[str]) -> None:
    d = verify_binding(
        f"sip:{user}@elsewhere.example", trusted=TRUSTED, impp_uris=hints, xmpp_contacts=hints
    )
    assert not d.bound


def _leg(leg_id: str, from_uri: str, host: str, room: str = "standup") -> LegJoined:
    return LegJoined(leg_id, room, f"{leg_id}@pbx", 1, from_uri, source_host=host)


def test_out_of_dialog_message_is_matched_to_one_caller_by_from_and_source_host() -> None:
    legs = [
        _leg("w1.0.1", "sip:bob@10.0.0.5:5062", "10.0.0.5"),
        _leg("w1.0.2", "sip:carol@10.0.0.6", "10.0.0.6"),
        _leg("w1.0.3", "sip:bob@10.0.0.5", "10.0.0.5", room="other"),
    ]
    # a phone's chat outside its call: same caller (port and params ignored), same host
    assert sender_leg(legs, "Standup", '"Bob" <sip:Bob@10.0.0.5:5099;x=y>', "10.0.0.5") == (
        "w1.0.1")  # fmt: skip
    # the same From from another host is not that caller; nor is an unknown or absent host
    assert sender_leg(legs, "standup", "sip:bob@10.0.0.5", "10.0.0.66") == ""
    assert sender_leg(legs, "standup", "sip:bob@10.0.0.5", "") == ""
    assert sender_leg(legs, "standup", "sip:mallory@10.0.0.5", "10.0.0.5") == ""
    assert sender_leg(legs, "standup", "not a uri", "10.0.0.5") == ""
    # two calls from one caller and host: which one spoke cannot be told
    twice = [*legs, _leg("w2.0.1", "sip:bob@10.0.0.5", "10.0.0.5")]
    assert sender_leg(twice, "standup", "sip:bob@10.0.0.5", "10.0.0.5") == ""
