"""Pure parts of issue 19: the SIP Reason header from chat text, look-alike nicks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.protocol.nicks import skeleton, unique_nick
from bridge.protocol.sip_reason import reason_header


def test_reason_header_escapes_and_cuts() -> None:
    header = reason_header(200, 'say "hi" \\ \r\nX-Evil: 1' + "z" * 500)
    assert header.startswith('SIP;cause=200;text="say \\"hi\\" \\\\ X-Evil: 1')
    assert "\r" not in header and "\n" not in header and len(header) < 160


@given(st.text(max_size=300))
def test_reason_header_is_always_one_quoted_string(text: str) -> None:
    header = reason_header(403, text)
    quoted = header.split(";text=", 1)[1]
    assert quoted[0] == quoted[-1] == '"'
    inner = quoted[1:-1]
    i = 0
    while i < len(inner):  # every quote and backslash inside is escaped
        if inner[i] == "\\":
            assert inner[i + 1] in '"\\'
            i += 2
            continue
        assert inner[i] != '"' and (inner[i] == " " or inner[i].isprintable())
        i += 1


def test_confusable_nicks_share_a_skeleton() -> None:
    assert skeleton("bridgе") == skeleton("bridge")  # Cyrillic е
    assert skeleton("АLICE") == skeleton("alice")
    assert skeleton("b0b") == skeleton("BOB")
    assert skeleton("Zoë") != skeleton("Zoe")
    assert unique_nick("bridgе", {"bridge"}) == "bridgе (2)"
