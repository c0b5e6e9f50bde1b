"""bridge.protocol.nicks: any display name and From URI → a usable, XML-safe nick that never
shows more of a phone number than the masking allows; unique_nick is unique."""

from __future__ import annotations

import re

import _harness
import atheris

with atheris.instrument_imports():
    from bridge.protocol.nicks import caller_nick, format_number, unique_nick

ILLEGAL = re.compile("[\x00-\x1f\x7f\ufffe\uffff]")


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    display = fdp.ConsumeUnicodeNoSurrogates(100)
    user = fdp.ConsumeUnicodeNoSurrogates(40)
    nick = caller_nick(display, f"sip:{user}@pbx.example")
    assert nick.strip() and not ILLEGAL.search(nick), repr(nick)
    digits = "".join(ch for ch in user if ch.isascii() and ch.isdigit())
    if len(digits) >= 6 and not display.strip():
        assert digits not in nick.replace(" ", ""), (nick, digits)
    format_number("+" + digits if digits else "+1")
    taken = [fdp.ConsumeUnicodeNoSurrogates(12) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    fresh = unique_nick(nick, taken)
    assert fresh.casefold() not in {t.casefold() for t in taken}


if __name__ == "__main__":
    _harness.run(test_one_input)
