"""Owner commands (issue 8): one table, one parser, one planner for ``!commands`` and XEP-0050.

Pure: no I/O, no clock, no slixmpp. Both front ends end in the same call chain:

- the room listener turns a groupchat body into a :class:`ParsedCommand` with
  :func:`parse_command` (never raises; a :class:`ParseError` is a reply to the issuer, or
  silence when its code is ``not-command``);
- the XEP-0050 adapter (:mod:`bridge.xmpp.adhoc`) turns a submitted data form into the same
  :class:`ParsedCommand` with :func:`parse_form` (fields built from the same table);
- the supervisor's executor calls :func:`plan_command` with the issuer's affiliation and role
  *as the MUC service reports them* and a :class:`RoomView` snapshot, then carries out the
  returned :class:`CommandPlan`: ``events`` first (through ``MirrorEngine.handle``: recorded in
  Redis, then their actions performed), then ``actions``, then replies with ``reply``.

Effects reuse the mirror vocabulary (:mod:`bridge.core.mirror_events` events and actions,
:mod:`bridge.core.events` worker commands); only what the mirror has no word for is new here:
:class:`KickOccupant`, :class:`LinkConference`, :class:`UnlinkConference`,
:class:`SetLocked`, :class:`SetPin`, :class:`DialOut`.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bridge.core.events import HangupLeg, SendSipMessage
from bridge.core.mirror_events import (
    Action,
    MirrorEvent,
    MucRole,
    OccupantKicked,
    OccupantVoiceChanged,
    RoomDestroyed,
    SetOccupantRole,
    ShowOccupantInCall,
)

# ---- limits -------------------------------------------------------------------------------

#: Longest command line accepted (characters, after stripping). A chat line is cheap to send;
#: the planner's work and the replies must not grow with it.
MAX_COMMAND_CHARS = 500
MAX_NICK_CHARS = 256  # far above any server's nick limit (Prosody: 1023 bytes resourceprep)
MAX_REASON_CHARS = 300
MAX_TARGET_CHARS = 256
MIN_PIN_DIGITS = 4
MAX_PIN_DIGITS = 12
MAX_CANDIDATES_SHOWN = 8

# ---- the table ----------------------------------------------------------------------------

Privilege = Literal["anyone", "occupant", "moderator", "admin", "owner"]
ArgKind = Literal["nick", "nick-or-all", "reason", "sip-uri", "dial-target", "pin", "command"]
FieldType = Literal["text-single", "text-private", "list-single", "jid-single"]

PRIVILEGE_WORDS: Mapping[Privilege, str] = {
    "anyone": "anyone",
    "occupant": "occupants of the room",
    "moderator": "moderators (role moderator, or admin/owner affiliation)",
    "admin": "room admins and owners",
    "owner": "room owners",
}


@dataclass(frozen=True, slots=True)
class ArgSpec:
    """One argument. ``rest``: takes the rest of the line (a reason, a nick with spaces)."""

    name: str
    kind: ArgKind
    help: str
    required: bool = True
    rest: bool = False

    @property
    def usage(self) -> str:
        shown = {
            "nick": "<nick>",
            "nick-or-all": "<nick|all>",
            "reason": "[reason]",
            "sip-uri": "[sip-uri]",
            "dial-target": "<sip-uri|number>",
            "pin": "<digits|off>",
            "command": "[command]",
        }[self.kind]
        if not self.required and not shown.startswith("["):
            shown = f"[{shown[1:-1]}]"
        return shown


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A XEP-0004 field of the command's form (the adapter adds the ``room`` field)."""

    var: str
    type: FieldType
    label: str
    required: bool
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    summary: str
    privilege: Privilege
    args: tuple[ArgSpec, ...] = ()
    needs_link: bool = True  # refused with a hint while the room is not linked
    aliases: tuple[str, ...] = ()

    @property
    def node(self) -> str:
        """XEP-0050 node of this command on the bridge component."""
        return self.name

    def usage(self, prefix: str = "!") -> str:
        return " ".join([prefix + self.name, *(a.usage for a in self.args)])

    def fields(self) -> tuple[FieldSpec, ...]:
        out: list[FieldSpec] = []
        for arg in self.args:
            ftype: FieldType = "text-single"
            options: tuple[str, ...] = ()
            if arg.kind == "pin":
                ftype = "text-private"  # a PIN typed in a form is not shown to bystanders
            elif arg.kind == "command":
                ftype, options = "list-single", tuple(sorted(COMMANDS))
            out.append(FieldSpec(arg.name, ftype, arg.help, arg.required, options))
        return tuple(out)


_NICK = ArgSpec("nick", "nick", "Nick in the room (exact, any case, or a unique prefix)")
_TABLE: tuple[CommandSpec, ...] = (
    CommandSpec(
        "help",
        "List the commands, or explain one",
        "anyone",
        (ArgSpec("command", "command", "Command to explain", required=False),),
        needs_link=False,
        aliases=("?", "commands"),
    ),
    CommandSpec(
        "status",
        "Who is on the call: muted, talking, codec, since when; lock and PIN state",
        "occupant",
        needs_link=False,
    ),
    CommandSpec(
        "link",
        "Attach this room to a conference: its own SIP URI, or an external conference "
        "URI that the bridge dials into",
        "owner",
        (ArgSpec("uri", "sip-uri", "External SIP conference URI (empty: a new one)", False),),
        needs_link=False,
    ),
    CommandSpec("unlink", "Detach the room from its conference (ends the call)", "owner"),
    CommandSpec(
        "mute",
        "Mute a caller, or every caller without moderator rights",
        "moderator",
        (ArgSpec("nick", "nick-or-all", "Nick of a caller, or 'all'", rest=True),),
    ),
    CommandSpec(
        "unmute",
        "Unmute a caller, or every caller a moderator muted",
        "moderator",
        (ArgSpec("nick", "nick-or-all", "Nick of a caller, or 'all'", rest=True),),
    ),
    CommandSpec(
        "kick",
        "Remove an occupant from the room (a caller is also hung up)",
        "moderator",
        (_NICK, ArgSpec("reason", "reason", "Reason shown to them", False, rest=True)),
    ),
    CommandSpec(
        "hangup",
        "End a caller's call (they may call again)",
        "moderator",
        (ArgSpec("nick", "nick", _NICK.help, rest=True),),
        aliases=("bye",),
    ),
    CommandSpec(
        "dial",
        "Call someone into the conference; progress is reported here",
        "admin",
        (ArgSpec("target", "dial-target", "SIP URI or telephone number to call"),),
    ),
    CommandSpec("lock", "Refuse new callers (dial-out still works)", "admin"),
    CommandSpec("unlock", "Accept new callers again", "admin"),
    CommandSpec(
        "pin",
        f"Callers must enter this PIN ({MIN_PIN_DIGITS}-{MAX_PIN_DIGITS} digits, then #) "
        "before joining; 'off' removes it",
        "admin",
        (ArgSpec("pin", "pin", "PIN digits, or 'off'"),),
    ),
)
COMMANDS: Mapping[str, CommandSpec] = {spec.name: spec for spec in _TABLE}
_ALIASES: Mapping[str, str] = {a: s.name for s in _TABLE for a in s.aliases}


def lookup(name: str) -> CommandSpec | None:
    """A command by name or alias, any case (NFKC: full-width letters count)."""
    key = unicodedata.normalize("NFKC", name).casefold()
    return COMMANDS.get(key) or COMMANDS.get(_ALIASES.get(key, ""))


def help_text(command: str = "", prefix: str = "!") -> str:
    """Help generated from the table: all commands, or one command in detail."""
    if command:
        spec = lookup(command.removeprefix(prefix) if prefix else command)
        if spec is None:
            return f"No command {_shorten(command)!r}. " + help_text(prefix=prefix)
        lines = [f"{spec.usage(prefix)} — {spec.summary}."]
        lines += [f"  {a.usage}: {a.help}" for a in spec.args]
        lines.append(f"  Allowed for {PRIVILEGE_WORDS[spec.privilege]}.")
        if spec.aliases:
            lines.append("  Also: " + ", ".join(prefix + a for a in spec.aliases))
        return "\n".join(lines)
    width = max(len(s.usage(prefix)) for s in _TABLE)
    lines = ["Bridge commands (type them in the room, or use ad-hoc commands):"]
    for spec in _TABLE:
        who = "" if spec.privilege in ("anyone", "occupant") else f" [{spec.privilege}]"
        lines.append(f"  {spec.usage(prefix).ljust(width)}  {spec.summary}{who}")
    lines.append(f'Quote a nick with spaces: {prefix}kick "Bob Smith" reason')
    return "\n".join(lines)


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
        return ParseError("bad-arg", f"{_shorten(raw)!r} is neither a sip: URI nor a "
                          "telephone number.")  # fmt: skip
    return ParseError("bad-arg", f"{_shorten(raw)!r} is not a sip: or sips: URI.")


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unknown_message(word: str, prefix: str) -> str:
    close = difflib.get_close_matches(word.casefold(), list(COMMANDS), n=1)
    hint = f" Did you mean {prefix}{close[0]}?" if close else ""
    return f"Unknown command {prefix}{_shorten(word, 30)}.{hint} {prefix}help lists them."


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
    return NickError(f"Nobody called {_shorten(query)!r} is here.")


def _ambiguous(query: str, matches: Sequence[str]) -> NickError:
    ordered = sorted(matches, key=lambda n: (_fold(n), n))
    shown = ", ".join(repr(n) for n in ordered[:MAX_CANDIDATES_SHOWN])
    more = (
        f" and {len(ordered) - MAX_CANDIDATES_SHOWN} more"
        if len(ordered) > MAX_CANDIDATES_SHOWN
        else ""
    )
    return NickError(
        f"{_shorten(query)!r} matches several people: {shown}{more}. Type more of the nick "
        "(quote it if it has spaces).",
        tuple(ordered),
    )


# ---- authorization ------------------------------------------------------------------------

Affiliation = Literal["owner", "admin", "member", "none", "outcast"]
Role = Literal["moderator", "participant", "visitor", "none"]
_AFFILIATIONS = ("owner", "admin", "member", "none", "outcast")
_ROLES = ("moderator", "participant", "visitor", "none")


@dataclass(frozen=True, slots=True)
class Refusal:
    command: str
    message: str


def _describe(affiliation: str, role: str) -> str:
    aff = "no affiliation" if affiliation == "none" else f"affiliation {affiliation}"
    where = "not in the room" if role == "none" else f"role {role}"
    return f"{where}, {aff}"


def authorize(
    command: CommandSpec | str, issuer_affiliation: str, issuer_role: str
) -> Refusal | None:
    """May someone with this affiliation/role (as the MUC service reports them — never a
    nick claim) run the command? None = yes; else a refusal saying what is needed.

    Owners ⊃ admins ⊃ moderators: an owner or admin counts as a moderator even when not in
    the room (an ad-hoc command arrives from outside the room, role ``none``).
    """
    spec = command if isinstance(command, CommandSpec) else lookup(command)
    if spec is None:
        return Refusal(str(command), f"No command {command!r}.")
    aff = issuer_affiliation if issuer_affiliation in _AFFILIATIONS else "none"
    role = issuer_role if issuer_role in _ROLES else "none"
    need = spec.privilege
    if need == "anyone":
        return None
    if aff == "outcast":
        return Refusal(spec.name, "You are banned from this room.")
    ok = {
        "occupant": role != "none" or aff in ("owner", "admin", "member"),
        "moderator": role == "moderator" or aff in ("owner", "admin"),
        "admin": aff in ("owner", "admin"),
        "owner": aff == "owner",
    }[need]
    if ok:
        return None
    return Refusal(
        spec.name,
        f"Only {PRIVILEGE_WORDS[need]} may use {spec.name}; you are {_describe(aff, role)}.",
    )


# ---- what a room looks like to the planner ------------------------------------------------

MuteState = Literal["", "self", "moderator"]


@dataclass(frozen=True, slots=True)
class Participant:
    """One person in the room or on the call, as the supervisor sees them.

    ``jid``: the puppet's JID for a caller shown by a puppet, else the occupant's real bare
    JID (a bound caller, a chat user). ``leg_ids`` empty: chat only.
    """

    nick: str
    jid: str = ""
    role: str = "participant"
    affiliation: str = "none"
    puppet: bool = False
    leg_ids: tuple[str, ...] = ()
    privilege: str = "participant"  # stored mirror privilege (owner/moderator/participant)
    mute: MuteState = ""
    talking: bool = False
    codec: str = ""
    since: float = 0.0  # wall-clock seconds the first leg joined
    accepts_messages: bool = True

    @property
    def in_call(self) -> bool:
        return bool(self.leg_ids)


@dataclass(frozen=True, slots=True)
class RoomView:
    """Snapshot the planner reads. ``conference``: the state key (``sip:<conference>@…``),
    empty while not linked."""

    room_jid: str
    conference: str = ""
    sip_uri: str = ""
    external_uri: str = ""
    locked: bool = False
    pin_set: bool = False
    control_nick: str = ""
    participants: tuple[Participant, ...] = ()

    @property
    def linked(self) -> bool:
        return bool(self.conference)

    def by_nick(self, nick: str) -> Participant | None:
        for p in self.participants:
            if p.nick == nick:
                return p
        return None


@dataclass(frozen=True, slots=True)
class Issuer:
    """Who typed the command; affiliation/role from the MUC service (presence or admin list)."""

    nick: str
    jid: str
    affiliation: str = "none"
    role: str = "none"

    @property
    def actor(self) -> str:
        return self.jid or self.nick


# ---- new actions (what the mirror vocabulary has no word for) -----------------------------


@dataclass(frozen=True, slots=True)
class KickOccupant:
    """XEP-0045 kick (role ``none``) by the control occupant."""

    room_jid: str
    nick: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LinkConference:
    """Link the room: ``external_uri`` empty = create the room's own conference (advertise
    ``sip:<conference>@<domain>``); else the bridge dials into that external conference.
    Record with ``StateStore.link_room`` and advertise in the room configuration."""

    room_jid: str
    external_uri: str
    actor: str


@dataclass(frozen=True, slots=True)
class UnlinkConference:
    """Unlink: ``StateStore.unlink_room`` and stop advertising the SIP URI in the room."""

    room_jid: str
    conference: str
    actor: str


@dataclass(frozen=True, slots=True)
class SetLocked:
    """Refuse (locked) or accept new INVITEs; must be stored with the room (survives restarts)
    and pushed to the workers' admission snapshot. Refused callers hear 403 Locked."""

    conference: str
    locked: bool
    actor: str


@dataclass(frozen=True, slots=True)
class SetPin:
    """Set (``pin``) or remove (None) the dial-in PIN: store it with the room; new legs go
    through :class:`bridge.core.pin.PinEntry` before they join the mix."""

    conference: str
    pin: str | None = field(repr=False)  # never in logs
    actor: str


@dataclass(frozen=True, slots=True)
class DialOut:
    """Call ``target`` (sip URI, or a number to route through the configured trunk/domain)
    into the conference; report progress and failure in the room (reply to ``report_to``)."""

    conference: str
    target: str
    is_number: bool
    actor: str
    report_to: str  # issuer's nick in the room, for the progress messages


CommandAction = KickOccupant | LinkConference | UnlinkConference | SetLocked | SetPin | DialOut
Effect = Action | CommandAction


@dataclass(frozen=True, slots=True)
class CommandReply:
    """What the issuer is told. ``refused``/``invalid`` → XEP-0050 ``forbidden``/``bad-request``;
    ``failed`` → a completed command with an error note; ``ok`` → an info note."""

    status: Literal["ok", "refused", "invalid", "failed"]
    text: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class CommandPlan:
    """The result of a command: tell the issuer ``reply``; if accepted, record ``events``
    through the mirror engine (in order, performing each outcome's actions), then perform
    ``actions``. ``summary`` is the audit line (actor, command, result) to log."""

    command: str
    reply: CommandReply
    events: tuple[MirrorEvent, ...] = ()
    actions: tuple[Effect, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.reply.ok

    def audit(self, issuer: Issuer) -> dict[str, str | int]:
        """Fields for the ``command.executed`` / ``command.refused`` log line."""
        return {
            "command": self.command,
            "actor": issuer.actor,
            "affiliation": issuer.affiliation,
            "role": issuer.role,
            "result": self.reply.status,
            "detail": _shorten(self.reply.text, 200),
            "effects": len(self.events) + len(self.actions),
        }


# ---- planning -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ctx:
    parsed: ParsedCommand
    issuer: Issuer
    view: RoomView
    now: float
    event_id: str
    prefix: str

    def event_ids(self) -> Iterable[str]:
        n = 0
        while True:
            yield f"{self.event_id}:{n}"
            n += 1


def _fail(ctx: _Ctx, text: str, status: Literal["invalid", "failed"] = "invalid") -> CommandPlan:
    return CommandPlan(ctx.parsed.name, CommandReply(status, text))


def _ok(ctx: _Ctx, text: str, events: Sequence[MirrorEvent] = (),
        actions: Sequence[Effect] = ()) -> CommandPlan:  # fmt: skip
    return CommandPlan(ctx.parsed.name, CommandReply("ok", text), tuple(events), tuple(actions))


def plan_command(
    parsed: ParsedCommand,
    issuer: Issuer,
    view: RoomView,
    *,
    now: float,
    event_id: str,
    prefix: str = "!",
) -> CommandPlan:
    """Decide what an issued command does (authorization included). Pure; never raises for
    any parsed command, issuer or view. ``event_id`` must be stable for this one command
    (stanza id / ad-hoc session id): the mirror events derive theirs from it, so a replay
    changes nothing."""
    spec = COMMANDS.get(parsed.name)
    if spec is None:
        return CommandPlan(parsed.name, CommandReply("invalid", f"No command {parsed.name!r}."))
    refusal = authorize(spec, issuer.affiliation, issuer.role)
    if refusal is not None:
        return CommandPlan(spec.name, CommandReply("refused", refusal.message))
    ctx = _Ctx(parsed, issuer, view, now, event_id, prefix)
    if spec.needs_link and not view.linked:
        return _fail(ctx, f"This room is not linked to a conference; an owner can "
                     f"{prefix}link it.")  # fmt: skip
    return _PLANNERS[spec.name](ctx)


def _help(ctx: _Ctx) -> CommandPlan:
    return _ok(ctx, help_text(ctx.parsed.arg("command"), ctx.prefix))


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _status(ctx: _Ctx) -> CommandPlan:
    view = ctx.view
    if not view.linked:
        return _ok(ctx, f"This room is not linked to a conference; an owner can "
                   f"{ctx.prefix}link it.")  # fmt: skip
    where = (view.external_uri and f"dialled into {view.external_uri}") or f"dial {view.sip_uri}"
    lines = [
        f"Conference {view.conference} ({where}); "
        f"{'locked' if view.locked else 'open to new callers'}; "
        f"PIN {'on' if view.pin_set else 'off'}."
    ]
    callers = sorted((p for p in view.participants if p.in_call), key=lambda p: (p.since, p.nick))
    if not callers:
        lines.append("Nobody is on the call.")
    else:
        lines.append(f"On the call ({len(callers)}):")
        for p in callers:
            bits = ["chat and phone" if not p.puppet else "phone"]
            if p.mute:
                bits.append("muted by themself" if p.mute == "self" else "muted by a moderator")
            if p.talking:
                bits.append("talking")
            if p.privilege != "participant":
                bits.append(p.privilege)
            if p.codec:
                bits.append(p.codec)
            if p.since:
                bits.append(f"for {_clock(ctx.now - p.since)}")
            if len(p.leg_ids) > 1:
                bits.append(f"{len(p.leg_ids)} calls")
            lines.append(f"  {p.nick}: " + ", ".join(bits))
    chat = sorted(
        p.nick for p in view.participants if not p.in_call and p.nick != view.control_nick
    )
    if chat:
        lines.append(f"In the chat only ({len(chat)}): " + ", ".join(chat[:30])
                     + (" …" if len(chat) > 30 else ""))  # fmt: skip
    return _ok(ctx, "\n".join(lines))


def _target(ctx: _Ctx, query: str, *, in_call: bool) -> Participant | CommandPlan:
    """The participant ``query`` names (callers only when ``in_call``), or the error plan."""
    view = ctx.view
    if view.control_nick and query == view.control_nick:
        return _fail(ctx, "That is the bridge itself.")
    everyone = [p.nick for p in view.participants if p.nick != view.control_nick]
    pool = [p.nick for p in view.participants if p.in_call] if in_call else everyone
    found = resolve_nick(query, pool)
    if isinstance(found, NickError):
        if in_call and not found.candidates:
            elsewhere = resolve_nick(query, everyone)
            if isinstance(elsewhere, str):
                return _fail(ctx, f"{elsewhere} is in the chat only, not on the call.")
        return _fail(ctx, found.message)
    target = view.by_nick(found)
    assert target is not None
    return target


def _outranks(target: Participant, issuer: Issuer) -> bool:
    """XEP-0045 §8.2/§9.2: nobody may kick or devoice an admin or owner at or above their own
    affiliation (the MUC would refuse it anyway; we say why first)."""
    rank = {"owner": 2, "admin": 1}
    level = rank.get(target.affiliation, 0)
    return level > 0 and level >= rank.get(issuer.affiliation, 0)


def _voiced_role(p: Participant) -> MucRole:
    return "participant" if p.privilege == "participant" else "moderator"


def _mute_effects(ctx: _Ctx, targets: Sequence[Participant], muted: bool,
                  ids: Iterable[str]) -> tuple[list[MirrorEvent], list[Effect]]:  # fmt: skip
    """Record each (un)mute as the room-side voice change it is, and make it in the room.

    The mirror policy turns the event into the SIP side (MuteLeg, conference-info status, a
    tone and a note to the caller) and the Redis record; the room side is ours to do: the
    puppet's role, or the bound occupant's in-call status (never their text voice)."""
    events: list[MirrorEvent] = []
    actions: list[Effect] = []
    reason = f"{'muted' if muted else 'unmuted'} by {ctx.issuer.nick or ctx.issuer.actor}"
    for p, event_id in zip(targets, ids, strict=False):
        events.append(OccupantVoiceChanged(
            event_id=event_id, room=ctx.view.conference, origin="muc", actor=ctx.issuer.actor,
            at=ctx.now, occupant_jid=p.jid, voiced=not muted,
        ))  # fmt: skip
        if p.puppet:
            role: MucRole = "visitor" if muted else _voiced_role(p)
            actions.append(SetOccupantRole(p.jid, role, reason))
        else:
            actions += [ShowOccupantInCall(p.jid, leg, True, muted) for leg in p.leg_ids]
    return events, actions


def _mute(ctx: _Ctx) -> CommandPlan:
    muted = ctx.parsed.name == "mute"
    query = ctx.parsed.arg("nick")
    word = "mute" if muted else "unmute"
    if query.casefold() == "all":  # always everyone: a troll nicknamed "all" changes nothing
        if muted:  # like *7: everyone without privilege who is not muted yet
            targets = [p for p in ctx.view.participants if p.in_call and not p.mute
                       and p.privilege == "participant" and p.role != "moderator"
                       and p.affiliation not in ("owner", "admin")
                       and p.jid != ctx.issuer.jid]  # fmt: skip
        else:  # like *8: only moderator mutes (a self-mute is the caller's own choice)
            targets = [p for p in ctx.view.participants if p.in_call and p.mute == "moderator"]
        if not targets:
            return _ok(ctx, f"Nobody to {word}.")
        events, actions = _mute_effects(ctx, targets, muted, ctx.event_ids())
        names = ", ".join(p.nick for p in targets)
        return _ok(ctx, f"{word.capitalize()}d {len(targets)}: {names}.", events, actions)
    target = _target(ctx, query, in_call=True)
    if isinstance(target, CommandPlan):
        return target
    if _outranks(target, ctx.issuer):
        return _fail(ctx, f"You may not {word} {target.nick}: they are a room "
                     f"{target.affiliation}.")  # fmt: skip
    if muted and target.mute:
        return _ok(ctx, f"{target.nick} is already muted.")
    if not muted:
        if not target.mute:
            return _ok(ctx, f"{target.nick} is not muted.")
        if target.mute == "self":
            return _fail(ctx, f"{target.nick} muted themself; only they can unmute (*6).")
    events, actions = _mute_effects(ctx, [target], muted, ctx.event_ids())
    return _ok(ctx, f"{word.capitalize()}d {target.nick}.", events, actions)


def _kick(ctx: _Ctx) -> CommandPlan:
    target = _target(ctx, ctx.parsed.arg("nick"), in_call=False)
    if isinstance(target, CommandPlan):
        return target
    if (target.jid and target.jid == ctx.issuer.jid) or target.nick == ctx.issuer.nick:
        return _fail(ctx, "You cannot kick yourself.")
    if _outranks(target, ctx.issuer):
        return _fail(ctx, f"You may not kick {target.nick}: they are a room "
                     f"{target.affiliation}.")  # fmt: skip
    reason = ctx.parsed.arg("reason")
    shown = f"kicked by {ctx.issuer.nick or ctx.issuer.actor}" + (f": {reason}" if reason else "")
    events: list[MirrorEvent] = []
    if target.jid:
        events.append(OccupantKicked(
            event_id=f"{ctx.event_id}:0", room=ctx.view.conference, origin="muc",
            actor=ctx.issuer.actor, at=ctx.now, occupant_jid=target.jid, reason=shown,
        ))  # fmt: skip
    actions: list[Effect] = [KickOccupant(ctx.view.room_jid, target.nick, shown)]
    note = " (their call is hung up)" if target.in_call else ""
    return _ok(ctx, f"Kicked {target.nick}{note}.", events, actions)


def _hangup(ctx: _Ctx) -> CommandPlan:
    target = _target(ctx, ctx.parsed.arg("nick"), in_call=True)
    if isinstance(target, CommandPlan):
        return target
    if _outranks(target, ctx.issuer):
        return _fail(ctx, f"You may not hang up on {target.nick}: they are a room "
                     f"{target.affiliation}.")  # fmt: skip
    why = f"hung up by {ctx.issuer.nick or ctx.issuer.actor}"
    actions: list[Effect] = []
    for leg in target.leg_ids:
        if target.accepts_messages:
            actions.append(SendSipMessage(leg, "A moderator ended your call."))
        actions.append(HangupLeg(leg, why))
    return _ok(ctx, f"Hanging up {target.nick}.", (), actions)


def _link(ctx: _Ctx) -> CommandPlan:
    view = ctx.view
    uri = ctx.parsed.arg("uri")
    if view.linked:
        current = view.external_uri or view.sip_uri or view.conference
        return _fail(ctx, f"This room is already linked to {current}; {ctx.prefix}unlink first.")
    action = LinkConference(view.room_jid, uri, ctx.issuer.actor)
    text = (
        f"Linking to {uri}: the bridge dials in."
        if uri
        else "Linking: creating the room's SIP URI."
    )
    return _ok(ctx, text, (), [action])


def _unlink(ctx: _Ctx) -> CommandPlan:
    view = ctx.view
    reason = f"unlinked by {ctx.issuer.nick or ctx.issuer.actor}"
    event = RoomDestroyed(event_id=f"{ctx.event_id}:0", room=view.conference, origin="muc",
                          actor=ctx.issuer.actor, at=ctx.now, reason=reason)  # fmt: skip
    on_call = sum(1 for p in view.participants if p.in_call)
    extra = f"; {on_call} caller(s) are told and hung up" if on_call else ""
    return _ok(ctx, f"Unlinked from {view.conference}{extra}.", [event],
               [UnlinkConference(view.room_jid, view.conference, ctx.issuer.actor)])  # fmt: skip


def _lock(ctx: _Ctx) -> CommandPlan:
    locked = ctx.parsed.name == "lock"
    if ctx.view.locked == locked:
        return _ok(ctx, f"The conference is already {'locked' if locked else 'unlocked'}.")
    text = ("Locked: new callers are refused." if locked
            else "Unlocked: new callers may join.")  # fmt: skip
    return _ok(ctx, text, (), [SetLocked(ctx.view.conference, locked, ctx.issuer.actor)])


def _pin(ctx: _Ctx) -> CommandPlan:
    value = ctx.parsed.arg("pin")
    if value == "off":
        if not ctx.view.pin_set:
            return _ok(ctx, "No PIN was set.")
        return _ok(ctx, "PIN removed: callers join directly.", (),
                   [SetPin(ctx.view.conference, None, ctx.issuer.actor)])  # fmt: skip
    return _ok(
        ctx,
        f"PIN set ({len(value)} digits): new callers must enter it followed by #. "
        "Callers already on the call stay.",
        (),
        [SetPin(ctx.view.conference, value, ctx.issuer.actor)],
    )


def _dial(ctx: _Ctx) -> CommandPlan:
    target = ctx.parsed.arg("target")
    is_number = not target.lower().startswith(("sip:", "sips:"))
    action = DialOut(ctx.view.conference, target, is_number, ctx.issuer.actor,
                     ctx.issuer.nick)  # fmt: skip
    return _ok(ctx, f"Dialling {target}; progress will be reported here.", (), [action])


_PLANNERS = {
    "help": _help,
    "status": _status,
    "link": _link,
    "unlink": _unlink,
    "mute": _mute,
    "unmute": _mute,
    "kick": _kick,
    "hangup": _hangup,
    "dial": _dial,
    "lock": _lock,
    "unlock": _lock,
    "pin": _pin,
}
assert set(_PLANNERS) == set(COMMANDS), "every command in the table needs a planner"

__all__ = [
    "COMMANDS",
    "MAX_COMMAND_CHARS",
    "ArgSpec",
    "CommandAction",
    "CommandPlan",
    "CommandReply",
    "CommandSpec",
    "DialOut",
    "Effect",
    "FieldSpec",
    "Issuer",
    "KickOccupant",
    "LinkConference",
    "NickError",
    "ParseError",
    "ParsedCommand",
    "Participant",
    "Refusal",
    "RoomView",
    "SetLocked",
    "SetPin",
    "UnlinkConference",
    "authorize",
    "check_arg",
    "help_text",
    "is_command",
    "lookup",
    "parse_command",
    "parse_form",
    "plan_command",
    "resolve_nick",
]
