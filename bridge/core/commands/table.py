"""The owner command table (issue 8): names, arguments, privileges, limits and help texts.

One table drives the ``!command`` parser (:mod:`.grammar`), the XEP-0050 forms
(:mod:`bridge.xmpp.adhoc`), the help texts and :func:`authorize`. Pure.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

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
            return f"No command {shorten(command)!r}. " + help_text(prefix=prefix)
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


def shorten(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (user input quoted in replies)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
