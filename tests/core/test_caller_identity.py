"""Identity levels: From is never an identity; PAI only from trusted peers."""

from __future__ import annotations

import pytest

from bridge.core.caller_identity import (
    AdmitMode,
    IdentityLevel,
    TrustedPeers,
    addr_key,
    admits,
    identify,
    shown_nick,
)

PEERS = TrustedPeers.parse(["127.0.0.2", "10.0.0.0/8", "::1"])


def test_digest_user_is_authenticated() -> None:
    ident = identify(call_token="w0.1.1", from_uri="sip:forged@evil", authenticated_user="Alice",
                     realm="Bridge.Example", algorithm="SHA-256")  # fmt: skip
    assert ident.level is IdentityLevel.AUTHENTICATED
    assert ident.key == "sip:alice@bridge.example"
    assert ident.ban_keys() == ("sip:alice@bridge.example",)


def test_pai_only_from_trusted_peer() -> None:
    trusted = identify(call_token="t", from_uri="sip:x@y", source_addr="10.1.2.3",
                       asserted_identity="<sip:Bob@PBX.example>", peers=PEERS)  # fmt: skip
    assert (trusted.level, trusted.key) == (IdentityLevel.ASSERTED, "sip:bob@pbx.example")
    assert trusted.verified_by == "peer:10.0.0.0/8"
    outsider = identify(call_token="t", from_uri="sip:bob@pbx.example", source_addr="127.0.0.1",
                        asserted_identity="sip:bob@pbx.example", peers=PEERS)  # fmt: skip
    assert outsider.level is IdentityLevel.UNVERIFIED
    assert outsider.key == "unverified:t"  # never the From URI


def test_trusted_peer_without_pai_is_unverified() -> None:
    ident = identify(call_token="t", from_uri="sip:bob@pbx", source_addr="::1", peers=PEERS)
    assert ident.level is IdentityLevel.UNVERIFIED


def test_unverified_is_per_call_and_banned_by_address() -> None:
    a = identify(call_token="w0.1.1", from_uri="sip:anonymous@anonymous.invalid",
                 source_addr="192.0.2.7")  # fmt: skip
    b = identify(call_token="w0.1.2", from_uri="sip:anonymous@anonymous.invalid",
                 source_addr="192.0.2.8")  # fmt: skip
    assert a.key != b.key
    assert a.ban_keys() == ("addr:192.0.2.7", "from:sip:anonymous@anonymous.invalid")
    assert addr_key("::1") == "addr:[::1]"


def test_bad_trusted_peer_entry() -> None:
    with pytest.raises(ValueError, match="not an address"):
        TrustedPeers.parse(["pbx.example"])


def test_nick_and_mode() -> None:
    unverified = identify(call_token="t", from_uri="sip:a@b", source_addr="192.0.2.1")
    assert shown_nick("Alice (CEO)", unverified).endswith("(unverified)")
    assert len(shown_nick("x" * 40, unverified)) <= 40
    assert not admits(AdmitMode.VERIFIED_ONLY, unverified)
    assert admits(AdmitMode.OPEN, unverified)


# ---- the gate in front of pjsua ------------------------------------------------------------

from bridge.core.caller_gate import CallerPolicy, GateAction  # noqa: E402
from bridge.core.digest import Account, ha1, response  # noqa: E402

REALM = "bridge.example"
POLICY = CallerPolicy(
    realm=REALM, domain="localhost",
    accounts={"alice": Account(ha1_sha256=ha1("alice", REALM, "pw", "SHA-256"))},
    peers=PEERS, nonce_secret=b"k" * 32,
    room_admit={"ops": AdmitMode.VERIFIED_ONLY},
)  # fmt: skip
GATE = dict(method="INVITE", request_uri="sip:room@localhost", now=1000.0)


def test_forged_account_from_is_challenged() -> None:
    d = POLICY.gate(room="room", from_uri="<sip:alice@localhost>;tag=1", source_addr="127.0.0.1",
                    authorizations=[], **GATE)  # type: ignore[arg-type]  # fmt: skip
    assert d.action is GateAction.CHALLENGE
    assert [v for k, v in d.headers if "SHA-256" in v and k == "WWW-Authenticate"]


def test_stranger_passes_unverified_in_open_room_only() -> None:
    kw = dict(from_uri="sip:bob@elsewhere", source_addr="127.0.0.1", authorizations=[], **GATE)
    assert POLICY.gate(room="room", **kw).action is GateAction.PASS  # type: ignore[arg-type]
    assert POLICY.gate(room="Ops", **kw).action is GateAction.CHALLENGE  # type: ignore[arg-type]


def test_trusted_peer_is_never_challenged() -> None:
    d = POLICY.gate(room="ops", from_uri="sip:alice@localhost", source_addr="127.0.0.2",
                    authorizations=[], **GATE)  # type: ignore[arg-type]  # fmt: skip
    assert d.action is GateAction.PASS


def test_good_response_authenticates() -> None:
    challenge = POLICY.gate(room="ops", from_uri="sip:x@y", source_addr="127.0.0.1",
                            authorizations=[], **GATE)  # type: ignore[arg-type]  # fmt: skip
    nonce = dict(challenge.headers)["WWW-Authenticate"].split('nonce="')[1].split('"')[0]
    r = response(ha1("alice", REALM, "pw", "SHA-256"), "SHA-256", "INVITE", "sip:room@localhost",
                 nonce, "00000001", "c")  # fmt: skip
    auth = (f'Digest username="alice", realm="{REALM}", nonce="{nonce}", '
            f'uri="sip:room@localhost", response="{r}", algorithm=SHA-256, qop=auth, '
            'nc=00000001, cnonce="c"')  # fmt: skip
    d = POLICY.gate(room="ops", from_uri="sip:x@y", source_addr="127.0.0.1",
                    authorizations=[auth], **GATE)  # type: ignore[arg-type]  # fmt: skip
    assert (d.action, d.user) == (GateAction.PASS, "alice")
    ident = POLICY.identify(call_token="t", gate=d, from_uri="sip:x@y", display="",
                            source_addr="127.0.0.1", asserted_identity="")  # fmt: skip
    assert (ident.level, ident.key) == (IdentityLevel.AUTHENTICATED, "sip:alice@bridge.example")
    bad = POLICY.gate(room="ops", from_uri="sip:x@y", source_addr="127.0.0.1",
                      authorizations=[auth.replace(r, "0" * 64)], **GATE)  # type: ignore[arg-type]  # fmt: skip
    assert bad.action is GateAction.REFUSE
