"""Caller ↔ JID binding: headers are hints, only a trusted source binds (RFC 7081 §3.5, §7).

``Call-Info: <xmpp:jid>;purpose=impp`` (RFC 6993) and ``XMPP-Contact`` are written by the
caller's own user agent: anyone can claim anyone's JID with them. Binding a caller to an
occupant on the header alone would let a stranger speak (and moderate) as that occupant, so a
binding is made only when a trusted source says the caller *is* that JID: the configured
mapping (or a directory the supervisor queried and turned into the same mapping), optionally
looked up by P-Asserted-Identity when the deployment trusts the proxy that sets it (RFC 3325).
Pure functions; the participant keys they return are the ones :mod:`bridge.state` stores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bridge.core.admission import normalize_caller
from bridge.core.events import LegJoined


def caller_key(uri: str) -> str:
    """Comparison form of a caller: ``"Bob" <sips:Bob@Ex.org:5061;x=y>`` → ``sip:bob@ex.org``.

    Same rule as :func:`bridge.core.admission.normalize_caller` (no params or headers, lower
    case, ``sips:`` ≡ ``sip:``) so that bans written here match the workers' admission check.
    """
    text = uri.strip()
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1 : text.rindex(">")]
    text = text.strip().split(";", 1)[0].split("?", 1)[0].lower()
    if text.startswith("sips:"):
        text = "sip:" + text[5:]
    if not text or ":" not in text:
        raise ValueError(f"not a SIP/tel URI: {uri!r}")
    return normalize_caller(text)


def bare_jid(jid: str) -> str:
    """``Alice@Example.org/phone`` → ``alice@example.org`` (resource dropped, lower case)."""
    text = jid.strip()
    if text.startswith("xmpp:"):
        text = text[5:]
    text = text.split("?", 1)[0].split("/", 1)[0].lower()
    if not text or " " in text or text.startswith("@") or text.endswith("@"):
        raise ValueError(f"not a JID: {jid!r}")
    return text


def jid_key(jid: str) -> str:
    """Participant key of an XMPP identity: ``xmpp:<bare jid>``."""
    return "xmpp:" + bare_jid(jid)


def hinted_jids(impp_uris: Iterable[str], xmpp_contacts: Iterable[str]) -> tuple[str, ...]:
    """Bare JIDs claimed by the caller's headers (xmpp: URIs only; garbage ignored)."""
    out: list[str] = []
    for value in (*impp_uris, *xmpp_contacts):
        text = value.strip().strip("<>").strip()
        if not text.lower().startswith("xmpp:"):
            continue
        try:
            jid = bare_jid(text)
        except ValueError:
            continue
        if jid not in out:
            out.append(jid)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class BindingDecision:
    """``jid`` empty = not bound (the caller is shown as its own puppet)."""

    jid: str
    verified_by: str  # "config" | "asserted-identity" | "" when not bound
    reason: str  # human explanation, logged
    hints: tuple[str, ...] = ()

    @property
    def bound(self) -> bool:
        return bool(self.jid)


def normalize_trusted(mapping: Mapping[str, str]) -> dict[str, str]:
    """Config mapping caller URI → JID in comparison form; raises ValueError on a bad entry."""
    return {caller_key(uri): bare_jid(jid) for uri, jid in mapping.items()}


def verify_binding(
    caller_uri: str,
    *,
    trusted: Mapping[str, str],
    impp_uris: Iterable[str] = (),
    xmpp_contacts: Iterable[str] = (),
    asserted_identity: str = "",
    trust_asserted_identity: bool = False,
) -> BindingDecision:
    """Bind only what a trusted mapping confirms; a header alone never binds.

    ``trusted`` must be in comparison form (:func:`normalize_trusted`). A hint that
    contradicts the trusted mapping is reported and ignored: the mapping wins.
    """
    hints = hinted_jids(impp_uris, xmpp_contacts)
    lookups: list[tuple[str, str]] = []
    with contextlib.suppress(ValueError):
        lookups.append((caller_key(caller_uri), "config"))
    if trust_asserted_identity and asserted_identity:
        with contextlib.suppress(ValueError):
            lookups.append((caller_key(asserted_identity), "asserted-identity"))
    for key, source in lookups:
        jid = trusted.get(key)
        if jid is None:
            continue
        if hints and jid not in hints:
            reason = f"trusted mapping of {key} wins over contradicting hints"
        elif hints:
            reason = f"hint confirmed by trusted mapping of {key}"
        else:
            reason = f"trusted mapping of {key}"
        return BindingDecision(jid, source, reason, hints)
    if hints:
        reason = "unverified hint ignored: a header alone never binds (RFC 7081 §3.5)"
    else:
        reason = "no trusted binding"
    return BindingDecision("", "", reason, hints)


def participant_key(caller_uri: str, bound_jid: str = "") -> str:
    """The identity moderation is keyed by: the bound JID, else the caller's SIP URI, so a
    muted or banned caller is still muted or banned when calling again."""
    return jid_key(bound_jid) if bound_jid else caller_key(caller_uri)


__all__ = [
    "BindingDecision",
    "bare_jid",
    "caller_key",
    "hinted_jids",
    "jid_key",
    "normalize_trusted",
    "participant_key",
    "verify_binding",
]


def sender_leg(legs: Iterable[LegJoined], room: str, sender_uri: str, source_host: str) -> str:
    """The leg an out-of-dialog MESSAGE comes from, or "" when it cannot be told.

    Many phones (Linphone among them) send chat outside the call's dialog. Such a MESSAGE
    is the caller's only if it names the same caller (From, compared as ``caller_key``) and
    comes from the host the call came from, in the same room, and exactly one leg fits: a
    From header alone would let anyone speak as any caller they can name.
    """
    if not source_host:
        return ""
    try:
        key = caller_key(sender_uri)
    except ValueError:
        return ""
    found = []
    for leg in legs:
        if leg.room.lower() != room.lower() or leg.source_host != source_host:
            continue
        with contextlib.suppress(ValueError):
            if caller_key(leg.from_uri) == key:
                found.append(leg.leg_id)
    return found[0] if len(found) == 1 else ""
