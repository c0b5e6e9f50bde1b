"""Property tests over the pure parsers that had none yet (the SIP text parser, DTMF keys,
room-config planning, the unhandled-request verdict) and the XML-safety of everything the
SIP side hands to the XMPP side. Existing property suites (commands, policy, conference-info,
nicks, STOX splitting) live with their modules; this file adds the hostile-input angle."""

from __future__ import annotations

import contextlib
import re
from xml.etree.ElementTree import Element, fromstring, tostring

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.events import SipMessageReceived
from bridge.core.policy import DTMF_KEYS, parse_dtmf
from bridge.protocol.nicks import caller_nick
from bridge.protocol.stox import UnsupportedContent, sip_to_xmpp, xml_safe
from bridge.sip.sipmsg import (
    SipParseError,
    caller_info,
    message_info,
    parse_name_addr,
    parse_request,
    room_of,
    split_list,
)
from bridge.sip.unhandled import verdict
from bridge.xmpp.forms import (
    AUDIO_VIDEO_URI,
    MEMBERS_BY_DEFAULT,
    MODERATED,
    ROOM_DESCRIPTION,
    Advertised,
    plan_room_config,
)

XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
header_name = st.sampled_from(["From", "f", "To", "Call-ID", "i", "Subject", "s", "Call-Info",
                               "XMPP-Contact", "P-Asserted-Identity", "Content-Type", "c",
                               "Content-Language", "X-Junk", ""])  # fmt: skip
header_line = st.tuples(header_name, st.text(max_size=80)).map(lambda t: f"{t[0]}:{t[1]}")
raw_request = st.builds(
    lambda method, uri, lines, body, sep: (
        f"{method} {uri} SIP/2.0{sep}" + sep.join(lines) + sep + sep + body
    ),
    st.sampled_from(["INVITE", "MESSAGE", "invite", "X", ""]),
    st.text(max_size=60),
    st.lists(header_line, max_size=12),
    st.text(max_size=200),
    st.sampled_from(["\r\n", "\n"]),
)


@given(st.one_of(raw_request, st.text(max_size=400)))
@settings(max_examples=400)
def test_sip_parser_only_raises_its_own_error_and_extractors_never_raise(text: str) -> None:
    try:
        request = parse_request(text)
    except SipParseError:
        return
    info = caller_info(request)
    assert len(info.display_name) <= 128
    msg = message_info(request)
    assert msg.content_type == msg.content_type.lower()
    assert room_of(request.uri) == room_of(request.uri).lower()
    for name, _ in request.headers:
        request.get_all(name)


@given(st.text(max_size=200))
def test_name_addr_and_list_splitting_never_crash(value: str) -> None:
    with contextlib.suppress(SipParseError):
        parse_name_addr(value)
    parts = split_list(value)
    assert sum(len(p) for p in parts) <= len(value)


@given(st.lists(st.sampled_from(list("0123456789*#ABCD")), max_size=40))
def test_dtmf_buffer_stays_tiny_and_commands_are_known(digits: list[str]) -> None:
    buffer = ""
    for digit in digits:
        buffer, command = parse_dtmf(buffer, digit)
        assert buffer in ("", "*")
        assert command is None or command in DTMF_KEYS.values()


@given(st.text(max_size=300), st.text(max_size=60), st.text(max_size=80),
       st.sampled_from(["text/plain", "text/html", "", "TEXT/PLAIN; charset=utf-8",
                        "application/im-iscomposing+xml", "image/png"]))  # fmt: skip
@settings(max_examples=400)
def test_everything_sent_to_xmpp_is_xml_safe(
    body: str, subject: str, call_id: str, ctype: str
) -> None:
    message = SipMessageReceived("room", "sip:a@b", body, ctype, subject, call_id, leg_id="l1")
    try:
        chat = sip_to_xmpp(message)
    except UnsupportedContent:
        return
    if chat is None:
        return
    for text in (chat.body, chat.subject, chat.thread, chat.lang):
        assert not XML_ILLEGAL.search(text)
        el = Element("body")
        el.text = text
        fromstring(tostring(el))  # serialisable and parseable again


@given(st.text(max_size=200))
def test_xml_safe_only_removes(text: str) -> None:
    safe = xml_safe(text)
    assert not XML_ILLEGAL.search(safe)
    assert len(safe) <= len(text)
    assert xml_safe(safe) == safe


@given(st.text(max_size=80), st.text(max_size=80))
def test_caller_nick_is_xml_safe_and_bounded(display: str, user: str) -> None:
    nick = caller_nick(display, f"sip:{user}@pbx")
    assert nick and not XML_ILLEGAL.search(nick) and "\n" not in nick


@given(st.dictionaries(st.sampled_from([AUDIO_VIDEO_URI, ROOM_DESCRIPTION, "muc#roomconfig_x",
                                        MODERATED, MEMBERS_BY_DEFAULT]),
                       st.text(max_size=120), max_size=5),
       st.sampled_from(["sip:room@example.org", ""]), st.booleans())  # fmt: skip
def test_room_config_plan_is_idempotent(
    values: dict[str, str], uri: str, multiline: bool
) -> None:
    plan = plan_room_config(values, uri, multiline_description=multiline)
    applied = {**values, **plan.changes}
    again = plan_room_config(applied, uri, multiline_description=multiline)
    assert again.changes == {}
    if not uri:
        assert plan.advertised is Advertised.NONE


@given(st.binary(max_size=20), st.booleans())
def test_unhandled_verdict_is_total(method: bytes, to_tag: bool) -> None:
    answer = verdict(method, to_tag)
    if method == b"ACK":
        assert answer is None
    else:
        assert answer is not None and answer[0] in (405, 481, 501)
