"""draft-ietf-stox-im mapping (Tables 1 and 2, §5 content types)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.events import SipMessageReceived
from bridge.protocol.stox import (
    ChatText,
    UnsupportedContent,
    clean_language,
    html_to_text,
    sip_to_xmpp,
    split_text,
    thread_for_call_id,
    utf8_len,
    xmpp_to_sip,
)


def sip(body: str, **fields: str) -> SipMessageReceived:
    return SipMessageReceived(room="r", sender_uri="sip:romeo@example.net", body=body, **fields)


def test_table2_sip_to_xmpp() -> None:
    chat = sip_to_xmpp(
        sip(
            "Neither, fair saint, if either thee dislike.",
            subject="Re: balcony",
            call_id="M4spr4vdu@example.net",
            language="en-GB",
        )
    )
    assert chat == ChatText(
        body="Neither, fair saint, if either thee dislike.",
        subject="Re: balcony",
        thread="M4spr4vdu",  # Call-ID → thread, host part (often an IP) dropped
        lang="en-GB",
    )


def test_table1_xmpp_to_sip() -> None:
    chat = ChatText(
        "Art thou not Romeo, and a Montague?", subject="Q", thread="Hr0zny9l3", lang="en"
    )
    [message] = xmpp_to_sip(chat, leg_id="leg", sender_nick="Juliet", max_bytes=1200)
    assert message.body == "Juliet: Art thou not Romeo, and a Montague?"
    assert (message.subject, message.thread, message.language) == ("Q", "Hr0zny9l3", "en")
    assert message.content_type.startswith("text/plain")
    assert message.sender_display == "Juliet" and message.leg_id == "leg"


def test_content_types() -> None:
    html = sip(
        "<p>Hi <i>there</i> &amp; <a href='https://x.org'>link</a></p><script>x()</script>",
        content_type="text/html; charset=UTF-8",
    )
    assert sip_to_xmpp(html) == ChatText("Hi there & link <https://x.org>")
    typing = sip("<isComposing/>", content_type="application/im-iscomposing+xml")
    assert sip_to_xmpp(typing) is None
    assert sip_to_xmpp(sip("   \r\n ")) is None
    with pytest.raises(UnsupportedContent) as error:
        sip_to_xmpp(sip("GIF89a", content_type="image/gif"))
    assert error.value.content_type == "image/gif"


def test_html_blocks_and_lists() -> None:
    assert html_to_text("<ul><li>one</li><li>two</li></ul>") == "• one\n• two"
    assert html_to_text("a<br>b") == "a\nb"


def test_language_and_thread() -> None:
    assert clean_language("fr, en;q=0.5") == "fr"
    assert clean_language("not a tag!") == ""
    assert thread_for_call_id("abc@192.0.2.1") == "abc"


def test_me_action_and_splitting() -> None:
    [action] = xmpp_to_sip(ChatText("/me waves"), leg_id="l", sender_nick="Ann", max_bytes=100)
    assert action.body == "* Ann waves"
    parts = xmpp_to_sip(
        ChatText("é" * 300, subject="S"), leg_id="l", sender_nick="Ann", max_bytes=100
    )
    assert len(parts) > 1
    assert all(utf8_len(p.body) <= 100 for p in parts)
    assert parts[0].subject == "S" and all(p.subject == "" for p in parts[1:])
    assert "".join(p.body.split(": ", 1)[1] for p in parts) == "é" * 300


@given(st.text(min_size=1, max_size=500), st.integers(min_value=4, max_value=300))
def test_split_text_loses_nothing_but_spaces(text: str, max_bytes: int) -> None:
    pieces = split_text(text, max_bytes)
    assert all(utf8_len(p) <= max_bytes for p in pieces)
    squeeze = "".join(text.split())
    assert "".join("".join(p.split()) for p in pieces) == squeeze


@given(st.text(max_size=300), st.sampled_from(["text/plain", "text/html"]))
def test_sip_to_xmpp_never_crashes_on_text(body: str, content_type: str) -> None:
    chat = sip_to_xmpp(sip(body, content_type=content_type))
    assert chat is None or chat.body.strip() == chat.body


def test_a_correction_is_marked_for_the_phone() -> None:
    """XEP-0308: a phone cannot replace a line it shows; the new one says it corrects."""
    fixed = ChatText("meet at 11", correction=True)
    [message] = xmpp_to_sip(fixed, leg_id="l", sender_nick="Ann", max_bytes=200)
    assert message.body == "Ann (correction): meet at 11"
    [action] = xmpp_to_sip(ChatText("/me waves", correction=True), leg_id="l",
                           sender_nick="Ann", max_bytes=200)  # fmt: skip
    assert action.body == "* Ann waves (correction)"
    parts = xmpp_to_sip(ChatText("x" * 300, correction=True), leg_id="l", sender_nick="Ann",
                        max_bytes=120)  # fmt: skip
    assert all(p.body.startswith("Ann (correction) (") for p in parts) and len(parts) > 1
