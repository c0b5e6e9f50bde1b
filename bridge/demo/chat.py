"""The demo's chat user: a plain slixmpp client (like any XMPP app) in the linked room.

It logs in over the local Prosody's c2s port, joins the room, reads the room's disco#info,
types, and — being a server admin, hence a room owner — moderates callers' puppets exactly
as a person would from Gajim or Conversations (``set_role`` = revoke voice).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slixmpp import JID, ClientXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from bridge.xmpp import muc

WAIT = 15.0


def tls_client(client: Any, ca_file: Path | None) -> None:
    """STARTTLS verified against ``ca_file`` (the demo's self-signed certificate), and no
    login without it; with no file, plaintext (test servers on loopback without TLS)."""
    client.enable_direct_tls = False
    if ca_file is not None:
        client.ca_certs = ca_file
        client.enable_starttls = True
        client.enable_plaintext = False
    else:
        client.enable_plaintext = True
        client.enable_starttls = False
        client.plugin["feature_mechanisms"].unencrypted_plain = True


@dataclass
class Occupant:
    nick: str
    role: str
    affiliation: str


@dataclass(frozen=True)
class ChatLine:
    nick: str
    body: str


@dataclass
class ChatUser:
    """One logged-in XMPP account in one room; ``changed`` fires after every stanza."""

    jid: str
    password: str
    port: int
    room: str
    nick: str
    changed: Callable[[], None] = lambda: None
    ca_file: Path | None = None  # the server's certificate: log in over STARTTLS, verified
    occupants: dict[str, Occupant] = field(default_factory=dict)
    lines: list[ChatLine] = field(default_factory=list)
    joined: bool = False
    client: Any = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self) -> None:
        client = ClientXMPP(self.jid, self.password)
        for plugin in ("xep_0030", "xep_0004", "xep_0045", "xep_0199"):
            client.register_plugin(plugin)
        tls_client(client, self.ca_file)
        client.register_handler(Callback("DemoPresence", StanzaPath("presence"), self._presence))
        client.register_handler(Callback("DemoMessage", StanzaPath("message"), self._message))
        self.client = client
        client.connect("127.0.0.1", self.port)
        await client.wait_until("session_start", WAIT)

    async def close(self) -> None:
        if self.client is not None and self.client.is_connected():
            await self.client.disconnect(wait=1.0)

    async def wait_for(self, predicate: Callable[[], object], within: float = WAIT) -> None:
        """Until ``predicate()`` holds, re-checked after each stanza (TimeoutError after)."""

        async def loop() -> None:
            while not predicate():
                self._wake.clear()
                await self._wake.wait()

        await asyncio.wait_for(loop(), within)

    async def join(self) -> None:
        xep = self.client.plugin["xep_0045"]
        xep.make_join_stanza(JID(self.room), self.nick, maxstanzas=0).send()
        await self.wait_for(lambda: self.joined)

    async def roominfo(self) -> dict[str, Any]:
        """The room's disco#info extended form (``muc#roominfo``) as var → value."""
        info = await self.client.plugin["xep_0030"].get_info(jid=JID(self.room), timeout=WAIT)
        form = info["disco_info"].get_plugin("form", check=True)
        if form is None:
            return {}
        return {var: f["value"] for var, f in form.get_fields().items()}

    def say(self, body: str) -> None:
        self.client.make_message(mto=JID(self.room), mbody=body, mtype="groupchat").send()

    async def set_role(self, nick: str, role: str, reason: str) -> None:
        await self.client.plugin["xep_0045"].set_role(JID(self.room), nick, role, reason=reason)

    def _touch(self) -> None:
        self._wake.set()
        self.changed()

    def _presence(self, presence: Any) -> None:
        if presence["from"].bare != JID(self.room).bare or not presence["from"].resource:
            return
        nick = presence["from"].resource
        if presence["type"] == "error":
            return
        info = muc.parse_muc_presence(presence.xml, nick)
        if info.available:
            self.occupants[nick] = Occupant(nick, info.role, info.affiliation)
            if info.is_self:
                self.joined = True
        else:
            self.occupants.pop(nick, None)
        self._touch()

    def _message(self, message: Any) -> None:
        if message["type"] == "groupchat" and message["body"]:
            self.lines.append(ChatLine(message["from"].resource, message["body"]))
            self._touch()
