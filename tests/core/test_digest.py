"""SIP digest math against the RFC vectors, and the stateless nonce."""

from __future__ import annotations

import pytest

from bridge.core.digest import (
    Account,
    NonceState,
    Outcome,
    challenges,
    check_nonce,
    ha1,
    make_nonce,
    parse_authorization,
    response,
    verify,
)

SECRET = b"s" * 32
REALM = "bridge.example"


def test_rfc2617_md5_vector() -> None:
    h1 = ha1("Mufasa", "testrealm@host.com", "Circle Of Life", "MD5")
    got = response(h1, "MD5", "GET", "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                   "00000001", "0a4f113b")  # fmt: skip
    assert got == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_vectors(algorithm: str, expected: str) -> None:  # RFC 8760 uses RFC 7616's
    h1 = ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    got = response(h1, algorithm, "GET", "/dir/index.html",
                   "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "00000001",
                   "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")  # fmt: skip
    assert got == expected


def test_nonce_is_stateless_and_expires() -> None:
    nonce = make_nonce(SECRET, REALM, 1000)
    assert check_nonce(SECRET, REALM, nonce, 1010, 60) is NonceState.OK
    assert check_nonce(SECRET, REALM, nonce, 1100, 60) is NonceState.STALE
    assert check_nonce(b"x" * 32, REALM, nonce, 1010, 60) is NonceState.BAD
    assert check_nonce(SECRET, "other", nonce, 1010, 60) is NonceState.BAD
    assert check_nonce(SECRET, REALM, "2000" + nonce[4:], 1010, 60) is NonceState.BAD


def _auth(algorithm: str, password: str, nonce: str, uri: str = "sip:room@b") -> str:
    h1 = ha1("alice", REALM, password, algorithm)
    r = response(h1, algorithm, "INVITE", uri, nonce, "00000001", "abc")
    return (
        f'Digest username="alice", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{r}", algorithm={algorithm}, cnonce="abc", qop=auth, nc=00000001'
    )


ACCOUNTS = {
    "alice": Account(ha1("alice", REALM, "pw", "SHA-256"), ha1("alice", REALM, "pw", "MD5"))
}


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_verify(algorithm: str) -> None:
    nonce = make_nonce(SECRET, REALM, 1000)
    kw = dict(method="INVITE", request_uri="sip:room@b", realm=REALM, accounts=ACCOUNTS,
              secret=SECRET, ttl=60.0)  # fmt: skip
    ok = verify([_auth(algorithm, "pw", nonce)], now=1001, **kw)  # type: ignore[arg-type]
    assert (ok.outcome, ok.user, ok.algorithm) == (Outcome.OK, "alice", algorithm)
    wrong = verify([_auth(algorithm, "nope", nonce)], now=1001, **kw)  # type: ignore[arg-type]
    assert wrong.outcome is Outcome.REFUSED
    stale = verify([_auth(algorithm, "pw", nonce)], now=2000, **kw)  # type: ignore[arg-type]
    assert stale.outcome is Outcome.STALE
    assert verify([], now=1001, **kw).outcome is Outcome.MISSING  # type: ignore[arg-type]
    forged = verify([_auth(algorithm, "pw", "1000.AAAA")], now=1001, **kw)  # type: ignore[arg-type]
    assert forged.outcome is Outcome.REFUSED
    other_uri = verify([_auth(algorithm, "pw", nonce, "sip:b:5060")], now=1001, **kw)  # type: ignore[arg-type]
    assert other_uri.outcome is Outcome.OK  # SIPp 3.6 digests the server address
    not_sip = verify([_auth(algorithm, "pw", nonce, "http://b/")], now=1001, **kw)  # type: ignore[arg-type]
    assert not_sip.outcome is Outcome.REFUSED


def test_challenges_offer_sha256_first() -> None:
    values = challenges(REALM, "n", stale=True)
    assert "algorithm=SHA-256" in values[0] and "algorithm=MD5" in values[1]
    assert all('qop="auth"' in v and "stale=true" in v for v in values)


def test_parse_authorization_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_authorization("Basic YWxhZGRpbjpvcGVuc2VzYW1l")
    with pytest.raises(ValueError):
        parse_authorization('Digest username="a", username="b"')
    assert parse_authorization('Digest username="a\\"b", nc=1')["username"] == 'a"b'
