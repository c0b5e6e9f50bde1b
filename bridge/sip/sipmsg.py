"""Pure parsing of the SIP request text that pjsua2 hands us (``SipRxData.wholeMsg``).

pjsua2 exposes only a few parsed fields (From, To, body); everything the bridge needs
beyond that — P-Asserted-Identity, ``Call-Info ...;purpose=impp`` (RFC 6993),
``XMPP-Contact`` (draft-veikkolainen), Subject, Content-Language — is read here from the
raw message. No I/O and no pjsua2 import, so every rule is unit-tested with plain strings.
Parsing is lenient (a hint header that does not parse is ignored, never fatal): pjsip has
already accepted the message's framing before we see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from bridge.core.admission import strip_uri_params
from bridge.core.caller_identity import CallerIdentity

# RFC 3261 §7.3.3 compact forms (plus RFC 3515/3891/4028 ones that may appear).
_COMPACT = {
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "c": "content-type",
    "s": "subject",
    "l": "content-length",
    "v": "via",
    "k": "supported",
    "e": "content-encoding",
    "o": "event",
    "r": "refer-to",
    "u": "allow-events",
    "x": "session-expires",
}

MAX_HINT_VALUES = 8  # never carry more than this many hint URIs per header into events
MAX_HINT_LENGTH = 512  # a hint longer than this is dropped, not truncated


@dataclass(frozen=True, slots=True)
class SipRequest:
    """Start line, headers (lower-case long names, in order) and body of one request."""

    method: str
    uri: str
    headers: tuple[tuple[str, str], ...]
    body: str = ""

    def get(self, name: str) -> str:
        """First value of a header ('' if absent); ``name`` in any case, long or compact."""
        key = _canonical(name)
        for hname, value in self.headers:
            if hname == key:
                return value
        return ""

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split (outside quotes and <>)."""
        key = _canonical(name)
        out: list[str] = []
        for hname, value in self.headers:
            if hname == key:
                out.extend(v for v in split_list(value) if v)
        return out


@dataclass(frozen=True, slots=True)
class NameAddr:
    """``"Display" <uri>;params`` split into its parts (params lower-cased keys)."""

    display: str
    uri: str
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name.lower():
                return value
        return None


class SipParseError(ValueError):
    """The text is not a SIP request we can read."""


def _canonical(name: str) -> str:
    low = name.strip().lower()
    return _COMPACT.get(low, low)


def parse_request(text: str) -> SipRequest:
    """Parse a SIP request (start line, folded headers, body)."""
    head, sep, body = text.partition("\r\n\r\n")
    if not sep:
        head, sep, body = text.partition("\n\n")
    lines = head.replace("\r\n", "\n").split("\n")
    start = lines[0].strip() if lines else ""
    parts = start.split()
    if len(parts) != 3 or not parts[2].upper().startswith("SIP/"):
        raise SipParseError(f"not a SIP request line: {start[:80]!r}")
    method, uri = parts[0].upper(), parts[1]
    return SipRequest(method, uri, parse_headers(lines[1:]), body)


def parse_headers(lines: list[str]) -> tuple[tuple[str, str], ...]:
    """Header lines of a request or response as (canonical lower-case name, value): folded
    continuations joined (RFC 3261 §7.3.1), compact forms expanded."""
    headers: list[tuple[str, str]] = []
    for line in lines:
        if not line:
            continue
        if line[0] in " \t" and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon:
            continue
        headers.append((_canonical(name), value.strip()))
    return tuple(headers)


def split_list(value: str) -> list[str]:
    """Split a header value on commas that are outside quotes and angle brackets."""
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    current: list[str] = []
    for ch in value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">" and depth:
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            out.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    out.append("".join(current).strip())
    return out


def _params(text: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for raw in text.split(";"):
        item = raw.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        out.append((key.strip().lower(), value.strip().strip('"')))
    return tuple(out)


def parse_name_addr(value: str) -> NameAddr:
    """Parse a name-addr or addr-spec with header parameters (From, PAI, Call-Info …)."""
    value = value.strip()
    display = ""
    if value.startswith('"'):
        end = 1
        while end < len(value):
            if value[end] == "\\":
                end += 2
                continue
            if value[end] == '"':
                break
            end += 1
        display = value[1:end].replace('\\"', '"').replace("\\\\", "\\")
        value = value[end + 1 :].strip()
    lt = value.find("<")
    if lt >= 0:
        gt = value.find(">", lt)
        if gt < 0:
            raise SipParseError(f"unterminated '<' in {value[:80]!r}")
        if not display:
            display = value[:lt].strip()
        return NameAddr(display, value[lt + 1 : gt].strip(), _params(value[gt + 1 :]))
    # addr-spec: parameters after the first ';' belong to the header, not the URI.
    uri, _, rest = value.partition(";")
    return NameAddr(display, uri.strip(), _params(rest))


def uri_user(uri: str) -> str:
    """User part of a sip:/sips: URI, percent-escapes kept ('' when there is none)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    if "@" not in rest:
        return ""
    return rest.split("@", 1)[0].split(";", 1)[0]


def uri_host(uri: str) -> str:
    """Host part of a sip:/sips: URI, lower-cased, without port and parameters."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    host = rest.split("@", 1)[1] if "@" in rest else rest
    host = host.split(";", 1)[0].split("?", 1)[0]
    if host.startswith("["):
        return host[: host.find("]") + 1].lower()
    return host.split(":", 1)[0].lower()


def _hint(uri: str) -> str | None:
    uri = uri.strip()
    if not uri or len(uri) > MAX_HINT_LENGTH or any(ch in uri for ch in "\r\n\x00 "):
        return None
    return uri


def impp_uris(request: SipRequest) -> tuple[str, ...]:
    """``Call-Info: <xmpp:jid>;purpose=impp`` values (RFC 6993): hints, never trusted."""
    out: list[str] = []
    for value in request.get_all("call-info"):
        try:
            addr = parse_name_addr(value)
        except SipParseError:
            continue
        purpose = addr.param("purpose")
        hint = _hint(addr.uri)
        if purpose is not None and purpose.lower() == "impp" and hint:
            out.append(hint)
    return tuple(out[:MAX_HINT_VALUES])


def xmpp_contacts(request: SipRequest) -> tuple[str, ...]:
    """``XMPP-Contact`` JIDs (draft-veikkolainen §6.3.2: ``jid;correlation``), hints only.

    Accepts the draft's bare token form and the common ``<xmpp:jid>`` form.
    """
    out: list[str] = []
    for raw in request.get_all("xmpp-contact"):
        value = raw.strip()
        if value.startswith(("<", '"')):
            try:
                jid = parse_name_addr(value).uri
            except SipParseError:
                continue
        else:
            jid = value.split(";", 1)[0]
        jid = jid.strip()
        if jid.lower().startswith("xmpp:"):
            jid = jid[5:]
        jid = jid.split("?", 1)[0]
        hint = _hint(jid)
        if hint:
            out.append(hint)
    return tuple(out[:MAX_HINT_VALUES])


def asserted_identity(request: SipRequest) -> str:
    """First SIP/SIPS/TEL URI of P-Asserted-Identity ('' if absent): a hint only."""
    for value in request.get_all("p-asserted-identity"):
        try:
            uri = parse_name_addr(value).uri
        except SipParseError:
            continue
        if uri.lower().startswith(("sip:", "sips:", "tel:")) and _hint(uri):
            return uri
    return ""


@dataclass(frozen=True, slots=True)
class CallerInfo:
    """Who is calling, as the INVITE says (everything except ``from_uri`` is a hint)."""

    from_uri: str
    display_name: str
    asserted_identity: str
    impp_uris: tuple[str, ...]
    xmpp_contacts: tuple[str, ...]
    call_id: str
    transport: str = "udp"  # of the INVITE's top Via; the worker replaces it with the real one
    srtp: bool = False  # the offered audio is RTP/SAVP (a hint: see LegConfirmed.srtp)
    source_host: str = ""  # IP address the INVITE came from (packet source, not a header)
    identity: CallerIdentity | None = None  # who is calling (bridge.core.caller_identity)


def via_transport(via: str) -> str:
    """Transport of the top Via (``SIP/2.0/TCP host`` → ``tcp``); ``udp`` if unreadable."""
    proto = via.strip().split(None, 1)[0] if via.strip() else ""
    parts = proto.split("/")
    return parts[2].lower() if len(parts) == 3 else "udp"


def via_source(via: str) -> str:
    """The address a request came from, read from the top Via as pjsip hands it over:
    pjsip adds ``received=<source>`` whenever the sent-by host is not the source address
    (RFC 3261 §18.2.1), so that parameter, else the sent-by host, is the source."""
    head, _, params = via.strip().split(",", 1)[0].partition(";")
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "received" and value:
            return value.strip().strip("[]")
    sent_by = head.strip().split(None, 1)[1] if len(head.split()) == 2 else ""
    if sent_by.startswith("["):
        return sent_by[1 : sent_by.find("]")]
    return sent_by.split(":", 1)[0]


def offers_srtp(sdp: str) -> bool:
    """True when the SDP's audio stream is RTP/SAVP or RTP/SAVPF (RFC 3711, 4568)."""
    return any(line.startswith("m=audio") and "/SAVP" in line.upper() for line in sdp.splitlines())


def via_received(request: SipRequest) -> str:
    """The ``received`` parameter of the top Via: pjsip writes the packet's source address
    there on every request it receives (sip_transport.c), before any module sees it, and
    prints it before any parameter the sender wrote. '' if absent."""
    vias = request.get_all("via")
    return via_param(vias[0], "received").strip("[]") if vias else ""


def via_param(via: str, name: str) -> str:
    """A parameter of one Via value (``branch``, ``received``…); '' if absent."""
    for param in via.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == name:
            return value.strip()
    return ""


def authorizations(request: SipRequest) -> list[str]:
    """Every ``Authorization`` header value (not split: a credential contains commas)."""
    return [value for name, value in request.headers if name == "authorization"][:4]


def caller_info(request: SipRequest, *, trusted_peer: bool = False) -> CallerInfo:
    """Extract the caller description the supervisor gets in ``LegJoined``.

    P-Asserted-Identity is read only when the request came from a trusted peer
    (``trusted_peer``); from anyone else it is dropped here, before anything reads it.
    """
    try:
        sender = parse_name_addr(request.get("from"))
    except SipParseError:
        sender = NameAddr("", "")
    return CallerInfo(
        from_uri=strip_uri_params(sender.uri),
        display_name=sender.display[:128],
        asserted_identity=asserted_identity(request) if trusted_peer else "",
        impp_uris=impp_uris(request),
        xmpp_contacts=xmpp_contacts(request),
        call_id=request.get("call-id"),
        transport=via_transport(request.get("via")),
        srtp=offers_srtp(request.body),
    )


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """The STOX-relevant parts of a SIP MESSAGE (draft-ietf-stox-im §5/§6 table)."""

    room: str
    sender_uri: str
    sender_display: str
    content_type: str
    subject: str
    call_id: str
    language: str


def message_info(request: SipRequest) -> MessageInfo:
    """Room (Request-URI user), sender, Subject, Call-ID and Content-Language of a MESSAGE."""
    try:
        sender = parse_name_addr(request.get("from"))
    except SipParseError:
        sender = NameAddr("", "")
    ctype = request.get("content-type").split(";", 1)[0].strip().lower() or "text/plain"
    return MessageInfo(
        room=room_of(request.uri),
        sender_uri=strip_uri_params(sender.uri),
        sender_display=sender.display,
        content_type=ctype,
        subject=request.get("subject"),
        call_id=request.get("call-id"),
        language=request.get("content-language").split(",", 1)[0].strip(),
    )


def room_of(request_uri: str) -> str:
    """Room name dialled: the Request-URI user part, unescaped and lower-cased."""
    return unquote(uri_user(request_uri)).lower()
