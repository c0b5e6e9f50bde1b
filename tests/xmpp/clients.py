"""A real chat user in a MUC room, for tests: slixmpp ClientXMPP over the fixture's c2s port.

Reusable by any test that needs "someone in the room" (relay, mirroring of moderation):

    async with chat_user(prosody, "alice") as alice:
        await alice.join(room, "Alice")
        await alice.wait_for(lambda: "Bob" in alice.occupants)
        await alice.say(room, "hello")
        message = await alice.next_message(lambda m: m.nick == "Bob")
        await alice.kick(room, "Bob")

Everything waits for events with generous timeouts, then the test asserts (no timed asserts).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from slixmpp import JID, ClientXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from bridge.devstack.prosody import ProsodyServer
from bridge.xmpp import muc
from bridge.xmpp.forms import ROOMCONFIG_FORM_TYPE

WAIT = 10.0  # generous: shared, noisy CI machine


@dataclass(frozen=True)
class Received:
    """A message as a chat user saw it."""

    room: str
    nick: str
    type: str
    body: str
    subject: str = ""
    thread: str = ""
    lang: str = ""
    delayed: bool = False
    to: str = ""
    has_subject: bool = False  # a <subject/> element, even an empty one (cleared subject)


@dataclass
class SeenOccupant:
    nick: str
    role: str
    affiliation: str
    jid: str = ""
    status: str = ""


@dataclass
class RoomView:
    occupants: dict[str, SeenOccupant] = field(default_factory=dict)
    self_nick: str = ""
    joined: bool = False
    left_codes: dict[str, frozenset[int]] = field(default_factory=dict)


class ChatUser:
    """One logged-in XMPP user; tracks occupants and messages of the rooms it joined."""

    def __init__(self, jid: str, password: str, host: str, port: int) -> None:
        self.client = ClientXMPP(jid, password)
        self.client.register_plugin("xep_0030")
        self.client.register_plugin("xep_0004")
        self.client.register_plugin("xep_0045")
        self.client.register_plugin("xep_0199")
        # Loopback test server without certificates: plaintext stream, PLAIN allowed.
        self.client.enable_plaintext = True
        self.client.enable_starttls = False
        self.client.enable_direct_tls = False
        self.client.plugin["feature_mechanisms"].unencrypted_plain = True
        self.host, self.port = host, port
        self.rooms: dict[str, RoomView] = {}
        self.messages: list[Received] = []
        self._changed = asyncio.Event()
        self.client.register_handler(
            Callback("TestMucPresence", StanzaPath("presence"), self._on_presence)
        )
        self.client.register_handler(
            Callback("TestMucMessage", StanzaPath("message"), self._on_message)
        )

    @property
    def jid(self) -> JID:
        return self.client.boundjid

    async def connect(self) -> None:
        self.client.connect(self.host, self.port)
        await self.client.wait_until("session_start", WAIT)

    async def close(self) -> None:
        if self.client.is_connected():
            await self.client.disconnect(wait=1.0)

    # ---- waiting -----------------------------------------------------------------------

    def _touch(self) -> None:
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], within: float = WAIT) -> None:
        """Wait until ``predicate()`` holds (re-checked after every stanza)."""

        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), within)

    async def next_message(
        self, predicate: Callable[[Received], bool], within: float = WAIT, start: int = 0
    ) -> Received:
        """The first message (from index ``start``) matching ``predicate``."""
        found: list[Received] = []

        def check() -> bool:
            found[:] = [m for m in self.messages[start:] if predicate(m)]
            return bool(found)

        await self.wait_for(check, within)
        return found[0]

    def occupants(self, room: str) -> dict[str, SeenOccupant]:
        return self.rooms.setdefault(str(JID(room).bare), RoomView()).occupants

    # ---- rooms ----------------------------------------------------------------------------

    async def join(self, room: str, nick: str, within: float = WAIT) -> RoomView:
        """Join and wait for our self-presence; raises on a join error."""
        view = self.rooms.setdefault(room, RoomView())
        view.joined = False
        view.self_nick = nick
        self.client.plugin["xep_0045"].make_join_stanza(JID(room), nick, maxstanzas=0).send()
        await self.wait_for(lambda: view.joined or nick in view.left_codes, within)
        if not view.joined:
            raise RuntimeError(f"{self.jid} could not join {room} as {nick}")
        return view

    async def leave(self, room: str) -> None:
        view = self.rooms[room]
        self.client.send_presence(pto=f"{room}/{view.self_nick}", ptype="unavailable")
        await self.wait_for(lambda: not view.joined)

    async def change_nick(self, room: str, nick: str, within: float = WAIT) -> None:
        """Change our nick in ``room`` (XEP-0045 §7.6) and wait for the room to confirm."""
        view = self.rooms[room]
        self.client.send_presence(pto=f"{room}/{nick}")
        await self.wait_for(lambda: view.joined and nick in view.occupants, within)
        view.self_nick = nick

    async def say(self, room: str, body: str, **fields: str) -> None:
        message = self.client.make_message(mto=JID(room), mbody=body, mtype="groupchat")
        for key, value in fields.items():
            message[key] = value
        message.send()

    async def whisper(self, room: str, nick: str, body: str) -> None:
        self.client.make_message(mto=JID(f"{room}/{nick}"), mbody=body, mtype="chat").send()

    async def roominfo(self, room: str) -> dict[str, Any]:
        """The room's disco#info extended form (muc#roominfo) as var → value."""
        info = await self.client.plugin["xep_0030"].get_info(jid=JID(room), timeout=WAIT)
        form = info["disco_info"].get_plugin("form", check=True)
        if form is None:
            return {}
        return {var: f["value"] for var, f in form.get_fields().items()}

    async def configure(self, room: str, values: dict[str, str]) -> None:
        """Submit the owner configuration form with these field values (var → value)."""
        form = self.client.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", ftype="hidden", value=ROOMCONFIG_FORM_TYPE)
        for var, value in values.items():
            form.add_field(var=var, value=value)
        await self.client.plugin["xep_0045"].set_room_config(JID(room), form)

    async def set_role(self, room: str, nick: str, role: str, reason: str = "") -> None:
        await self.client.plugin["xep_0045"].set_role(JID(room), nick, role, reason=reason)

    async def kick(self, room: str, nick: str, reason: str = "") -> None:
        await self.set_role(room, nick, "none", reason)

    async def set_affiliation(self, room: str, jid: str, affiliation: str) -> None:
        await self.client.plugin["xep_0045"].set_affiliation(JID(room), affiliation, jid=JID(jid))

    # ---- stanza handlers ------------------------------------------------------------------

    def _on_presence(self, presence: Any) -> None:
        room = presence["from"].bare
        view = self.rooms.get(room)
        nick = presence["from"].resource
        if view is None or not nick:
            return
        if presence["type"] == "error":
            view.left_codes[nick] = frozenset()
            self._touch()
            return
        info = muc.parse_muc_presence(presence.xml, nick)
        if info.available:
            view.occupants[nick] = SeenOccupant(
                nick, info.role, info.affiliation, info.jid, presence["status"]
            )
            view.left_codes.pop(nick, None)
            if info.is_self:
                view.joined = True
        else:
            view.occupants.pop(nick, None)
            view.left_codes[nick] = info.status_codes
            if info.is_self:
                view.joined = False
        self._touch()

    def _on_message(self, message: Any) -> None:
        xml = message.xml
        subject = xml.find(f"{{{message.namespace}}}subject")
        self.messages.append(
            Received(
                room=message["from"].bare,
                nick=message["from"].resource,
                type=message["type"],
                body=message["body"],
                subject=(subject.text or "") if subject is not None else "",
                thread=message["thread"],
                lang=message["lang"],
                delayed=muc.is_delayed(xml),
                to=str(message["to"]),
                has_subject=subject is not None,
            )
        )
        self._touch()


@asynccontextmanager
async def chat_user(prosody: ProsodyServer, user: str) -> AsyncIterator[ChatUser]:
    """A connected chat user (``user`` must be in ``prosody.users``); disconnects after."""
    person = ChatUser(prosody.jid(user), prosody.users[user], "127.0.0.1", prosody.c2s_port)
    await person.connect()
    try:
        yield person
    finally:
        await person.close()


@asynccontextmanager
async def anonymous_user(domain: str, port: int) -> AsyncIterator[ChatUser]:
    """A connected SASL ANONYMOUS user (servers configured for anonymous logins)."""
    person = ChatUser(domain, "", "127.0.0.1", port)
    await person.connect()
    try:
        yield person
    finally:
        await person.close()


class Recorder:
    """A BridgedRoom ``sink`` that keeps every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._changed = asyncio.Event()

    def __call__(self, event: Any) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(
        self, predicate: Callable[[Any], bool], within: float = WAIT, start: int = 0
    ) -> Any:
        """The first event (from index ``start``) matching ``predicate``."""

        async def loop() -> Any:
            while True:
                for event in self.events[start:]:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(loop(), within)
