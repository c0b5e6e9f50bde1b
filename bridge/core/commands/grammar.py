"""The grammar of owner commands: a typed line or a submitted form → :class:`ParsedCommand`.

Never raises on user input: a :class:`ParseError` is the reply to the issuer (or silence for
ordinary chat, code ``not-command``). Nick arguments are resolved against the room's nicks
by :func:`resolve_nick` (exact, any case, or a unique prefix). Pure.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bridge.core.commands.table import (
    COMMANDS,
    MAX_CANDIDATES_SHOWN,
    MAX_COMMAND_CHARS,
    MAX_NICK_CHARS,
    MAX_PIN_DIGITS,
    MAX_REASON_CHARS,
    MAX_TARGET_CHARS,
    MIN_PIN_DIGITS,
    ArgSpec,
    CommandSpec,
    lookup,
    shorten,
)

# ---- parsing ------------------------------------------------------------------------------

ParseErrorCode = Literal[
    "not-command", "unknown", "too-long", "quoting", "missing-arg", "extra-args", "bad-arg"
]


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    """A valid command: the spec's name and its arguments (name → text; absent = not given)."""

    name: str
    args: Mapping[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> CommandSpec:
        return COMMANDS[self.name]

    def arg(self, name: str, default: str = "") -> str:
        return self.args.get(name, default)


@dataclass(frozen=True, slots=True)
class ParseError:
    """Why a line or form is not a valid command; ``message`` is the reply to the issuer.

    ``code == "not-command"`` means ordinary chat: the listener stays silent.
    """

    code: ParseErrorCode
    message: str
    command: str = ""


_QUOTES: Mapping[str, str] = {'"': '"', "'": "'", "“": "”", "„": "“", "‘": "’", "«": "»"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _tokens(text: str) -> list[str] | ParseError:
    """Split like a shell, forgivingly: whitespace separates (any Unicode space); a quote
    opens only at the start of a word (so ``O'Brien`` and ``don't`` are plain words);
    ``\\`` escapes the closing quote or itself inside quotes; curly quotes from phone
    keyboards count."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        word: list[str] = []
        close = _QUOTES.get(text[i])
        if close is not None:
            opener = text[i]
            i += 1
            while True:
                if i >= n:
                    return ParseError("quoting", f"Unclosed quote {opener}: close it or remove it.")
                ch = text[i]
                if ch == "\\" and i + 1 < n and text[i + 1] in (close, "\\"):
                    word.append(text[i + 1])
                    i += 2
                    continue
                i += 1
                if ch == close:
                    break
                word.append(ch)
        while i < n and not text[i].isspace():  # rest of the word (or text glued to a quote)
            word.append(text[i])
            i += 1
        out.append("".join(word))
    return out


def _split_first(text: str, count: int) -> tuple[list[str], str] | ParseError:
    """The first ``count`` tokens of ``text`` and the raw remainder after them."""
    tokens: list[str] = []
    rest = text
    while len(tokens) < count:
        rest = rest.lstrip()
        if not rest:
            break
        end = _token_end(rest)
        if isinstance(end, ParseError):
            return end
        piece = _tokens(rest[:end])
        if isinstance(piece, ParseError):
            return piece
        tokens += piece
        rest = rest[end:]
    return tokens, rest.strip()


def _token_end(text: str) -> int | ParseError:
    """Index just after the first word of ``text`` (which starts with a non-space)."""
    i, n = 0, len(text)
    close = _QUOTES.get(text[0])
    if close is not None:
        i = 1
        while True:
            if i >= n:
                return ParseError("quoting", f"Unclosed quote {text[0]}: close it or remove it.")
            if text[i] == "\\" and i + 1 < n and text[i + 1] in (close, "\\"):
                i += 2
                continue
            i += 1
            if text[i - 1] == close:
                break
    while i < n and not text[i].isspace():
        i += 1
    return i


def _unquote_rest(text: str) -> str:
    """A rest-of-line argument: one quoted word loses its quotes; anything else is kept raw
    (so a reason may contain apostrophes and unmatched quotes)."""
    if not text:
        return ""
    end = _token_end(text)
    if not isinstance(end, ParseError) and not text[end:].strip():
        words = _tokens(text)
        if not isinstance(words, ParseError) and len(words) == 1:
            return words[0]
    return text


def is_command(text: str, prefix: str = "!") -> bool:
    """Does this chat line address the bridge? (prefix directly followed by a letter)"""
    body = text.lstrip()
    if not body.startswith(prefix):
        return False
    rest = body[len(prefix) :]
    return bool(rest) and (rest[0].isalpha() or rest[0] == "?")


def parse_command(text: str, prefix: str = "!") -> ParsedCommand | ParseError:
    """Parse one chat line. Never raises, whatever the input."""
    if not isinstance(text, str) or not is_command(text, prefix):
        return ParseError("not-command", "")
    body = text.strip()[len(prefix) :]
    if len(body) + len(prefix) > MAX_COMMAND_CHARS:
        return ParseError(
            "too-long",
            f"That command is {len(body) + len(prefix)} characters long; the limit is "
            f"{MAX_COMMAND_CHARS}.",
        )
    cut = 0
    while cut < len(body) and not body[cut].isspace():
        cut += 1
    word, rest = body[:cut], body[cut:].strip()
    spec = lookup(word)
    if spec is None:
        return ParseError("unknown", _unknown_message(word, prefix), word[:40])
    values: dict[str, str] = {}
    for arg in spec.args:
        if arg.rest:
            raw = _unquote_rest(rest)
            rest = ""
        else:
            split = _split_first(rest, 1)
            if isinstance(split, ParseError):
                return ParseError(split.code, split.message + f" Usage: {spec.usage(prefix)}",
                                  spec.name)  # fmt: skip
            first, rest = split
            raw = first[0] if first else ""
        if raw == "" and not rest and not arg.required:
            continue
        if raw == "":
            return ParseError("missing-arg", f"{spec.usage(prefix)}: {arg.name} is missing "
                              f"({arg.help.lower()}).", spec.name)  # fmt: skip
        checked = check_arg(arg, raw)
        if isinstance(checked, ParseError):
            return ParseError(checked.code, f"{checked.message} Usage: {spec.usage(prefix)}",
                              spec.name)  # fmt: skip
        values[arg.name] = checked
    if rest:
        hint = ""
        if any(a.kind == "nick" for a in spec.args):
            hint = f' Quote a nick with spaces: {prefix}{spec.name} "Bob Smith".'
        return ParseError(
            "extra-args",
            f"Too many arguments for {prefix}{spec.name}. Usage: {spec.usage(prefix)}.{hint}",
            spec.name,
        )
    return ParsedCommand(spec.name, values)


def parse_form(name: str, values: Mapping[str, str]) -> ParsedCommand | ParseError:
    """The same command from a submitted XEP-0004 form (field var → text). Never raises."""
    spec = lookup(name) if isinstance(name, str) else None
    if spec is None:
        return ParseError("unknown", f"No command {name!r}.")
    out: dict[str, str] = {}
    for arg in spec.args:
        raw = values.get(arg.name, "")
        raw = raw.strip() if isinstance(raw, str) else ""
        if not raw:
            if arg.required:
                return ParseError("missing-arg", f"Field {arg.name!r} is required "
                                  f"({arg.help.lower()}).", spec.name)  # fmt: skip
            continue
        checked = check_arg(arg, raw)
        if isinstance(checked, ParseError):
            return ParseError(checked.code, checked.message, spec.name)
        out[arg.name] = checked
    return ParsedCommand(spec.name, out)


_DIAL_NUMBER = re.compile(r"\+?[0-9][0-9*#]{0,31}")
_SIP_URI = re.compile(r"sips?:([^@\s<>\"]+@)?[A-Za-z0-9.\-\[\]:]+(;[^\s<>\"]*)?", re.IGNORECASE)
_PIN = re.compile(rf"[0-9]{{{MIN_PIN_DIGITS},{MAX_PIN_DIGITS}}}")


def check_arg(arg: ArgSpec, raw: str) -> str | ParseError:
    """Validate and normalise one argument value (shared by both front ends)."""
    if arg.kind in ("nick", "nick-or-all"):
        if len(raw) > MAX_NICK_CHARS:
            return ParseError("bad-arg", f"That nick is too long ({len(raw)} characters).")
        return raw
    if arg.kind == "reason":
        clean = " ".join(_CONTROL.sub(" ", raw).split())
        if len(clean) > MAX_REASON_CHARS:
            return ParseError("bad-arg", f"The reason is too long ({len(clean)} characters; "
                              f"at most {MAX_REASON_CHARS}).")  # fmt: skip
        return clean
    if arg.kind == "command":
        if len(raw) > 40:
            return ParseError("bad-arg", "No command has a name that long.")
        return raw
    if arg.kind == "pin":
        if raw.casefold() == "off":
            return "off"
        if not _PIN.fullmatch(raw):
            return ParseError("bad-arg", f"A PIN is {MIN_PIN_DIGITS} to {MAX_PIN_DIGITS} "
                              "digits (0-9), or 'off'.")  # fmt: skip
        return raw
    # sip-uri, dial-target
    value = raw.strip("<>")
    if len(value) > MAX_TARGET_CHARS:
        return ParseError("bad-arg", f"That address is too long ({len(value)} characters).")
    if _SIP_URI.fullmatch(value):
        scheme, _, rest = value.partition(":")
        return scheme.lower() + ":" + rest
    if arg.kind == "dial-target":
        number = re.sub(r"[\s().\-/]", "", value)
        if _DIAL_NUMBER.fullmatch(number):
            return number
        return ParseError("bad-arg", f"{shorten(raw)!r} is neither a sip: URI nor a "
                          "telephone number.")  # fmt: skip
    return ParseError("bad-arg", f"{shorten(raw)!r} is not a sip: or sips: URI.")


def _unknown_message(word: str, prefix: str) -> str:
    close = difflib.get_close_matches(word.casefold(), list(COMMANDS), n=1)
    hint = f" Did you mean {prefix}{close[0]}?" if close else ""
    return f"Unknown command {prefix}{shorten(word, 30)}.{hint} {prefix}help lists them."


# ---- nick resolution ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NickError:
    message: str
    candidates: tuple[str, ...] = ()


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def resolve_nick(query: str, nicks: Iterable[str]) -> str | NickError:
    """The one nick ``query`` names: exact, else case-insensitive, else a unique prefix.

    Ambiguity is an error listing the candidates (never a guess: a wrong guess mutes or
    kicks the wrong person).
    """
    pool = list(dict.fromkeys(nicks))
    if not query:
        return NickError("No nick given.")
    if query in pool:
        return query
    nfc = unicodedata.normalize("NFC", query)
    same = [n for n in pool if unicodedata.normalize("NFC", n) == nfc]
    if len(same) == 1:
        return same[0]
    folded = _fold(query)
    for matches in (
        [n for n in pool if _fold(n) == folded],
        [n for n in pool if _fold(n).startswith(folded)],
    ):
        if len(matches) == 1:
            return matches[0]
        if matches:
            return _ambiguous(query, matches)
    return NickError(f"Nobody called {shorten(query)!r} is here.")


def _ambiguous(query: str, matches: Sequence[str]) -> NickError:
    ordered = sorted(matches, key=lambda n: (_fold(n), n))
    shown = ", ".join(repr(n) for n in ordered[:MAX_CANDIDATES_SHOWN])
    more = (
        f" and {len(ordered) - MAX_CANDIDATES_SHOWN} more"
        if len(ordered) > MAX_CANDIDATES_SHOWN
        else ""
    )
    return NickError(
        f"{shorten(query)!r} matches several people: {shown}{more}. Type more of the nick "
        "(quote it if it has spaces).",
        tuple(ordered),
    )
