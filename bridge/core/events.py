"""Messages between the SIP media workers and the supervisor.

Plain frozen dataclasses, picklable, so they cross process boundaries (multiprocessing queues
or pipes) unchanged and are easy to build in tests. A leg is one SIP call in one room; its id
(``leg_id``) is unique per node and stable for the call's life.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.caller_identity import CallerIdentity

# ---- SIP worker → supervisor ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegJoined:
    """A caller's INVITE was accepted and its audio is connected to the mix."""

    leg_id: str
    room: str  # room local part as dialled: sip:<room>@<sip-domain>
    call_id: str
    worker: int
    from_uri: str
    display_name: str = ""
    asserted_identity: str = ""  # P-Asserted-Identity (only ever set from a trusted peer)
    impp_uris: tuple[str, ...] = ()  # Call-Info ...;purpose=impp values (RFC 6993), a hint only
    xmpp_contacts: tuple[str, ...] = ()  # XMPP-Contact header values, a hint only
    codec: str = ""
    sample_rate: int = 16000
    transport: str = "udp"  # transport the INVITE really came on: udp, tcp, tls (or unknown)
    srtp: bool = False  # the audio's SRTP session is active (pjmedia, after negotiation)
    encrypted: bool = False  # TLS signalling and SRTP media (RFC 7081 §7)
    source_host: str = ""  # IP address the INVITE came from
    identity: CallerIdentity | None = None  # who is calling; None only in old tests


@dataclass(frozen=True, slots=True)
class LegLeft:
    leg_id: str
    room: str
    call_id: str
    reason: str  # e.g. "bye", "cancel", "timeout", "kicked", "worker-died"


@dataclass(frozen=True, slots=True)
class TalkingChanged:
    leg_id: str
    room: str
    talking: bool


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    leg_id: str
    room: str
    digit: str  # one of 0-9 * # A-D
    method: str  # "rfc4733" or "info"


@dataclass(frozen=True, slots=True)
class DialProgress:
    """How a dial-out (:class:`DialOutCall`) is going. ``status``: ``trying`` (INVITE sent),
    ``ringing``, ``answered`` (``leg_id`` is now a normal leg: ``LegJoined`` follows) or
    ``failed`` (``reason`` says why, e.g. ``486 Busy Here``)."""

    request_id: str
    room: str
    status: str
    reason: str = ""
    leg_id: str = ""


@dataclass(frozen=True, slots=True)
class SipMessageReceived:
    """A SIP MESSAGE to the conference (in-dialog: ``leg_id`` set; out-of-dialog: empty)."""

    room: str
    sender_uri: str
    body: str
    content_type: str = "text/plain"
    subject: str = ""
    call_id: str = ""
    language: str = ""  # Content-Language → xml:lang
    leg_id: str = ""
    sender_display: str = ""
    source_host: str = ""  # IP address the MESSAGE came from (matches out-of-dialog to a leg)
    sender_key: str = ""  # out-of-dialog: the verified identity key the filter checked


# ---- supervisor → SIP worker ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MuteLeg:
    leg_id: str
    muted: bool


@dataclass(frozen=True, slots=True)
class HangupLeg:
    leg_id: str
    reason: str = ""
    status_code: int = 200  # only meaningful before the call is answered


@dataclass(frozen=True, slots=True)
class SendSipMessage:
    """MESSAGE to a leg, in-dialog. ``sender_display`` says who wrote it (the chat nick)."""

    leg_id: str
    body: str
    content_type: str = "text/plain"
    subject: str = ""
    thread: str = ""  # XMPP thread → Call-ID hint when out-of-dialog
    language: str = ""
    sender_display: str = ""


@dataclass(frozen=True, slots=True)
class PlayTone:
    """A short audible cue (e.g. muted / unmuted) to one leg."""

    leg_id: str
    kind: str  # "muted", "unmuted", "beep"


@dataclass(frozen=True, slots=True)
class HoldLeg:
    """Keep a leg out of the mix (``held``: neither heard nor hearing; cues still play), e.g.
    while its caller enters the dial-in PIN; ``held=False`` admits it. Applied by the pool."""

    leg_id: str
    held: bool


@dataclass(frozen=True, slots=True)
class DialOutCall:
    """Call ``target_uri`` into conference ``room``; progress comes back as
    :class:`DialProgress` with the same ``request_id``. Sent with ``WorkerPool.dial``."""

    room: str
    target_uri: str
    request_id: str
    display_name: str = ""
    #: a line between our own replicas (drain handover), not an outside number: the
    #: operator's dial plan and the loop guard are for calls rooms ask for, not for this
    internal: bool = False


SipEvent = LegJoined | LegLeft | TalkingChanged | DtmfReceived | SipMessageReceived | DialProgress
SipCommand = MuteLeg | HangupLeg | SendSipMessage | PlayTone | HoldLeg

__all__ = [
    "DialOutCall",
    "DialProgress",
    "DtmfReceived",
    "HangupLeg",
    "HoldLeg",
    "LegJoined",
    "LegLeft",
    "MuteLeg",
    "PlayTone",
    "SendSipMessage",
    "SipCommand",
    "SipEvent",
    "SipMessageReceived",
    "TalkingChanged",
]
