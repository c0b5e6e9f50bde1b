"""Caller ↔ JID binding: a header alone never binds (RFC 7081 §3.5, §7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.caller_identity import CallerIdentity, IdentityLevel
from bridge.core.events import LegJoined
from bridge.core.identity import (
    bare_jid,
    caller_key,
    hinted_jids,
    leg_identity,
    normalize_trusted,
    participant_key,
    sender_leg,
    verify_binding,
)

TRUSTED = normalize_trusted({"sip:Alice@PBX.example": "Alice@Localhost"})


def test_header_alone_never_binds() -> None:
    d = verify_binding(
        "sip:mallory@evil.example",
        verified=True,
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
        verified=True,
        trusted=TRUSTED,
        impp_uris=["xmpp:alice@localhost"],
    )
    assert (d.jid, d.verified_by) == ("alice@localhost", "config")


def test_trusted_mapping_binds_without_hint() -> None:
    d = verify_binding("sip:alice@pbx.example", verified=True, trusted=TRUSTED)
    assert d.jid == "alice@localhost"


def test_contradicting_hint_loses_to_the_mapping() -> None:
    d = verify_binding(
        "sip:alice@pbx.example", verified=True, trusted=TRUSTED,
        impp_uris=["xmpp:boss@localhost"],
    )  # fmt: skip
    assert d.jid == "alice@localhost" and "wins" in d.reason


def test_unverified_identity_is_never_bound() -> None:
    """Issue 18: a From (or any unverified identity) naming a mapped caller binds nothing."""
    d = verify_binding(
        "sip:alice@pbx.example", verified=False, trusted=TRUSTED,
        impp_uris=["xmpp:alice@localhost"],
    )  # fmt: skip
    assert not d.bound and "unverified" in d.reason


def test_asserted_identity_binds_as_asserted() -> None:
    d = verify_binding(
        "sip:alice@pbx.example", verified=True, trusted=TRUSTED, verified_by="asserted-identity"
    )
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
        f"sip:{user}@elsewhere.example", verified=True, trusted=TRUSTED, impp_uris=hints,
        xmpp_contacts=hints,
    )  # fmt: skip
    assert not d.bound


def _leg(leg_id: str, key: str, room: str = "standup", *, verified: bool = True) -> LegJoined:
    level = IdentityLevel.AUTHENTICATED if verified else IdentityLevel.UNVERIFIED
    ident = CallerIdentity(level, key if verified else f"unverified:{leg_id}", "", "10.0.0.5")
    return LegJoined(leg_id, room, f"{leg_id}@pbx", 1, key, source_host="10.0.0.5",
                     identity=ident)  # fmt: skip


def test_out_of_dialog_message_is_matched_by_verified_identity_only() -> None:
    legs = [
        _leg("w1.0.1", "sip:bob@bridge"),
        _leg("w1.0.2", "sip:carol@bridge"),
        _leg("w1.0.3", "sip:bob@bridge", room="other"),
        _leg("w1.0.4", "sip:mallory@bridge", verified=False),
    ]
    assert sender_leg(legs, "Standup", "sip:bob@bridge") == "w1.0.1"
    assert sender_leg(legs, "standup", "") == ""
    assert sender_leg(legs, "standup", "sip:dave@bridge") == ""
    # an unverified leg is never a sender, whatever its From says
    assert sender_leg(legs, "standup", "sip:mallory@bridge") == ""
    # two calls of one identity: the latest
    twice = [*legs, _leg("w2.0.1", "sip:bob@bridge")]
    assert sender_leg(twice, "standup", "sip:bob@bridge") == "w2.0.1"


def test_a_leg_without_identity_is_unverified_and_per_call() -> None:
    a = leg_identity(LegJoined("w1.0.1", "r", "c", 1, "sip:alice@pbx.example"))
    b = leg_identity(LegJoined("w1.0.2", "r", "c", 1, "sip:alice@pbx.example"))
    assert not a.verified and a.key != b.key
