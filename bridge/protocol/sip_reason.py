"""The SIP ``Reason`` header (RFC 3326) built from text someone else wrote.

A kick or ban reason comes from a chat moderator, any text at all: quotes, backslashes,
CR/LF (a header injection into our BYE), control characters, kilobytes. The text parameter is
a ``quoted-string`` (RFC 3261 §25.1): ``"`` and ``\\`` are escaped with a backslash, line
breaks and other control characters become a space, and the text is cut to ``max_chars``
characters (never inside an escape). Pure, no I/O.
"""

from __future__ import annotations

import unicodedata

MAX_REASON_CHARS = 120


def reason_text(text: str, max_chars: int = MAX_REASON_CHARS) -> str:
    """``text`` as one line of printable characters, at most ``max_chars`` of them."""
    cleaned = "".join(
        " " if ch.isspace() or unicodedata.category(ch)[0] == "C" else ch for ch in text
    )
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > max_chars:
        cleaned = cleaned[: max_chars - 1].rstrip() + "…"
    return cleaned


def quoted_string(text: str) -> str:
    """RFC 3261 ``quoted-string`` of ``text`` (already one line: see :func:`reason_text`)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def reason_header(cause: int, text: str, max_chars: int = MAX_REASON_CHARS) -> str:
    """The value of ``Reason: SIP;cause=…;text="…"`` for a hang-up with ``cause``."""
    if not 100 <= cause <= 699:
        raise ValueError(f"SIP cause must be a status code 100-699, not {cause}")
    return f"SIP;cause={cause};text={quoted_string(reason_text(text, max_chars))}"


__all__ = ["MAX_REASON_CHARS", "quoted_string", "reason_header", "reason_text"]
