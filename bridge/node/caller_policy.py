"""Settings → :class:`~bridge.core.caller_gate.CallerPolicy` for the SIP workers.

The digest nonce key is derived from the component secret, which every replica of a
deployment shares, so a nonce issued by one worker (or replica) is accepted by any other;
without a secret (demo) each node draws a random one (its own workers still share it).
"""

from __future__ import annotations

import hashlib
import hmac
import os

from bridge.config import Settings
from bridge.core.caller_gate import CallerPolicy
from bridge.core.caller_identity import TrustedPeers
from bridge.core.digest import Account


def caller_policy(settings: Settings) -> CallerPolicy:
    ident = settings.identity
    secret = settings.xmpp.secret.get_secret_value().encode()
    key = (
        hmac.new(secret, b"sipmuc sip digest nonce", hashlib.sha256).digest()
        if secret
        else (os.urandom(32))
    )
    return CallerPolicy(
        realm=ident.realm or settings.sip.domain,
        domain=settings.sip.domain,
        accounts={
            user: Account(ha1_sha256=acc.ha1_sha256, ha1_md5=acc.ha1_md5)
            for user, acc in ident.accounts.items()
        },
        peers=TrustedPeers.parse(ident.trusted_peers),
        admit=ident.admit,
        room_admit=dict(ident.room_admit),
        nonce_secret=key,
        nonce_ttl_s=float(ident.nonce_ttl_s),
        algorithms=tuple(dict.fromkeys(str(a.value) for a in ident.digest_algorithms)),
    )


__all__ = ["caller_policy"]
