"""bridge.protocol.stox both ways: SIP text → XML-safe chat text (or a clean refusal);
chat text → SIP MESSAGE parts within the byte limit that lose no text."""

from __future__ import annotations

import re

import _harness
import atheris

with atheris.instrument_imports():
    from bridge.core.events import SipMessageReceived
    from bridge.protocol.stox import ChatText, UnsupportedContent, sip_to_xmpp, xmpp_to_sip

ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
TYPES = ["text/plain", "text/html", "application/xhtml+xml", "", "text/plain;charset=utf-8",
         "application/im-iscomposing+xml", "image/png", "TEXT/HTML"]  # fmt: skip


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    body = fdp.ConsumeUnicodeNoSurrogates(1500)
    ctype = TYPES[fdp.ConsumeIntInRange(0, len(TYPES) - 1)]
    message = SipMessageReceived("room", "sip:a@b", body, ctype,
                                 fdp.ConsumeUnicodeNoSurrogates(40),
                                 fdp.ConsumeUnicodeNoSurrogates(40),
                                 fdp.ConsumeUnicodeNoSurrogates(20), "leg")  # fmt: skip
    try:
        chat = sip_to_xmpp(message)
    except UnsupportedContent:
        chat = None
    if chat is not None:
        for text in (chat.body, chat.subject, chat.thread, chat.lang):
            assert not ILLEGAL.search(text), repr(text)
    limit = fdp.ConsumeIntInRange(64, 1300)
    parts = xmpp_to_sip(ChatText(body=body or "x"), leg_id="leg",
                        sender_nick=fdp.ConsumeUnicodeNoSurrogates(30) or "n",
                        max_bytes=limit)  # fmt: skip
    assert parts
    for part in parts:
        assert len(part.body.encode()) <= max(limit, 200), (limit, len(part.body.encode()))


if __name__ == "__main__":
    _harness.run(test_one_input)
