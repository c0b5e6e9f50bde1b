"""bridge.sip.sipmsg: any text → a request or SipParseError; the extractors never raise."""

from __future__ import annotations

import contextlib

import _harness
import atheris

with atheris.instrument_imports():
    from bridge.sip.sipmsg import (
        SipParseError,
        caller_info,
        message_info,
        parse_name_addr,
        parse_request,
    )

HEAD = "INVITE sip:room@host SIP/2.0\r\n"


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    with_head = fdp.ConsumeBool()  # decide first: the text consumes the rest
    text = fdp.ConsumeUnicodeNoSurrogates(2048)
    if with_head:
        text = HEAD + text
    try:
        request = parse_request(text)
    except SipParseError:
        return
    info = caller_info(request)
    assert len(info.display_name) <= 128
    message_info(request)
    for _, value in request.headers:
        with contextlib.suppress(SipParseError):
            parse_name_addr(value)


if __name__ == "__main__":
    _harness.run(test_one_input)
