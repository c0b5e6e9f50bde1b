"""Malformed and hostile SIP datagrams (RFC 3261 torture-test style, cf. RFC 4475).

Each entry: a name, the datagram (``{port}`` = the bridge's port, ``{me}`` = the sender's,
``{branch}``/``{callid}`` fresh per send) and what a correct server does with it: ``None``
means "drop silently" is allowed (pjsip drops what it cannot frame), else the set of
acceptable status codes. Nothing may ever crash a worker or the supervisor.
"""

from __future__ import annotations

from dataclasses import dataclass

SDP_AUDIO = (
    "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
BOMB = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + ']>\n<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" '
    'entity="sip:x@y">&lol9;</conference-info>'
)


def request(
    method: str,
    uri: str = "sip:standup@127.0.0.1:{port}",
    *,
    headers: tuple[str, ...] = (),
    body: str = "",
    ctype: str = "",
    length: str | None = None,
    cseq: str = "",
    drop: tuple[str, ...] = (),
    version: str = "SIP/2.0",
) -> str:
    """A request with the usual headers, minus ``drop``, plus ``headers``."""
    lines = {
        "Via": "SIP/2.0/UDP 127.0.0.1:{me};rport;branch={branch}",
        "Max-Forwards": "70",
        "From": '"Bad Input" <sip:bad@127.0.0.1:{me}>;tag=bad1',
        "To": "<sip:standup@127.0.0.1>",
        "Call-ID": "{callid}",
        "CSeq": cseq or f"1 {method}",
        "Contact": "<sip:bad@127.0.0.1:{me}>",
    }
    out = [f"{method} {uri} {version}"]
    out += [f"{k}: {v}" for k, v in lines.items() if k not in drop]
    out += list(headers)
    if ctype:
        out.append(f"Content-Type: {ctype}")
    out.append(f"Content-Length: {len(body.encode()) if length is None else length}")
    return "\r\n".join(out) + "\r\n\r\n" + body


@dataclass(frozen=True)
class Case:
    name: str
    datagram: str | bytes
    expect: frozenset[int] | None  # None: silently dropped is fine (a 4xx too)


def _c(name: str, datagram: str | bytes, *codes: int) -> Case:
    return Case(name, datagram, frozenset(codes) if codes else None)


ERR = tuple(range(400, 700))  # any error response

CORPUS: tuple[Case, ...] = (
    # ---- framing and broken headers ----------------------------------------------------
    _c("empty datagram", b""),
    _c("keep-alive CRLF only", b"\r\n\r\n"),
    _c("binary garbage", bytes(range(256)) * 4),
    _c("nul bytes", b"\x00" * 1000),
    _c("request line only", "INVITE sip:standup@127.0.0.1 SIP/2.0\r\n\r\n"),
    _c("no SIP version", "OPTIONS sip:standup@127.0.0.1\r\nVia: x\r\n\r\n"),
    _c("SIP/3.0", request("OPTIONS", version="SIP/3.0")),
    _c("header line without colon", request("OPTIONS", headers=("This is not a header",))),
    _c("missing Call-ID", request("OPTIONS", drop=("Call-ID",))),
    _c("missing CSeq", request("OPTIONS", drop=("CSeq",))),
    _c("missing From", request("OPTIONS", drop=("From",))),
    _c("missing Via", request("OPTIONS", drop=("Via",))),
    _c("CSeq not a number", request("OPTIONS", cseq="x OPTIONS")),
    # pjsip leniency: OPTIONS is answered whatever the CSeq method says (harmless)
    _c("CSeq method mismatch", request("OPTIONS", cseq="1 INVITE"), 200, *ERR),
    _c("From without URI", request("OPTIONS", headers=(), drop=("From",)).replace(
        "Max-Forwards", "From: <<<>>>;tag=1\r\nMax-Forwards")),
    _c("Via without branch (RFC 2543)", request("OPTIONS").replace(";rport;branch={branch}", ""),
       200, *ERR),
    # on UDP pjsip frames by the datagram, not by Content-Length (RFC 3261 §18.3 says 400);
    # an out-of-dialog MESSAGE is never relayed anyway (bridge.xmpp.room.relay_from_sip)
    # pjsip 2.17's parser refuses integers beyond 2^32 - 1 and drops the datagram (2.15 read
    # the value and answered 200): either is safe, so silence or an error are both allowed
    _c("giant Content-Length", request("MESSAGE", body="hi", ctype="text/plain",
                                       length="4294967296")),
    _c("negative Content-Length", request("MESSAGE", body="hi", ctype="text/plain",
                                          length="-5")),
    _c("Content-Length larger than body", request("MESSAGE", body="hi", ctype="text/plain",
                                                  length="99999"), 200, *ERR),
    _c("Content-Length shorter than body", request("MESSAGE", body="hello world",
                                                   ctype="text/plain", length="3"), 200, *ERR),
    _c("100 Via headers", request("OPTIONS", headers=tuple(
        f"Via: SIP/2.0/UDP 10.0.0.{i}:5060;branch=z9hG4bK{i}" for i in range(100)))),
    _c("4 kB header value", request("OPTIONS", headers=("X-Huge: " + "a" * 4000,)), 200, *ERR),
    # a UAS answers OPTIONS with Max-Forwards 0 itself (RFC 3261 §11); 483 is for proxies
    _c("Max-Forwards 0", request("OPTIONS").replace("Max-Forwards: 70", "Max-Forwards: 0"),
       200, 483),
    _c("unsupported URI scheme", request("OPTIONS", uri="http://standup@127.0.0.1/")),
    _c("Require unknown extension",
       request("INVITE", headers=("Require: x-no-such-extension",), body=SDP_AUDIO,
               ctype="application/sdp"), 420),
    # ---- methods and events ------------------------------------------------------------
    _c("unknown method", request("FOOBAR"), 501),  # bridge.sip.unhandled
    _c("REGISTER", request("REGISTER", uri="sip:127.0.0.1:{port}"), 405),
    _c("SUBSCRIBE wrong Event", request("SUBSCRIBE", headers=("Event: presence",
                                                              "Expires: 60")), 489),
    _c("SUBSCRIBE no Event", request("SUBSCRIBE", headers=("Expires: 60",)), 489, 400),
    _c("SUBSCRIBE conference of an unknown room",
       request("SUBSCRIBE", uri="sip:nosuchroom@127.0.0.1:{port}",
               headers=("Event: conference", "Accept: application/conference-info+xml")),
       404, 403, 489),
    _c("NOTIFY out of dialog", request("NOTIFY", headers=("Event: conference",
                                                          "Subscription-State: active")), 481),
    _c("BYE out of dialog", request("BYE"), 481),
    _c("INFO out of dialog", request("INFO"), 481),
    _c("UPDATE with a To tag", request("UPDATE").replace(
        "To: <sip:standup@127.0.0.1>", "To: <sip:standup@127.0.0.1>;tag=gone"), 481),
    _c("CANCEL unknown transaction", request("CANCEL"), 481),
    _c("ACK out of dialog", request("ACK")),  # never answered
    _c("stray response", "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch={branch}\r\n"
       "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: {callid}\r\n"
       "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"),
    # ---- INVITE bodies -----------------------------------------------------------------
    _c("SDP without audio", request("INVITE", body=SDP_AUDIO.replace(
        "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000", "m=video 9 RTP/AVP 96\r\n"
        "a=rtpmap:96 H264/90000"), ctype="application/sdp"), 488, 400, 415),
    _c("SDP only unknown codec", request("INVITE", body=SDP_AUDIO.replace(
        "RTP/AVP 0\r\na=rtpmap:0 PCMU/8000", "RTP/AVP 99\r\na=rtpmap:99 opus/48000/2"),
        ctype="application/sdp"), 488, 400, 415),
    _c("SDP garbage", request("INVITE", body="v=0\r\nthis is not sdp\r\nm=audio x RTP/AVP 0\r\n",
                              ctype="application/sdp"), 400, 488, 415),
    _c("INVITE with a text body", request("INVITE", body="hello", ctype="text/plain"),
       415, 400, 488),
    _c("INVITE to a 1000-character room", request(
        "INVITE", uri="sip:" + "r" * 1000 + "@127.0.0.1:{port}", body=SDP_AUDIO,
        ctype="application/sdp"), 404, 400, 414),
    _c("INVITE to a room with %00", request(
        "INVITE", uri="sip:stand%00up@127.0.0.1:{port}", body=SDP_AUDIO,
        ctype="application/sdp"), 404, 400),
    # ---- MESSAGE bodies ----------------------------------------------------------------
    _c("MESSAGE entity bomb as XML", request("MESSAGE", body=BOMB,
                                            ctype="application/conference-info+xml"), 415),
    _c("MESSAGE html", request("MESSAGE", body="<b>x</b>", ctype="text/html"), 415),
    _c("MESSAGE without Content-Type", request("MESSAGE", body="hello"), 200, 415, 400),
    _c("MESSAGE to an unknown room", request("MESSAGE", uri="sip:nosuch@127.0.0.1:{port}",
                                             body="hi", ctype="text/plain"), 404),
    _c("MESSAGE 40 kB body", request("MESSAGE", body="x" * 40000, ctype="text/plain"),
       413, 200, 202, 400, 513),
    _c("MESSAGE invalid UTF-8", request("MESSAGE", body="", ctype="text/plain; charset=utf-8",
                                       length="4").encode() + b"\xff\xfe\xc3\x28", 200, 202,
       400, 415),
    _c("MESSAGE control characters", request("MESSAGE", body="a\x01b\x07c\x1bd\x7f",
                                            ctype="text/plain"), 200, 202, 400),
)
