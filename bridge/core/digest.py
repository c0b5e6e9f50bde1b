"""SIP digest authentication (RFC 3261 §22, RFC 8760 SHA-256, RFC 2617 MD5): pure math.

Accounts are stored as HA1 = H(user:realm:password) per algorithm, never as passwords. The
nonce is stateless: ``<timestamp>.<HMAC(secret, timestamp:realm)>``, so any worker (or replica
sharing the secret) can check a response to a challenge another one sent, and a nonce expires
after ``ttl`` seconds (then the caller gets ``stale=true`` and retries without asking its
user). Without per-nonce state a captured response can be replayed until the nonce expires;
keep the TTL short and use TLS where that matters. Only ``qop=auth`` is accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

HASHES: dict[str, Callable[[bytes], str]] = {
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
}
#: challenge order: the strongest first (RFC 8760 §2.4: the client uses the first it knows)
ALGORITHMS = ("SHA-256", "MD5")
HEX_LENGTH = {"SHA-256": 64, "MD5": 32}
MAX_HEADER = 2048


def ha1(user: str, realm: str, password: str, algorithm: str) -> str:
    """H(username:realm:password): what the operator stores instead of the password."""
    return HASHES[algorithm](f"{user}:{realm}:{password}".encode())


@dataclass(frozen=True, slots=True)
class Account:
    """One user's HA1 per algorithm (lower-case hex); at least one must be set."""

    ha1_sha256: str = ""
    ha1_md5: str = ""

    def ha1(self, algorithm: str) -> str:
        return self.ha1_sha256 if algorithm == "SHA-256" else self.ha1_md5


def make_nonce(secret: bytes, realm: str, now: float) -> str:
    stamp = str(int(now))
    mac = hmac.new(secret, f"{stamp}:{realm}".encode(), hashlib.sha256).digest()[:18]
    return f"{stamp}.{base64.urlsafe_b64encode(mac).decode()}"


class NonceState(StrEnum):
    OK = "ok"
    STALE = "stale"  # ours, but expired: challenge again with stale=true
    BAD = "bad"  # not ours (forged or from another secret)


def check_nonce(secret: bytes, realm: str, nonce: str, now: float, ttl: float) -> NonceState:
    stamp, dot, _ = nonce.partition(".")
    if not dot or not stamp.isdigit() or len(stamp) > 12:
        return NonceState.BAD
    if not hmac.compare_digest(make_nonce(secret, realm, int(stamp)), nonce):
        return NonceState.BAD
    age = now - int(stamp)
    if age < -5:  # from the future: another secret's clock, or forged
        return NonceState.BAD
    return NonceState.STALE if age > ttl else NonceState.OK


def challenges(
    realm: str, nonce: str, *, stale: bool = False, algorithms: tuple[str, ...] = ALGORITHMS
) -> tuple[str, ...]:
    """``WWW-Authenticate`` values, one per algorithm, in preference order (RFC 8760 §2.4:
    SHA-256 first). Some clients (SIPp 3.6) answer the first challenge whatever its
    algorithm, hence ``algorithms`` is configurable."""
    extra = ", stale=true" if stale else ""
    return tuple(
        f'Digest realm="{_quote(realm)}", nonce="{nonce}", algorithm={alg}, qop="auth"{extra}'
        for alg in algorithms
    )


_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*(,|$)')


def parse_authorization(value: str) -> dict[str, str]:
    """``Digest username="a", realm="r", ...`` → lower-case keys; ValueError if not digest."""
    text = value.strip()
    if len(text) > MAX_HEADER:
        raise ValueError("Authorization header too long")
    scheme, _, rest = text.partition(" ")
    if scheme.lower() != "digest":
        raise ValueError(f"not a Digest credential: {scheme[:20]!r}")
    out: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None:
            raise ValueError("unreadable Digest parameters")
        key, raw = m.group(1).lower(), m.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if key in out:
            raise ValueError(f"repeated Digest parameter {key!r}")
        out[key] = raw
        pos = m.end()
    return out


def response(  # noqa: PLR0917 (the RFC's own argument order)
    ha1_hex: str, algorithm: str, method: str, uri: str, nonce: str, nc: str, cnonce: str,
    qop: str = "auth",
) -> str:  # fmt: skip
    """KD(HA1, nonce:nc:cnonce:qop:H(method:uri)) (RFC 2617 §3.2.2.1, RFC 8760)."""
    h = HASHES[algorithm]
    ha2 = h(f"{method}:{uri}".encode())
    if not qop:
        return h(f"{ha1_hex}:{nonce}:{ha2}".encode())
    return h(f"{ha1_hex}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


class Outcome(StrEnum):
    OK = "ok"
    MISSING = "missing"  # no credentials for our realm: challenge
    STALE = "stale"  # right password, expired nonce: challenge with stale=true
    REFUSED = "refused"  # wrong password, unknown user, forged nonce, bad parameters


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    user: str = ""
    algorithm: str = ""
    reason: str = ""


def verify(
    authorizations: list[str],
    *,
    method: str,
    request_uri: str,
    realm: str,
    accounts: Mapping[str, Account],
    secret: bytes,
    now: float,
    ttl: float,
) -> Verdict:
    """Check the ``Authorization`` headers of a request against the accounts."""
    params: dict[str, str] | None = None
    for value in authorizations:
        try:
            parsed = parse_authorization(value)
        except ValueError as exc:
            return Verdict(Outcome.REFUSED, reason=str(exc))
        if parsed.get("realm") == realm:
            params = parsed
            break
    if params is None:
        return Verdict(Outcome.MISSING)
    user = params.get("username", "")
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in HASHES:
        return Verdict(Outcome.REFUSED, user, reason=f"algorithm {algorithm[:20]} not offered")
    account = accounts.get(user)
    stored = account.ha1(algorithm) if account is not None else ""
    if not stored:
        return Verdict(Outcome.REFUSED, user, algorithm, "no such account for this algorithm")
    if params.get("qop", "") != "auth" or not params.get("cnonce") or not params.get("nc"):
        return Verdict(Outcome.REFUSED, user, algorithm, "qop=auth with cnonce and nc required")
    digest_uri = params.get("uri", "")
    if digest_uri != request_uri and not digest_uri.lower().startswith(("sip:", "sips:")):
        # RFC 3261 wants the Request-URI here; SIPp 3.6 sends the server's address. The
        # response covers whatever was sent, so a SIP URI other than ours is tolerated.
        return Verdict(Outcome.REFUSED, user, algorithm, "digest uri is not a SIP URI")
    nonce = params.get("nonce", "")
    state = check_nonce(secret, realm, nonce, now, ttl)
    if state is NonceState.BAD:
        return Verdict(Outcome.REFUSED, user, algorithm, "nonce not issued by us")
    expected = response(
        stored, algorithm, method, digest_uri, nonce, params["nc"], params["cnonce"]
    )
    if not hmac.compare_digest(expected, params.get("response", "").lower()):
        return Verdict(Outcome.REFUSED, user, algorithm, "wrong response")
    if state is NonceState.STALE:
        return Verdict(Outcome.STALE, user, algorithm, "nonce expired")
    return Verdict(Outcome.OK, user, algorithm)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


__all__ = [
    "ALGORITHMS",
    "Account",
    "NonceState",
    "Outcome",
    "Verdict",
    "challenges",
    "check_nonce",
    "ha1",
    "make_nonce",
    "parse_authorization",
    "response",
    "verify",
]
