"""Who is calling, and how sure we are (issue 18, DESIGN §3 "Trust model").

The ``From`` header is written by the caller: it is never an identity. A call's identity has
one of three levels:

* **authenticated** — the caller answered a SIP digest challenge (RFC 8760 / RFC 2617)
  for an account the operator configured: the key is ``sip:<user>@<realm>``;
* **asserted** — a configured trusted peer (the operator's PBX, SBC or the chart's
  Kamailio: addresses/CIDRs) sent ``P-Asserted-Identity`` (RFC 3325): the key is that URI.
  From anyone else the header is ignored before it is read;
* **unverified** — everyone else. The key is per call (``unverified:<leg>``): no stored
  role, mute, JID binding or PIN exemption ever follows it to another call, and each
  anonymous caller is its own participant. What can be enforced against such a caller is
  its source address (``addr:<ip>``) and, as a weak hint only, its From (``from:<uri>``).

Pure: the SIP workers build a :class:`CallerIdentity` per INVITE; policy, bans, PIN budgets
and rate limits key on :attr:`CallerIdentity.key` / :meth:`CallerIdentity.ban_keys`.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from bridge.core.admission import normalize_caller

UNVERIFIED_PREFIX = "unverified:"
ADDR_PREFIX = "addr:"
FROM_HINT_PREFIX = "from:"
UNVERIFIED_MARK = "(unverified)"


class IdentityLevel(StrEnum):
    AUTHENTICATED = "authenticated"
    ASSERTED = "asserted"
    UNVERIFIED = "unverified"


class AdmitMode(StrEnum):
    """What a node (or room) admits: everyone, or only authenticated/asserted callers."""

    OPEN = "open"
    VERIFIED_ONLY = "verified-only"


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    """One call's identity. ``from_hint`` is what the caller wrote: shown, never trusted."""

    level: IdentityLevel
    key: str  # participant key: sip:user@realm | caller_key(PAI) | unverified:<call token>
    display: str = ""
    source_addr: str = ""  # IP address the request came from (the packet, not a header)
    from_hint: str = ""  # From URI in comparison form, '' if unreadable
    verified_by: str = ""  # "digest:SHA-256", "digest:MD5", "peer:<cidr>", "dial-out", ""

    @property
    def verified(self) -> bool:
        """Authenticated or asserted: may hold roles, JID bindings, PIN exemptions."""
        return self.level is not IdentityLevel.UNVERIFIED

    def ban_keys(self) -> tuple[str, ...]:
        """Keys a ban on this caller is stored under, and admission checks.

        A verified caller is banned by its identity. An unverified one by what can be
        enforced: its source address, and its From as a hint (cheap to change, but it
        stops the careless).
        """
        if self.verified:
            return (self.key,)
        out = []
        if self.source_addr:
            with contextlib.suppress(ValueError):  # unreadable: nothing to enforce there
                out.append(addr_key(self.source_addr))
        if self.from_hint:
            out.append(FROM_HINT_PREFIX + self.from_hint)
        return tuple(out)

    def admission_keys(self) -> tuple[str, ...]:
        """What admission compares with stored bans (same as :meth:`ban_keys`)."""
        return self.ban_keys()


def addr_key(addr: str) -> str:
    """``addr:<ip>`` in a form :func:`normalize_caller` leaves intact (IPv6 bracketed)."""
    ip = ipaddress.ip_address(addr.strip().strip("[]"))
    return f"{ADDR_PREFIX}[{ip.compressed}]" if ip.version == 6 else f"{ADDR_PREFIX}{ip}"


def is_unverified_key(key: str) -> bool:
    return key.startswith(UNVERIFIED_PREFIX)


@dataclass(frozen=True, slots=True)
class TrustedPeers:
    """Addresses whose ``P-Asserted-Identity`` we believe (RFC 3325 "trust domain")."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TrustedPeers:
        """``["10.0.0.5", "192.168.0.0/24", "::1"]``; raises ValueError on a bad entry."""
        nets = []
        for entry in entries:
            try:
                nets.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"not an address or CIDR: {entry!r}") from exc
        return cls(tuple(nets))

    def match(self, addr: str) -> str:
        """The matching network as text, or '' (also for an unreadable address)."""
        try:
            ip = ipaddress.ip_address(addr.strip().strip("[]"))
        except ValueError:
            return ""
        for net in self.networks:
            if ip.version == net.version and ip in net:
                return str(net)
        return ""


def _comparison(uri: str) -> str:
    text = uri.strip()
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1 : text.rindex(">")]
    if ":" not in text:
        return ""
    try:
        return normalize_caller(text)
    except (ValueError, IndexError):
        return ""


def identify(
    *,
    call_token: str,
    from_uri: str,
    display: str = "",
    source_addr: str = "",
    authenticated_user: str = "",
    realm: str = "",
    algorithm: str = "",
    asserted_identity: str = "",
    peers: TrustedPeers = TrustedPeers(),
) -> CallerIdentity:
    """The identity of one request, strongest level first.

    ``authenticated_user`` only after a digest response checked out for ``realm``;
    ``asserted_identity`` is used only when ``source_addr`` is a trusted peer (it is
    ignored otherwise, whatever it says). ``call_token`` makes an unverified key unique
    per call (the leg id).
    """
    from_hint = _comparison(from_uri)
    display = display[:128]
    if authenticated_user:
        key = normalize_caller(f"sip:{authenticated_user}@{realm}")
        return CallerIdentity(
            IdentityLevel.AUTHENTICATED, key, display, source_addr, from_hint,
            f"digest:{algorithm or 'MD5'}",
        )  # fmt: skip
    peer = peers.match(source_addr) if source_addr else ""
    if peer and asserted_identity:
        key = _comparison(asserted_identity)
        if key:
            return CallerIdentity(
                IdentityLevel.ASSERTED, key, display, source_addr, from_hint, f"peer:{peer}"
            )
    if not call_token:
        raise ValueError("an unverified caller needs a per-call token")
    return CallerIdentity(
        IdentityLevel.UNVERIFIED, UNVERIFIED_PREFIX + call_token, display, source_addr,
        from_hint, "",
    )  # fmt: skip


def shown_nick(nick: str, identity: CallerIdentity | None, max_chars: int = 40) -> str:
    """The nick the room sees: an unverified caller's carries ``(unverified)``, so that a
    display name like "Alice (CEO)" cannot pass for the real one."""
    if identity is None or identity.verified:
        return nick
    room = max_chars - len(UNVERIFIED_MARK) - 1
    return f"{nick[:room].rstrip()} {UNVERIFIED_MARK}"


def admits(mode: AdmitMode, identity: CallerIdentity) -> bool:
    """``verified-only`` refuses unverified callers (403); ``open`` admits everyone."""
    return mode is AdmitMode.OPEN or identity.verified


__all__ = [
    "ADDR_PREFIX",
    "FROM_HINT_PREFIX",
    "UNVERIFIED_MARK",
    "UNVERIFIED_PREFIX",
    "AdmitMode",
    "CallerIdentity",
    "IdentityLevel",
    "TrustedPeers",
    "addr_key",
    "admits",
    "identify",
    "is_unverified_key",
    "shown_nick",
]
