"""Owner commands (issue 8): one table, one parser, one planner for ``!commands`` and XEP-0050.

Pure: no I/O, no clock, no slixmpp. The package is split along its seams: the table with
its help texts and privileges (:mod:`.table`), the grammar (:mod:`.grammar`), what the planner
works on and produces (:mod:`.model`), the planner (:mod:`.plan`) and the ``!status`` text
(:mod:`.status`); the names below are the API. Both front ends end in the same call chain:

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

from bridge.core.commands.grammar import (
    NickError,
    ParsedCommand,
    ParseError,
    check_arg,
    is_command,
    parse_command,
    parse_form,
    resolve_nick,
)
from bridge.core.commands.model import (
    CommandAction,
    CommandPlan,
    CommandReply,
    DialOut,
    Effect,
    Issuer,
    KickOccupant,
    LinkConference,
    Participant,
    RoomView,
    SetLocked,
    SetPin,
    UnlinkConference,
)
from bridge.core.commands.plan import plan_command
from bridge.core.commands.table import (
    COMMANDS,
    MAX_COMMAND_CHARS,
    ArgSpec,
    CommandSpec,
    FieldSpec,
    Refusal,
    authorize,
    help_text,
    lookup,
)

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
