"""Pure header parsing: caller hints (RFC 6993 impp, XMPP-Contact, PAI) and STOX fields."""

from __future__ import annotations

import pytest

from bridge.sip.sipmsg import (
    SipParseError,
    authorizations,
    caller_info,
    message_info,
    parse_name_addr,
    parse_request,
    room_of,
    split_list,
    uri_host,
    uri_user,
    via_received,
)

INVITE = (
    "INVITE sip:Team%2DRoom@conf.example.org SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
    'f: "Alice \\"A\\" Smith" <sip:alice@example.org;transport=udp>;tag=1\r\n'
    "t: <sip:team-room@conf.example.org>\r\n"
    "i: abc@10.0.0.1\r\n"
    'P-Asserted-Identity: "Alice" <sip:alice@pbx.example.org>, <tel:+15551234>\r\n'
    "Call-Info: <http://example.org/alice.png>;purpose=icon,\r\n"
    " <xmpp:alice@example.org>;purpose=impp\r\n"
    "Call-Info: <xmpp:alice-work@example.com>;Purpose=IMPP\r\n"
    "XMPP-Contact: alice@example.org/phone;abc@10.0.0.1\r\n"
    "XMPP-Contact: <xmpp:alice@example.net>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 3\r\n\r\nv=0"
)


def test_caller_info_reads_every_hint() -> None:
    req = parse_request(INVITE)
    info = caller_info(req, trusted_peer=True)
    assert req.method == "INVITE"
    assert info.from_uri == "sip:alice@example.org"
    assert info.display_name == 'Alice "A" Smith'
    assert info.asserted_identity == "sip:alice@pbx.example.org"
    # from anyone but a trusted peer the header is dropped before anything reads it
    assert caller_info(req).asserted_identity == ""
    assert info.impp_uris == ("xmpp:alice@example.org", "xmpp:alice-work@example.com")
    assert info.xmpp_contacts == ("alice@example.org/phone", "alice@example.net")
    assert info.call_id == "abc@10.0.0.1"
    assert room_of(req.uri) == "team-room"
    assert req.body == "v=0"


def test_missing_hints_are_empty() -> None:
    req = parse_request("INVITE sip:r@d SIP/2.0\r\nFrom: <sip:bob@x>;tag=2\r\n\r\n")
    info = caller_info(req)
    assert (info.display_name, info.asserted_identity, info.impp_uris, info.xmpp_contacts) == (
        "",
        "",
        (),
        (),
    )


def test_hostile_hints_are_dropped() -> None:
    long_uri = "xmpp:" + "a" * 600 + "@x"
    req = parse_request(
        "INVITE sip:r@d SIP/2.0\r\nFrom: <sip:b@x>\r\n"
        f"Call-Info: <{long_uri}>;purpose=impp, <xmpp:ok@x>;purpose=info\r\n"
        "Call-Info: <xmpp:broken@x;purpose=impp\r\n"
        "P-Asserted-Identity: <http://evil>\r\n\r\n"
    )
    info = caller_info(req)
    assert info.impp_uris == ()
    assert info.asserted_identity == ""


def test_message_info_stox_fields() -> None:
    req = parse_request(
        "MESSAGE sip:lobby@conf.example.org SIP/2.0\r\n"
        'From: "Bob" <sip:bob@example.org>;tag=9\r\n'
        "Call-ID: thread-42\r\nSubject: Lunch\r\nContent-Language: de, en\r\n"
        "c: text/plain; charset=UTF-8\r\n\r\nHallo"
    )
    info = message_info(req)
    assert info.room == "lobby"
    assert (info.sender_uri, info.sender_display) == ("sip:bob@example.org", "Bob")
    assert (info.subject, info.call_id, info.language) == ("Lunch", "thread-42", "de")
    assert info.content_type == "text/plain"


@pytest.mark.parametrize(
    ("value", "display", "uri", "params"),
    [
        ("<sip:a@b>", "", "sip:a@b", ()),
        ("Bob <sip:b@c;lr>;tag=1", "Bob", "sip:b@c;lr", (("tag", "1"),)),
        ("sip:c@d;tag=2", "", "sip:c@d", (("tag", "2"),)),
        ('"x, y" <sip:e@f>', "x, y", "sip:e@f", ()),
    ],
)
def test_name_addr(value: str, display: str, uri: str, params: tuple[tuple[str, str], ...]) -> None:
    addr = parse_name_addr(value)
    assert (addr.display, addr.uri, addr.params) == (display, uri, params)


def test_split_list_respects_quotes_and_brackets() -> None:
    assert split_list('"a, b" <sip:x@y;p=1,2>, <sip:z@w>') == [
        '"a, b" <sip:x@y;p=1,2>',
        "<sip:z@w>",
    ]


def test_uri_parts() -> None:
    assert uri_user("sip:room@host:5060;transport=tcp") == "room"
    assert uri_user("sip:host") == ""
    assert uri_host("sips:u@Example.ORG:5061;x") == "example.org"
    assert uri_host("sip:u@[::1]:5060") == "[::1]"


def test_not_a_request() -> None:
    with pytest.raises(SipParseError):
        parse_request("SIP/2.0 200 OK\r\n\r\n")
    with pytest.raises(SipParseError):
        parse_request("garbage")


def test_via_received_is_the_packet_source_pjsip_wrote() -> None:
    req = parse_request(
        "MESSAGE sip:r@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4:5060;received=127.0.0.2;"
        "branch=z9;received=6.6.6.6\r\nVia: SIP/2.0/UDP 9.9.9.9;received=7.7.7.7\r\n"
        'Authorization: Digest username="a", realm="r"\r\n\r\n'
    )
    assert via_received(req) == "127.0.0.2"
    assert authorizations(req) == ['Digest username="a", realm="r"']
