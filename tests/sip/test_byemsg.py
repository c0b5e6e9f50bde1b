"""The BYE for a dead worker's dialog (bridge.sip.byemsg), checked against RFC 3261 rules."""

from __future__ import annotations

import pytest

from bridge.sip import byemsg
from bridge.sip.byemsg import DialogError, DialogState
from bridge.sip.sipmsg import parse_request

INVITE = (
    "INVITE sip:room@10.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK-1\r\n"
    "Record-Route: <sip:p1.example.net;lr>, <sip:p2.example.net;lr>\r\n"
    "Record-Route: <sip:p3.example.net:5080;lr;transport=udp>\r\n"
    'From: "Ann" <sip:ann@example.org>;tag=ann-tag\r\n'
    "To: <sip:room@bridge.example>\r\n"
    "Call-ID: abc@192.0.2.7\r\n"
    "CSeq: 7 INVITE\r\n"
    "Contact: <sip:ann@192.0.2.7:5070;transport=udp>;expires=60\r\n"
    "Content-Length: 0\r\n\r\n"
)
OUR_TO = "<sip:room@bridge.example>;tag=our-tag"


def dialog(**changes: object) -> DialogState:
    d = byemsg.uas_dialog(
        parse_request(INVITE), OUR_TO, transport="udp", source=("192.0.2.7", 5070)
    )
    return DialogState(**{**{f: getattr(d, f) for f in d.__slots__}, **changes})  # type: ignore[arg-type]


def bye(d: DialogState, cseq: int = 40000) -> list[str]:
    raw = byemsg.bye_request(d, cseq=cseq, via_host="198.51.100.2", via_port=40001,
                             branch="z9hG4bK-orphan-1")  # fmt: skip
    assert raw.endswith(b"\r\n\r\n")
    return raw.decode().split("\r\n")[:-2]


def header(lines: list[str], name: str) -> list[str]:
    return [ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.split(":", 1)[0] == name]


def test_the_dialog_of_an_answered_invite() -> None:
    d = dialog()
    assert d.call_id == "abc@192.0.2.7"
    assert d.local == OUR_TO
    assert d.remote == '"Ann" <sip:ann@example.org>;tag=ann-tag'
    assert d.remote_target == "sip:ann@192.0.2.7:5070;transport=udp"
    assert d.route_set == (
        "<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>",
        "<sip:p3.example.net:5080;lr;transport=udp>",
    )  # fmt: skip


def test_a_bye_follows_rfc_3261_section_12_2_1_1() -> None:
    lines = bye(dialog(route_set=()))
    assert lines[0] == "BYE sip:ann@192.0.2.7:5070;transport=udp SIP/2.0"  # remote target
    assert header(lines, "From") == [OUR_TO]  # our side, our tag
    assert header(lines, "To") == ['"Ann" <sip:ann@example.org>;tag=ann-tag']
    assert header(lines, "Call-ID") == ["abc@192.0.2.7"]
    assert header(lines, "CSeq") == ["40000 BYE"]
    assert header(lines, "Max-Forwards") == ["70"]
    assert header(lines, "Content-Length") == ["0"]
    assert header(lines, "Route") == []
    assert header(lines, "Via") == [
        "SIP/2.0/UDP 198.51.100.2:40001;rport;branch=z9hG4bK-orphan-1"
    ]
    assert header(lines, "Reason") == ['SIP;cause=500;text="bridge worker failed"']  # RFC 3326


def test_loose_routes_go_in_route_headers_in_order() -> None:
    lines = bye(dialog())
    assert lines[0].startswith("BYE sip:ann@192.0.2.7:5070")
    assert header(lines, "Route") == [
        "<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>",
        "<sip:p3.example.net:5080;lr;transport=udp>",
    ]  # fmt: skip
    assert byemsg.next_hop(dialog()) == byemsg.Hop("p1.example.net", 5060, "udp")


def test_a_strict_router_gets_the_request_uri_and_the_target_goes_last() -> None:
    d = dialog(route_set=("<sip:strict.example.net:5090>", "<sip:p2.example.net;lr>"))
    lines = bye(d)
    assert lines[0] == "BYE sip:strict.example.net:5090 SIP/2.0"
    assert header(lines, "Route") == [
        "<sip:p2.example.net;lr>", "<sip:ann@192.0.2.7:5070;transport=udp>",
    ]  # fmt: skip


def test_the_next_hop_without_routes_is_the_remote_target() -> None:
    assert byemsg.next_hop(dialog(route_set=())) == byemsg.Hop("192.0.2.7", 5070, "udp")
    ipv6 = dialog(route_set=(), remote_target="sip:ann@[2001:db8::7]")
    assert byemsg.next_hop(ipv6) == byemsg.Hop("2001:db8::7", 5060, "udp")
    tcp = dialog(route_set=(), remote_target="sip:ann@192.0.2.7;transport=TCP")
    assert byemsg.next_hop(tcp).transport == "tcp"
    sips = dialog(route_set=(), remote_target="sips:ann@phone.example")
    assert byemsg.next_hop(sips) == byemsg.Hop("phone.example", 5061, "tls")


def test_the_cseq_is_above_anything_the_dead_worker_sent() -> None:
    # nothing reported: pjsip's first local CSeq is at most 0x7FFF
    assert byemsg.bye_cseq(0) > byemsg.FIRST_CSEQ_MAX
    # reported 40000 before sending it; up to 40000 + STEP - 1 may have gone unreported
    assert byemsg.bye_cseq(40000) == 40000 + byemsg.CSEQ_STEP
    assert byemsg.bye_cseq(2**31 - 2) == 2**31 - 1  # never beyond RFC 3261's limit


def test_a_dialog_without_tags_or_target_is_refused() -> None:
    invite = parse_request(INVITE)
    with pytest.raises(DialogError, match="our 2xx"):
        byemsg.uas_dialog(invite, "<sip:room@bridge.example>", transport="udp", source=("", 0))
    no_tag = parse_request(INVITE.replace(";tag=ann-tag", ""))
    with pytest.raises(DialogError, match="From has no tag"):
        byemsg.uas_dialog(no_tag, OUR_TO, transport="udp", source=("", 0))
    no_contact = parse_request(INVITE.replace("Contact:", "X-Contact:"))
    with pytest.raises(DialogError, match="no Contact"):
        byemsg.uas_dialog(no_contact, OUR_TO, transport="udp", source=("", 0))


def test_a_header_value_with_a_line_break_is_never_sent() -> None:
    with pytest.raises(DialogError):
        bye(dialog(remote="<sip:x@y>;tag=a\r\nX-Injected: 1"))
    with pytest.raises(ValueError, match="z9hG4bK"):
        byemsg.bye_request(dialog(), cseq=1, via_host="h", via_port=1, branch="nope")


def test_responses_are_matched_by_branch() -> None:
    raw = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.2:40001;rport=40001;branch=z9hG4bK-o-1"
        b";received=198.51.100.2\r\nCall-ID: abc\r\nCSeq: 40000 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    assert byemsg.parse_response(raw) == byemsg.Response(200, "z9hG4bK-o-1", "abc", "BYE")
    assert byemsg.parse_response(b"BYE sip:x SIP/2.0\r\n\r\n") is None
    assert byemsg.parse_response(b"\r\n\r\n") is None


def test_retransmissions_follow_timer_e_until_timer_f() -> None:
    assert byemsg.retransmit_offsets() == [
        0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5,
    ]  # fmt: skip


ACK = (
    "ACK sip:bob@192.0.2.9:5062;transport=udp SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 198.51.100.2:5060;rport;branch=z9hG4bK-ack\r\n"
    "Route: <sip:edge.example.net;lr>\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:conference@bridge.example>;tag=our-tag\r\n"
    "To: <sip:bob@example.org>;tag=bob-tag\r\n"
    "Call-ID: out-1@bridge\r\n"
    "CSeq: 4242 ACK\r\n"
    "Content-Length: 0\r\n\r\n"
)


def test_the_dialog_of_a_call_we_placed_comes_from_our_ack() -> None:
    d = byemsg.uac_dialog(parse_request(ACK))
    assert (d.call_id, d.local, d.remote) == (
        "out-1@bridge", "<sip:conference@bridge.example>;tag=our-tag",
        "<sip:bob@example.org>;tag=bob-tag",
    )  # fmt: skip
    assert d.remote_target == "sip:bob@192.0.2.9:5062;transport=udp"
    assert d.route_set == ("<sip:edge.example.net;lr>",)
    lines = bye(d)
    assert lines[0] == "BYE sip:bob@192.0.2.9:5062;transport=udp SIP/2.0"
    assert header(lines, "Route") == ["<sip:edge.example.net;lr>"]
    assert header(lines, "From") == ["<sip:conference@bridge.example>;tag=our-tag"]
    # an ACK sent to a strict router: the router is the Request-URI, the target last
    strict = ACK.replace("ACK sip:bob@192.0.2.9:5062;transport=udp", "ACK sip:strict.example")
    strict = strict.replace("Route: <sip:edge.example.net;lr>",
                            "Route: <sip:bob@192.0.2.9:5062;transport=udp>")  # fmt: skip
    s = byemsg.uac_dialog(parse_request(strict))
    assert s.remote_target == "sip:bob@192.0.2.9:5062;transport=udp"
    assert s.route_set == ("<sip:strict.example>",)
    assert bye(s)[0] == "BYE sip:strict.example SIP/2.0"
