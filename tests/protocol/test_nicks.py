"""Nicks for SIP callers: display name first, masked numbers, conflicts."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.protocol.nicks import (
    FALLBACK_NICK,
    MASK,
    MAX_NICK_CHARS,
    caller_nick,
    clean_display_name,
    country_code,
    format_number,
    is_phone_number,
    sip_user_part,
    unique_nick,
)


@pytest.mark.parametrize(
    ("number", "masked", "raw"),
    [
        ("+33612345612", "+33 6•• •• •• 12", "+33 612 34 56 12"),
        ("+33 6 12 34 56 12", "+33 6•• •• •• 12", "+33 612 34 56 12"),
        ("0033612345612", "+33 6•• •• •• 12", "+33 612 34 56 12"),
        ("0612345612", "06 •• •• •• 12", "06 12 34 56 12"),
        ("+4915112345678", "+49 1•• •• •• •• 78", "+49 151 12 34 56 78"),
        ("+14155552671", "+1 4• •• •• •• 71", "+1 41 55 55 26 71"),
        ("+351912345678", "+351 9•• •• •• 78", "+351 912 34 56 78"),
        ("1001", "••01", "1001"),
    ],
)
def test_format_number(number: str, masked: str, raw: str) -> None:
    assert format_number(number) == masked
    assert format_number(number, masked=False) == raw


def test_country_codes() -> None:
    assert country_code("14155552671") == "1"
    assert country_code("79161234567") == "7"
    assert country_code("33612345678") == "33"
    assert country_code("351912345678") == "351"
    assert country_code("") == ""


@pytest.mark.parametrize(
    ("display", "uri", "nick"),
    [
        ("Alice Martin", "sip:+33612345612@pbx", "Alice Martin"),
        ('"Alice  Martin"', "sip:x@pbx", "Alice Martin"),
        ("", "sip:+33612345612@pbx.example;user=phone", "+33 6•• •• •• 12"),
        ("+33 6 12 34 56 12", "sip:x@pbx", "+33 6•• •• •• 12"),  # number as display name
        ("", "<tel:+33612345612>", "+33 6•• •• •• 12"),
        ("", "sip:bob@example.org", "bob"),
        ("", "sip:anonymous@anonymous.invalid", FALLBACK_NICK),
        ("", "sips:%2B33612345612@pbx", "+33 6•• •• •• 12"),
        ("\u200bEve\u0000", "sip:x@y", "Eve"),  # invisible and control characters dropped
        ("", "", FALLBACK_NICK),
    ],
)
def test_caller_nick(display: str, uri: str, nick: str) -> None:
    assert caller_nick(display, uri) == nick


def test_raw_numbers_only_when_configured() -> None:
    uri = "sip:+33612345612@pbx"
    assert "612345612" not in caller_nick("", uri).replace(" ", "")
    assert caller_nick("", uri, show_raw_numbers=True) == "+33 612 34 56 12"


def test_unique_nick() -> None:
    assert unique_nick("Ann", []) == "Ann"
    assert unique_nick("Ann", ["ann"]) == "Ann (2)"
    assert unique_nick("Ann", ["Ann", "Ann (2)"]) == "Ann (3)"
    long = "x" * MAX_NICK_CHARS
    assert len(unique_nick(long, [long])) <= MAX_NICK_CHARS
    assert unique_nick("  ", []) == FALLBACK_NICK


def test_helpers() -> None:
    assert sip_user_part("<sip:alice@example.org;transport=tcp>") == "alice"
    assert sip_user_part("http://x") == ""
    assert is_phone_number("(555) 123-4567")
    assert not is_phone_number("Room 101")
    assert clean_display_name("  a\tb  ") == "a b"
    with pytest.raises(ValueError, match="not a telephone number"):
        format_number("abc")


@given(st.text(alphabet="0123456789", min_size=5, max_size=15))
def test_masking_never_shows_more_than_three_national_digits(digits: str) -> None:
    shown = format_number("+" + digits)
    code = country_code(digits)
    national_shown = shown[len(code) + 2 :]
    visible = [c for c in national_shown if c.isdigit()]
    assert len(visible) <= 3
    assert shown.count(MASK) + len(visible) == len(digits) - len(code)


@given(st.text(max_size=80), st.text(max_size=40))
def test_caller_nick_is_always_usable(display: str, user: str) -> None:
    nick = caller_nick(display, f"sip:{user}@example.org")
    assert nick and nick == nick.strip() and len(nick) <= MAX_NICK_CHARS
    assert not any(ord(c) < 32 for c in nick)


@given(st.lists(st.text(min_size=1, max_size=10), max_size=20), st.text(max_size=10))
def test_unique_nick_is_unique(taken: list[str], wanted: str) -> None:
    nick = unique_nick(wanted, taken)

    def fold(text: str) -> str:
        return unicodedata.normalize("NFKC", text).casefold()

    assert fold(nick) not in {fold(t) for t in taken}
