"""The identity gate in front of pjsua: challenge, refuse or let a request through (pure).

A SIP worker asks :meth:`CallerPolicy.gate` for every out-of-dialog INVITE, MESSAGE and
SUBSCRIBE before pjsua sees it, and :meth:`CallerPolicy.identify` when it decides an INVITE.
Who is challenged (401 with SHA-256 and MD5, RFC 8760):

* a caller whose From names a configured account (``sip:<account>@<realm or domain>``):
  whoever claims an account proves it, so a forged From gets 401, never the account;
* everyone except trusted peers when the room (or node) is ``verified-only``.

A trusted peer is never challenged: its P-Asserted-Identity is the identity. Everyone else
passes unchallenged and is *unverified* (a per-call identity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from bridge.core.caller_identity import (
    AdmitMode,
    CallerIdentity,
    TrustedPeers,
    identify,
)
from bridge.core.digest import ALGORITHMS, Account, Outcome, challenges, make_nonce, verify


class GateAction(StrEnum):
    PASS = "pass"
    CHALLENGE = "challenge"  # 401 + WWW-Authenticate
    REFUSE = "refuse"  # 403


@dataclass(frozen=True, slots=True)
class GateDecision:
    action: GateAction
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    user: str = ""  # the authenticated account when action is PASS after a good response
    algorithm: str = ""


@dataclass(frozen=True, slots=True)
class CallerPolicy:
    """Everything a worker needs to tell who is calling; picklable (sent in WorkerSpec)."""

    realm: str = ""
    domain: str = ""  # the SIP domain: From sip:<account>@<domain> also claims an account
    accounts: Mapping[str, Account] = field(default_factory=dict)
    peers: TrustedPeers = field(default_factory=TrustedPeers)
    admit: AdmitMode = AdmitMode.OPEN
    room_admit: Mapping[str, AdmitMode] = field(default_factory=dict)
    nonce_secret: bytes = b""
    nonce_ttl_s: float = 300.0
    algorithms: tuple[str, ...] = ALGORITHMS  # challenge order

    def mode(self, room: str) -> AdmitMode:
        return self.room_admit.get(room.lower(), self.admit)

    def claims_account(self, from_uri: str) -> bool:
        """From says ``sip:<user>@<host>`` for a configured user at our realm or domain."""
        text = from_uri.strip()
        if "<" in text and ">" in text:
            text = text[text.index("<") + 1 : text.rindex(">")]
        scheme, _, rest = text.partition(":")
        if scheme.lower() not in {"sip", "sips"}:
            return False
        user, at, host = rest.split(";", 1)[0].rpartition("@")
        host = host.split(":", 1)[0].lower()
        hosts = {h.lower() for h in (self.realm, self.domain) if h}
        return bool(at) and user in self.accounts and host in hosts

    def gate(
        self,
        *,
        method: str,
        room: str,
        request_uri: str,
        from_uri: str,
        source_addr: str,
        authorizations: Sequence[str],
        now: float,
        require_verified: bool = False,
    ) -> GateDecision:
        """What to do with an out-of-dialog request before pjsua answers it.

        ``require_verified`` (out-of-dialog MESSAGE): a caller who is neither a trusted peer
        nor authenticated is challenged when accounts exist, else refused.
        """
        if self.peers.match(source_addr):
            return GateDecision(GateAction.PASS, "trusted peer")
        if not self.accounts or not self.nonce_secret:
            if require_verified:
                return GateDecision(GateAction.REFUSE, "authenticated or asserted callers only")
            return GateDecision(GateAction.PASS, "no accounts")
        verdict = verify(
            list(authorizations), method=method, request_uri=request_uri, realm=self.realm,
            accounts=self.accounts, secret=self.nonce_secret, now=now, ttl=self.nonce_ttl_s,
        )  # fmt: skip
        if verdict.outcome is Outcome.OK:
            return GateDecision(
                GateAction.PASS, "authenticated", user=verdict.user, algorithm=verdict.algorithm
            )
        if verdict.outcome is Outcome.REFUSED:
            return GateDecision(GateAction.REFUSE, verdict.reason)
        stale = verdict.outcome is Outcome.STALE
        if (
            stale
            or require_verified
            or self.claims_account(from_uri)
            or self.mode(room) is AdmitMode.VERIFIED_ONLY
        ):
            nonce = make_nonce(self.nonce_secret, self.realm, now)
            values = challenges(self.realm, nonce, stale=stale, algorithms=self.algorithms)
            return GateDecision(
                GateAction.CHALLENGE,
                "nonce expired" if stale else "authentication required",
                tuple(("WWW-Authenticate", v) for v in values),
            )
        return GateDecision(GateAction.PASS, "unverified")

    def identify(
        self,
        *,
        call_token: str,
        gate: GateDecision,
        from_uri: str,
        display: str,
        source_addr: str,
        asserted_identity: str,
    ) -> CallerIdentity:
        """The call's identity, given the gate's decision on the same request."""
        return identify(
            call_token=call_token, from_uri=from_uri, display=display, source_addr=source_addr,
            authenticated_user=gate.user if gate.action is GateAction.PASS else "",
            realm=self.realm, algorithm=gate.algorithm, asserted_identity=asserted_identity,
            peers=self.peers,
        )  # fmt: skip


__all__ = ["CallerPolicy", "GateAction", "GateDecision"]
