"""Readable, privacy-preserving MUC nicks for SIP callers, and nick-conflict resolution.

A caller's nick comes from the SIP display name when there is one; otherwise from the SIP
identity. Telephone numbers are masked (``+33 6•• •• •• 12``) unless the operator opts in to
raw numbers: a room is often more public than a phone call, and DESIGN §4 asks for privacy.
Pure functions, no I/O.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Collection
from urllib.parse import unquote

from confusable_homoglyphs import confusables as _confusables

MASK = "•"  # U+2022 BULLET
MAX_NICK_CHARS = 40
FALLBACK_NICK = "Caller"

# ITU-T E.164 country calling codes: which lengths exist per leading digit(s). Zones 1 and 7
# use one digit; these two-digit codes are assigned; every other code has three digits.
_TWO_DIGIT_CODES = frozenset(
    {
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45",
        "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61",
        "62", "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94",
        "95", "98",
    }
)  # fmt: skip

# A display name or user part "looks like a phone number": digits with the usual separators.
_PHONE_RE = re.compile(r"^\+?[\d\s().\-/]+$")
_MIN_PHONE_DIGITS = 3
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


def country_code(international_digits: str) -> str:
    """The E.164 country code at the start of ``digits`` (the part after '+')."""
    if not international_digits:
        return ""
    if international_digits[0] in "17":
        return international_digits[0]
    if international_digits[:2] in _TWO_DIGIT_CODES:
        return international_digits[:2]
    return international_digits[:3]


def _group_pairs(digits: str) -> list[str]:
    """Pairs from the right; an odd leading digit joins the first pair (``612 34 56 12``)."""
    groups = [digits[max(0, end - 2) : end] for end in range(len(digits), 0, -2)][::-1]
    if len(groups) > 1 and len(groups[0]) == 1:
        groups[:2] = [groups[0] + groups[1]]
    return groups


def _mask_groups(groups: list[str], keep_head: int, keep_tail: int) -> str:
    total = sum(len(g) for g in groups)
    out: list[str] = []
    index = 0
    for group in groups:
        chars = []
        for digit in group:
            visible = index < keep_head or index >= total - keep_tail
            chars.append(digit if visible else MASK)
            index += 1
        out.append("".join(chars))
    return " ".join(out)


def is_phone_number(text: str) -> bool:
    """True for things like ``+33 6 12 34 56 12``, ``(555) 123-4567``, ``1001``."""
    text = text.strip()
    digits = sum(ch.isdigit() for ch in text)
    return bool(_PHONE_RE.match(text)) and digits >= _MIN_PHONE_DIGITS


def format_number(number: str, *, masked: bool = True) -> str:
    """Group a telephone number for reading, masking all but a few digits unless told not to.

    International numbers keep the country code, the first national digit and the last two
    digits: ``+33612345612`` → ``+33 6•• •• •• 12``. National numbers keep a leading trunk
    ``0X`` and the last two digits. Short numbers (extensions) keep their last two digits.
    """
    stripped = number.strip()
    digits = "".join(ch for ch in stripped if ch.isdigit())
    if not digits:
        raise ValueError(f"not a telephone number: {number!r}")
    international = stripped.startswith("+") or stripped.startswith("00")
    if stripped.startswith("00"):
        digits = digits[2:]
    if international and len(digits) > 4:
        code = country_code(digits)
        national = digits[len(code) :]
        keep_head = 1
        prefix = f"+{code} "
    else:
        national = digits
        prefix = "+" if international else ""
        keep_head = 2 if digits.startswith("0") and len(digits) > 6 else 0
    if len(national) <= 4:
        keep_head = 0
        groups = [national]
    else:
        groups = _group_pairs(national)
    if not masked:
        return prefix + " ".join(groups)
    keep_tail = min(2, max(0, len(national) - 1 - keep_head))
    return prefix + _mask_groups(groups, keep_head, keep_tail)


def clean_display_name(name: str) -> str:
    """NFKC, no control/format/private-use characters, single spaces, quotes off, bounded."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(" " if ch.isspace() else ch for ch in text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _DROP_CATEGORIES)
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text[:MAX_NICK_CHARS].rstrip()


def sip_user_part(uri: str) -> str:
    """The user part of ``sip:user@host``, ``sips:…`` or ``tel:…`` (unescaped), else ''."""
    text = uri.strip()
    if text.startswith("<") and ">" in text:
        text = text[1 : text.index(">")]
    scheme, sep, rest = text.partition(":")
    if not sep or scheme.lower() not in {"sip", "sips", "tel"}:
        return ""
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    if scheme.lower() == "tel":
        return unquote(rest)
    user, at, _host = rest.rpartition("@")
    return unquote(user.split(":", 1)[0]) if at else ""


_ANONYMOUS_USERS = frozenset({"anonymous", "unknown", "restricted", "unavailable", "private"})


def caller_nick(display_name: str, from_uri: str, *, show_raw_numbers: bool = False) -> str:
    """The nick a caller gets in the room (before conflict resolution).

    Display name first; if that is itself a number (many PBXs put the number there) it is
    masked like one. Then the SIP user part: a number is masked, a name is used as is.
    Anonymous callers become ``Caller``.
    """
    return _nick_from(display_name, from_uri, show_raw_numbers)[:MAX_NICK_CHARS].rstrip()


def _nick_from(display_name: str, from_uri: str, show_raw_numbers: bool) -> str:
    shown = clean_display_name(display_name)
    if shown:
        if is_phone_number(shown):
            return format_number(shown, masked=not show_raw_numbers)
        return shown
    user = clean_display_name(sip_user_part(from_uri))
    if not user or user.lower() in _ANONYMOUS_USERS:
        return FALLBACK_NICK
    if is_phone_number(user):
        return format_number(user, masked=not show_raw_numbers)
    return user


@functools.lru_cache(maxsize=8192)
def _prototype(ch: str) -> str:
    """The UTS #39 prototype of one character, from Unicode's confusables.txt as the
    ``confusable-homoglyphs`` package ships it: a confusable character lists its prototype
    alone (``е`` → ``e``, ``1`` → ``l``); a prototype lists its confusables (``l`` → ``|``,
    ``1``…). A pair that list only each other maps to the smaller of the two."""
    entries = _confusables.confusables_data.get(ch)
    if not entries or len(entries) != 1:
        return ch
    other = str(entries[0]["c"])
    back = _confusables.confusables_data.get(other) or []
    if len(back) == 1 and back[0]["c"] == ch:
        return min(ch, other)
    return other


def skeleton(nick: str) -> str:
    """The confusables skeleton of a nick (UTS #39 §4, case-insensitive): two nicks with
    the same skeleton look alike (``bridge`` and ``bridgе`` with a Cyrillic ``е``; ``b0b``
    and ``BOB``). For comparison only, never shown. Not covered: confusables that only look
    alike as a sequence the data does not list, and whole-script look-alikes beyond it."""
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", nick).casefold())
    mapped = "".join(_prototype(ch) for ch in text)
    mapped = "".join(ch for ch in mapped if unicodedata.category(ch) != "Cf")  # LRM marks
    return unicodedata.normalize("NFD", mapped.casefold())


def _fold(nick: str) -> str:
    return skeleton(nick)


def unique_nick(wanted: str, taken: Collection[str]) -> str:
    """``wanted``, or ``wanted (2)``, ``wanted (3)``… — the first not in ``taken``.

    Compared by confusables skeleton (:func:`skeleton`): ``Alice`` and ``alice``, and
    ``bridge`` and ``bridgе`` with a Cyrillic ``е``, are never both shown, so a caller's
    puppet cannot pass for the bridge or for another occupant (issue 19).
    """
    folded = {_fold(n) for n in taken}
    base = wanted.strip() or FALLBACK_NICK
    if _fold(base) not in folded:
        return base
    n = 2
    while True:
        suffix = f" ({n})"
        candidate = base[: MAX_NICK_CHARS - len(suffix)].rstrip() + suffix
        if _fold(candidate) not in folded:
            return candidate
        n += 1


__all__ = [
    "FALLBACK_NICK",
    "MASK",
    "MAX_NICK_CHARS",
    "caller_nick",
    "clean_display_name",
    "country_code",
    "format_number",
    "is_phone_number",
    "sip_user_part",
    "skeleton",
    "unique_nick",
]
