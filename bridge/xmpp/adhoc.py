"""The owner commands as XEP-0050 ad-hoc commands on the bridge component (issue 8).

Same table, same validation, same executor as the ``!commands`` typed in the room
(:mod:`bridge.core.commands`): one node per command on the component's JID, a XEP-0004 form
built from the table's field spec plus a ``room`` field (the MUC room to act on), and on
completion ``await execute(room_jid, issuer_jid, parsed)``.

The issuer is the IQ's ``from``: the full JID the issuer's own server stamped, which a client
cannot forge. Authorization belongs to the executor (so the room listener and this adapter
share it) and must ask the MUC service, not trust a nick: :func:`muc_affiliation` reads the
room's owner/admin/member/outcast lists as the component (an owner of the room) sees them.

Replies: ``ok`` → completed with an info note; ``failed`` → completed with an error note;
``refused`` → IQ error ``forbidden`` (XEP-0050 §4.6) with the refusal text; ``invalid`` →
``bad-request`` with the parser's message. A command may be run in one step (``execute``
carrying a submitted form) or two (``execute`` → form → ``complete``). Sessions live in a
:class:`~bridge.xmpp.adhoc_sessions.SessionStore`: finished ones are freed at once,
unfinished ones expire.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout, XMPPError
from slixmpp.jid import InvalidJID

from bridge.core.commands import (
    COMMANDS,
    CommandReply,
    CommandSpec,
    ParsedCommand,
    ParseError,
    Refusal,
    authorize,
    help_text,
    parse_form,
)
from bridge.logs import get_logger
from bridge.xmpp.adhoc_sessions import SessionStore

log = get_logger(__name__)

ROOM_FIELD = "room"
AFFILIATION_LISTS = ("owner", "admin", "member", "outcast")

Executor = Callable[[str, str, ParsedCommand], Awaitable[CommandReply]]


class AffiliationUnavailable(Exception):
    """The MUC service would not tell us the room's affiliations (no such room, the bridge
    is not an owner/admin there, server gone). Never read as "allowed"."""

    def __init__(self, room: str, condition: str, text: str = "") -> None:
        self.room = room
        self.condition = condition
        self.text = text
        detail = f" ({text})" if text else ""
        super().__init__(f"cannot read the affiliations of {room}: {condition}{detail}")


async def muc_affiliation(
    xmpp: Any, room_jid: str, issuer_jid: str, *, ifrom: str | JID, iq_timeout: float = 10.0
) -> str:
    """The issuer's affiliation in ``room_jid`` according to the MUC service.

    Reads the four affiliation lists (XEP-0045 §9.5, §10.5) as ``ifrom`` (the control JID,
    owner of the room) and looks for the issuer's bare JID; ``none`` if on none of them.
    Raises :class:`AffiliationUnavailable` when any list cannot be read.
    """
    bare = JID(issuer_jid).bare
    plugin = xmpp.plugin["xep_0045"]

    async def read(affiliation: str) -> list[Any]:
        try:
            return list(
                await plugin.get_affiliation_list(
                    JID(room_jid), affiliation, ifrom=JID(ifrom), timeout=iq_timeout
                )
            )
        except IqError as error:
            raise AffiliationUnavailable(
                room_jid, error.iq["error"]["condition"], error.iq["error"]["text"]
            ) from None
        except IqTimeout:
            raise AffiliationUnavailable(room_jid, "timeout") from None

    lists = await asyncio.gather(*(read(a) for a in AFFILIATION_LISTS))
    for affiliation, jids in zip(AFFILIATION_LISTS, lists, strict=True):
        if any(JID(j).bare == bare for j in jids):
            return affiliation
    return "none"


async def check_issuer(
    xmpp: Any,
    room_jid: str,
    issuer_jid: str,
    command: CommandSpec | str,
    *,
    ifrom: str | JID,
    role: str = "none",
) -> tuple[str, Refusal | None]:
    """(affiliation, refusal or None) for an executor: the MUC's affiliation lists plus the
    issuer's current ``role`` if the caller knows it (occupant presence; ``none`` when the
    issuer is not in the room, as for most ad-hoc users). A list that cannot be read refuses.
    """
    spec = command if isinstance(command, CommandSpec) else COMMANDS.get(command)
    name = spec.name if spec is not None else str(command)
    if spec is not None and spec.privilege == "anyone":
        return "none", None
    try:
        affiliation = await muc_affiliation(xmpp, room_jid, issuer_jid, ifrom=ifrom)
    except AffiliationUnavailable as error:
        return "none", Refusal(
            name, f"Cannot check your privileges in {room_jid}: {error.condition}."
        )
    return affiliation, authorize(spec or name, affiliation, role)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def _submitted(payload: Any) -> Mapping[str, str] | None:
    """Values of the submitted data form in a command payload (None: no submitted form)."""
    items = payload if isinstance(payload, list) else [payload]
    for item in items:
        if getattr(item, "plugin_attrib", "") == "form" and item["type"] in ("submit", ""):
            return {var: _text(value) for var, value in item.get_values().items()}
    return None


class AdhocCommands:
    """Registers every command of the table as an ad-hoc node on ``xmpp`` (a component).

    ``ifrom`` is not needed here: the executor does the MUC look-ups. ``muc_service``
    (optional) restricts the ``room`` field to rooms of that service.
    """

    def __init__(
        self,
        xmpp: Any,
        execute: Executor,
        *,
        muc_service: str = "",
        session_ttl: float = 300.0,
        max_sessions: int = 1000,
    ) -> None:
        self.xmpp = xmpp
        self.execute = execute
        self.muc_service = muc_service.lower()
        for plugin in ("xep_0030", "xep_0004", "xep_0050"):
            if plugin not in xmpp.plugin:
                xmpp.register_plugin(plugin)
        #: finished sessions are not kept, unfinished ones expire (slixmpp keeps them all)
        self.sessions = SessionStore(session_ttl, max_sessions)
        xmpp.plugin["xep_0050"].set_backend(self.sessions)

    def register(self, jid: str | JID | None = None) -> None:
        """Publish the nodes (disco#items of ``http://jabber.org/protocol/commands``)."""
        where = JID(jid) if jid is not None else JID(self.xmpp.boundjid.bare)
        adhoc = self.xmpp.plugin["xep_0050"]
        for spec in COMMANDS.values():
            adhoc.add_command(
                jid=where,
                node=spec.node,
                name=f"{spec.name}: {spec.summary}",
                handler=functools.partial(self._start, spec),
            )

    # ---- form ---------------------------------------------------------------------------

    def form_for(self, spec: CommandSpec) -> Any:
        form = self.xmpp.plugin["xep_0004"].make_form(
            ftype="form", title=spec.summary, instructions=spec.usage("!")
        )
        form.add_field(
            var=ROOM_FIELD,
            ftype="jid-single",
            label="Room (room@" + (self.muc_service or "conference.example.org") + ")",
            required=True,
        )
        for field in spec.fields():
            added = form.add_field(
                var=field.var, ftype=field.type, label=field.label, required=field.required
            )
            for option in field.options:
                added.add_option(label=option, value=option)
        return form

    # ---- handlers (slixmpp's xep_0050 calls them) -----------------------------------------

    async def _start(self, spec: CommandSpec, iq: Any, session: dict[str, Any]) -> dict[str, Any]:
        issuer = str(iq["from"])
        values = _submitted(session.get("payload"))
        if spec.name == "help":  # nothing to act on: answer from the table at once
            topic = (values or {}).get("command", "")
            return self._done(session, CommandReply("ok", help_text(topic, "!")))
        if values is not None:  # one step: the form came with the execute
            return await self._finish(spec, issuer, values, session)
        session["payload"] = self.form_for(spec)
        session["next"] = functools.partial(self._complete, spec, issuer)
        session["has_next"] = False
        return session

    async def _complete(
        self, spec: CommandSpec, issuer: str, payload: Any, session: dict[str, Any]
    ) -> dict[str, Any]:
        values = _submitted(payload)
        if values is None:
            self._forget(session)
            raise XMPPError("bad-request", text="Submit the command's form.", etype="modify")
        return await self._finish(spec, issuer, values, session)

    async def _finish(
        self, spec: CommandSpec, issuer: str, values: Mapping[str, str], session: dict[str, Any]
    ) -> dict[str, Any]:
        room = self._room(values.get(ROOM_FIELD, ""), session)
        parsed = parse_form(spec.name, values)
        if isinstance(parsed, ParseError):
            self._forget(session)
            raise XMPPError("bad-request", text=parsed.message, etype="modify")
        try:
            reply = await self.execute(room, issuer, parsed)
        except Exception as error:
            self._forget(session)
            log.exception("command.adhoc_failed", room=room, command=spec.name, actor=issuer)
            raise XMPPError(
                "internal-server-error", text=f"The bridge could not run {spec.name}.", etype="wait"
            ) from error
        if reply.status == "refused":
            self._forget(session)
            raise XMPPError("forbidden", text=reply.text, etype="auth")
        if reply.status == "invalid":
            self._forget(session)
            raise XMPPError("bad-request", text=reply.text, etype="modify")
        return self._done(session, reply)

    def _room(self, value: str, session: dict[str, Any]) -> str:
        try:
            jid = JID(value.strip())
        except InvalidJID:
            jid = JID()
        problem = ""
        if not jid.user or not jid.domain or jid.resource:
            problem = f"{value[:80]!r} is not a room JID (room@service)."
        elif self.muc_service and jid.domain.lower() != self.muc_service:
            problem = f"This bridge serves rooms of {self.muc_service} only."
        if problem:
            self._forget(session)
            raise XMPPError("bad-request", text=problem, etype="modify")
        return str(jid.bare)

    def _done(self, session: dict[str, Any], reply: CommandReply) -> dict[str, Any]:
        session["payload"] = None
        session["next"] = None
        session["has_next"] = False
        session["notes"] = [("info" if reply.ok else "error", reply.text)]
        return session

    def _forget(self, session: dict[str, Any]) -> None:
        """An error reply ends the session (slixmpp keeps it otherwise)."""
        self.xmpp.plugin["xep_0050"].sessions.pop(session.get("id"), None)


__all__ = [
    "AFFILIATION_LISTS",
    "ROOM_FIELD",
    "AdhocCommands",
    "AffiliationUnavailable",
    "Executor",
    "check_issuer",
    "muc_affiliation",
]
