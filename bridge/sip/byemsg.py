"""A BYE for a dialog whose worker died, built from the dialog state alone (RFC 3261 §12).

When a SIP worker dies its pjsip dialogs die with it, but the phones do not know: a phone
without RFC 4028 session timers keeps the call until its user hangs up. The worker tells the
pool, for every confirmed leg, what a BYE needs (:class:`DialogState`); when the worker dies
the pool sends one (``bridge.sip.orphan_bye``). Everything here is pure: no sockets, no
pjsua2, so each RFC 3261 rule is unit-tested on plain strings:

* Request-URI = the remote target (the phone's Contact), Route = the route set (the INVITE's
  Record-Route, in order, §12.1.1); a strict router first in the route set gets the
  Request-URI and the remote target goes last (§12.2.1.1).
* From = our side with our tag, To = the phone with its tag, the dialog's Call-ID (§12.2.1.1).
* CSeq above every request the dead worker may have sent: gaps are allowed (§12.2.1.1), a
  lower one would be refused with 500 (§12.2.2).
* A fresh Via branch (``z9hG4bK``, §8.1.1.7), Max-Forwards 70, Content-Length 0, and
  ``Reason: SIP;cause=500;text="bridge worker failed"`` (RFC 3326).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bridge.protocol.sip_reason import reason_header
from bridge.sip.sipmsg import (
    SipRequest,
    parse_headers,
    parse_name_addr,
    split_list,
    via_param,
)

#: pjsip starts a dialog's local CSeq at ``pj_rand() & 0x7FFF`` (sip_dialog.c)
FIRST_CSEQ_MAX = 0x7FFF
#: the worker reports its CSeq whenever it has grown by this much since the last report
CSEQ_STEP = 256
MAX_CSEQ = 2**31 - 1  # RFC 3261 §8.1.1.5
REASON = reason_header(500, "bridge worker failed")

T1, T2, TIMER_F = 0.5, 4.0, 32.0  # RFC 3261 §17.1.2.2 (Timer E, Timer F = 64·T1)


class DialogError(ValueError):
    """The messages do not describe a dialog a BYE can be built for (a tag is missing…)."""


@dataclass(frozen=True, slots=True)
class DialogState:
    """What a BYE for one confirmed dialog needs, as the worker saw it (picklable).

    ``local`` / ``remote`` are whole From/To header values with their tags; ``route_set``
    holds Route values in the order they are sent; ``source`` is where the INVITE came from.
    """

    call_id: str
    local: str
    remote: str
    remote_target: str
    route_set: tuple[str, ...] = ()
    transport: str = "udp"
    source: tuple[str, int] = ("", 0)


@dataclass(frozen=True, slots=True)
class Hop:
    """Where the BYE goes (RFC 3263 without DNS: an IP literal, else the name to resolve)."""

    host: str
    port: int
    transport: str


def tag_of(header_value: str) -> str:
    """The ``tag`` parameter of a From/To header value ('' if none)."""
    return parse_name_addr(header_value).param("tag") or ""


def uas_dialog(
    invite: SipRequest, local_to: str, *, transport: str, source: tuple[str, int]
) -> DialogState:
    """The dialog of an INVITE we answered 2xx: ``local_to`` is our 2xx's To (with our tag).

    Remote target = the INVITE's Contact, route set = its Record-Route in order (§12.1.1).
    """
    call_id = invite.get("call-id").strip()
    remote = invite.get("from").strip()
    contacts = invite.get_all("contact")
    if not call_id:
        raise DialogError("no Call-ID")
    if not tag_of(remote):
        raise DialogError("the INVITE's From has no tag (RFC 2543 dialog)")
    if not tag_of(local_to):
        raise DialogError("our 2xx's To has no tag")
    if not contacts:
        raise DialogError("the INVITE has no Contact (no remote target)")
    target = parse_name_addr(contacts[0]).uri
    if not target:
        raise DialogError("the INVITE's Contact has no URI")
    routes = tuple(invite.get_all("record-route"))
    return DialogState(call_id, local_to.strip(), remote, target, routes, transport, source)


def uac_dialog(ack: SipRequest) -> DialogState:
    """The dialog of a call we placed, from our ACK to its 2xx: an in-dialog request pjsip
    built from that dialog (Request-URI = remote target, Route = route set, §12.2.1.1)."""
    call_id, local, remote = (ack.get(h).strip() for h in ("call-id", "from", "to"))
    if not call_id or not tag_of(local) or not tag_of(remote):
        raise DialogError("the ACK lacks a Call-ID or a tag")
    routes = tuple(ack.get_all("route"))
    target, route_set = ack.uri, routes
    if routes and not _is_loose(routes[0]):  # sent to a strict router (§12.2.1.1)
        target, route_set = _uri_of(routes[-1]), (f"<{ack.uri}>", *routes[:-1])
    hop_uri = _uri_of(route_set[0]) if route_set else target
    secure = hop_uri.lower().startswith("sips:")
    transport = parse_host_port(hop_uri)[2].get("transport", "tls" if secure else "udp")
    return DialogState(call_id, local, remote, target, route_set, transport.lower())


def bye_cseq(reported: int) -> int:
    """A CSeq above anything the worker sent: it reports a CSeq before sending it whenever it
    has grown by :data:`CSEQ_STEP`, so every request since the last report stays below
    ``reported + CSEQ_STEP``; before any report, below pjsip's first CSeq range."""
    return min(MAX_CSEQ, max(reported, FIRST_CSEQ_MAX) + CSEQ_STEP)


def _uri_of(value: str) -> str:
    return parse_name_addr(value).uri


def _is_loose(route: str) -> bool:
    uri = _uri_of(route)
    params = uri.split(";")[1:]
    return any(p.strip().lower().split("=", 1)[0] == "lr" for p in params)


def request_target(d: DialogState) -> tuple[str, tuple[str, ...]]:
    """(Request-URI, Route values) of an in-dialog request (RFC 3261 §12.2.1.1)."""
    if not d.route_set or _is_loose(d.route_set[0]):
        return d.remote_target, d.route_set
    strict = _uri_of(d.route_set[0])
    uri = strict.split("?", 1)[0]  # no headers in a Request-URI (§19.1.1)
    return uri, (*d.route_set[1:], f"<{d.remote_target}>")


def parse_host_port(uri: str) -> tuple[str, int, dict[str, str]]:
    """Host, port (0 if absent) and lower-cased parameters of a sip/sips URI."""
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        raise DialogError(f"not a SIP URI: {uri[:80]!r}")
    rest = rest.split("?", 1)[0]
    hostpart, *params = rest.split(";")
    hostpart = hostpart.rpartition("@")[2]
    port = 0
    if hostpart.startswith("["):
        host, _, tail = hostpart[1:].partition("]")
        if tail.startswith(":"):
            port = int(tail[1:])
    else:
        host, _, port_text = hostpart.partition(":")
        if port_text:
            port = int(port_text)
    if not host or not 0 <= port <= 65535:
        raise DialogError(f"no host in {uri[:80]!r}")
    named = {}
    for p in params:
        key, _, value = p.partition("=")
        named[key.strip().lower()] = value.strip()
    return host, port, named


def next_hop(d: DialogState) -> Hop:
    """The first Route's URI if there is a route set, else the remote target (§8.1.2);
    port 5060 (5061 for sips) when the URI names none, ``maddr`` when it has one."""
    uri = _uri_of(d.route_set[0]) if d.route_set else d.remote_target
    host, port, params = parse_host_port(uri)
    secure = uri.lower().startswith("sips:")
    transport = params.get("transport", "tls" if secure else d.transport).lower()
    host = params.get("maddr") or host
    return Hop(host, port or (5061 if secure or transport == "tls" else 5060), transport)


def _via_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def bye_request(
    d: DialogState, *, cseq: int, via_host: str, via_port: int, branch: str,
    reason: str = REASON, max_forwards: int = 70,
) -> bytes:  # fmt: skip
    """The BYE's bytes (CRLF line ends, no body). ``branch`` must start with z9hG4bK."""
    if not branch.startswith("z9hG4bK"):
        raise ValueError("an RFC 3261 branch starts with z9hG4bK")
    if not 1 <= cseq <= MAX_CSEQ:
        raise ValueError(f"CSeq {cseq} out of range")
    uri, routes = request_target(d)
    lines = [
        f"BYE {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {_via_host(via_host)}:{via_port};rport;branch={branch}",
        f"Max-Forwards: {max_forwards}",
        *(f"Route: {r}" for r in routes),
        f"From: {d.local}",
        f"To: {d.remote}",
        f"Call-ID: {d.call_id}",
        f"CSeq: {cseq} BYE",
        f"Reason: {reason}",
        "Content-Length: 0",
    ]
    if any(ch in line for line in lines for ch in "\r\n\0"):
        raise DialogError("a header value holds a line break")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    branch: str
    call_id: str
    method: str


def parse_response(data: bytes) -> Response | None:
    """Status, top Via branch, Call-ID and CSeq method of a SIP response; ``None`` if the
    datagram is not one (a stray request, a keep-alive, garbage)."""
    text = data.decode("utf-8", "replace")
    head = text.split("\r\n\r\n", 1)[0].replace("\r\n", "\n")
    lines = head.split("\n")
    first = lines[0].split(None, 2)
    if len(first) < 2 or not first[0].upper().startswith("SIP/2.0") or not first[1].isdigit():
        return None
    status = int(first[1])
    headers = dict(reversed(parse_headers(lines[1:])))  # the first of each name wins
    vias = split_list(headers.get("via", ""))
    branch = via_param(vias[0], "branch") if vias[0] else ""
    call_id = headers.get("call-id", "")
    cseq = headers.get("cseq", "").split()
    method = cseq[-1].upper() if cseq else ""
    return Response(status, branch, call_id, method)


def retransmit_offsets(t1: float = T1, t2: float = T2, timer_f: float = TIMER_F) -> list[float]:
    """When a non-INVITE request is (re)sent over UDP, in seconds after the first send:
    Timer E doubles from T1 up to T2, until Timer F (§17.1.2.2)."""
    out, at, interval = [0.0], 0.0, t1
    while at + interval < timer_f:
        at += interval
        out.append(at)
        interval = min(2 * interval, t2)
    return out


__all__ = [
    "CSEQ_STEP", "FIRST_CSEQ_MAX", "REASON", "TIMER_F", "DialogError", "DialogState", "Hop",
    "Response", "bye_cseq", "bye_request", "next_hop", "parse_host_port", "parse_response",
    "request_target", "retransmit_offsets", "tag_of", "uac_dialog", "uas_dialog",
]  # fmt: skip
