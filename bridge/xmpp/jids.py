"""Puppet JIDs: ``<caller-id>@<component>/<leg>`` (pure).

The localpart is stable per caller identity (an HMAC of the SIP From user@host, keyed with a
bridge secret so that a phone number cannot be recovered by hashing all numbers), which makes
a MUC ban on the puppet's bare JID apply to that caller's later calls as well (DESIGN §4:
"refuse that caller's future INVITEs while the ban stands"). Anonymous callers get a per-leg
id instead, so banning one anonymous caller does not ban them all. The resource is the leg,
so one caller dialling in twice gets two occupants.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from bridge.protocol.nicks import sip_user_part

_ANONYMOUS_HOSTS = frozenset({"anonymous.invalid"})
_ANONYMOUS_USERS = frozenset({"anonymous", "unknown", "restricted", "unavailable", "private"})


def caller_identity(from_uri: str) -> str:
    """``user@host`` of a SIP From URI, lower-cased host, params dropped; '' if anonymous."""
    text = from_uri.strip()
    if text.startswith("<") and ">" in text:
        text = text[1 : text.index(">")]
    user = sip_user_part(text)
    scheme, _, rest = text.partition(":")
    if scheme.lower() == "tel":
        return user if user else ""
    host = rest.split(";", 1)[0].split("?", 1)[0].rpartition("@")[2].lower()
    host = host[: host.find("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
    if not user or user.lower() in _ANONYMOUS_USERS or host in _ANONYMOUS_HOSTS:
        return ""
    return f"{user}@{host}"


def _digest(key: bytes, text: str) -> str:
    mac = hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()[:10]
    return base64.b32encode(mac).decode("ascii").lower()


def puppet_localpart(key: bytes, from_uri: str, leg_id: str) -> str:
    identity = caller_identity(from_uri)
    if identity:
        return "sip-" + _digest(key, identity)
    return "anon-" + _digest(key, "leg:" + leg_id)


def leg_resource(leg_id: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", leg_id)[:64]
    return cleaned or "leg"


def puppet_jid(key: bytes, component: str, from_uri: str, leg_id: str) -> str:
    return f"{puppet_localpart(key, from_uri, leg_id)}@{component}/{leg_resource(leg_id)}"
