"""Whether a call is protected on the wire, from what pjsip actually did (pure).

RFC 7081 §7: the room is told about callers that can be overheard. That judgement must not
rest on what the caller *writes* (a Via header saying TLS, an SDP offer saying RTP/SAVP), only
on the transport the INVITE really arrived on (``pjsip_rx_data.tp_info.transport->type_name``,
read by :mod:`bridge.sip.evsub_native`) and on whether pjmedia's SRTP transport is active for
the negotiated stream (pjsua's call dump reports ``SRTP status: Active``).
"""

from __future__ import annotations

import re

#: pjsip's transport type names (sip_transport.c) → our transport words
_TRANSPORTS = {
    "UDP": "udp", "UDP6": "udp", "TCP": "tcp", "TCP6": "tcp", "TLS": "tls", "TLS6": "tls",
}  # fmt: skip
_SRTP_STATUS = re.compile(r"SRTP status: (Active|Not active)")


def transport_word(type_name: str | None) -> str | None:
    """``udp``/``tcp``/``tls`` for a pjsip transport type name; None if not one of them."""
    return _TRANSPORTS.get(type_name or "")


def srtp_active(call_dump: str) -> bool:
    """True only if pjsua's dump of the call reports an active SRTP session, and no
    stream of it reports an inactive one."""
    states = _SRTP_STATUS.findall(call_dump)
    return bool(states) and all(s == "Active" for s in states)


def encrypted(transport: str, srtp: bool) -> bool:
    """Signalling over TLS and audio over SRTP: nothing readable on the way to us."""
    return transport == "tls" and srtp


def exposure(transport: str, srtp: bool) -> str:
    """What an eavesdropper gets, for the room notice: ``UDP signalling, plain RTP audio``."""
    return f"{transport.upper()} signalling, {'SRTP' if srtp else 'plain RTP'} audio"
