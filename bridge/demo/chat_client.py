"""``sipmuc-bridge chat``: a small console XMPP client for the running demo's room.

It logs in as the demo's guest account over STARTTLS, verifying the demo's self-signed
certificate (the file the demo names, nothing is trusted blindly), joins the room, and then
prints what an XMPP user sees: who is there and on which side, who comes and goes, role
changes (a muted caller becomes a visitor), status lines (who is speaking on the phone),
the subject and every message; each line you type is sent to the room. Ctrl-C or ``/quit``
leaves. Any other XMPP client works the same way; this one needs nothing installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from slixmpp import JID, ClientXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from bridge.demo.chat import tls_client
from bridge.demo.endpoints import DemoNotRunning, Endpoints, default_workdir
from bridge.devstack.certs import fingerprint
from bridge.xmpp import muc

LOGIN_TIMEOUT_S = 15.0
NS_CORRECT = "urn:xmpp:message-correct:0"


@dataclass(frozen=True)
class ChatOptions:
    workdir: Path = field(default_factory=default_workdir)
    nick: str = ""  # default: the account name, capitalised
    duration: float = 0.0  # 0 = until Ctrl-C or /quit


@dataclass
class _Seen:
    role: str
    status: str


class ConsoleChat:
    """The client; ``out`` receives one line per thing a user would notice."""

    def __init__(self, endpoints: Endpoints, nick: str, out: TextIO) -> None:
        self.ep = endpoints
        self.nick = nick
        self.out = out
        self.room = JID(endpoints.muc_jid)
        self.occupants: dict[str, _Seen] = {}
        self.joined = asyncio.Event()
        self.done = asyncio.Event()
        self.client: Any = None

    def say(self, text: str) -> None:
        self.out.write(f"{text}\n")
        self.out.flush()

    async def run(self, duration: float) -> int:
        client = ClientXMPP(self.ep.guest_user, self.ep.guest_password)
        for plugin in ("xep_0030", "xep_0045", "xep_0199"):
            client.register_plugin(plugin)
        tls_client(client, Path(self.ep.certificate) if self.ep.certificate else None)
        client.register_handler(Callback("ChatPresence", StanzaPath("presence"), self._presence))
        client.register_handler(Callback("ChatMessage", StanzaPath("message"), self._message))
        client.add_event_handler("disconnected", lambda _: self.done.set())
        self.client = client
        self.say(f"chat: connecting to 127.0.0.1:{self.ep.c2s_port} as {self.ep.guest_user} …")
        client.connect("127.0.0.1", self.ep.c2s_port)
        try:
            await client.wait_until("session_start", LOGIN_TIMEOUT_S)
        except TimeoutError:
            self.say("chat: could not log in (is the demo still running? see its screen)")
            return 1
        self.say(f"chat: logged in; {self._tls_text()}")
        client.plugin["xep_0045"].make_join_stanza(self.room, self.nick, maxstanzas=0).send()
        try:
            await asyncio.wait_for(self.joined.wait(), LOGIN_TIMEOUT_S)
        except TimeoutError:
            self.say(f"chat: the room {self.room} did not let us in")
            await client.disconnect(wait=1.0)
            return 1
        here = ", ".join(
            f"{n} ({s.role})" for n, s in sorted(self.occupants.items()) if n != self.nick
        )
        self.say(f"chat: in {self.room} as {self.nick!r}; here: {here}")
        self.say("chat: type a line and Enter to send it to the room; /quit or Ctrl-C leaves")
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._read_stdin, args=(loop,), daemon=True).start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), duration or None)
        if client.is_connected():
            client.send_presence(pto=f"{self.room}/{self.nick}", ptype="unavailable")
            await client.disconnect(wait=1.0)
        self.say("chat: left the room")
        return 0

    def _tls_text(self) -> str:
        ssl_object = None
        transport = getattr(self.client, "transport", None)
        if transport is not None:
            ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return "the connection is NOT encrypted"
        der = ssl_object.getpeercert(binary_form=True) or b""
        return (f"encrypted ({ssl_object.version()}), server certificate SHA-256 "
                f"{fingerprint(der)}")  # fmt: skip

    def _read_stdin(self, loop: asyncio.AbstractEventLoop) -> None:
        for line in sys.stdin:
            text = line.strip()
            if text == "/quit":
                loop.call_soon_threadsafe(self.done.set)
                return
            if text:
                loop.call_soon_threadsafe(self._send, text)

    def _send(self, text: str) -> None:
        self.client.make_message(mto=self.room, mbody=text, mtype="groupchat").send()

    def _presence(self, presence: Any) -> None:
        sender = presence["from"]
        if sender.bare != self.room.bare or not sender.resource or presence["type"] == "error":
            return
        nick = sender.resource
        info = muc.parse_muc_presence(presence.xml, nick)
        status = str(presence["status"] or "")
        before = self.occupants.get(nick)
        if not info.available:
            self.occupants.pop(nick, None)
            if self.joined.is_set() and not info.is_self:
                why = {muc.KICKED: " (kicked)", muc.BANNED: " (banned)"}
                extra = "".join(why.get(c, "") for c in info.status_codes)
                self.say(f"{nick} left the room{extra}")
            return
        self.occupants[nick] = _Seen(info.role, status)
        if info.is_self:
            self.joined.set()
            return
        if not self.joined.is_set():
            return  # the room's list of who is already there, printed once on join
        if before is None:
            self.say(f"{nick} joined ({info.role})" + (f": {status}" if status else ""))
            return
        if before.role != info.role:
            self.say(f"{nick} is now a {info.role}" + (" (no voice)" if info.role == "visitor"
                                                       else ""))  # fmt: skip
        if before.status != status:
            self.say(f"{nick}: {status or '(no status)'}")

    def _message(self, message: Any) -> None:
        if message["type"] != "groupchat" or message["from"].bare != self.room.bare:
            return
        if message["subject"] and not message["body"]:
            self.say(f"subject: {message['subject']}")
            return
        body = str(message["body"] or "")
        if not body or muc.is_delayed(message.xml):
            return
        corrected = message.xml.find(f"{{{NS_CORRECT}}}replace") is not None
        nick = message["from"].resource or "(room)"
        self.say(f"{nick}{' (correction)' if corrected else ''}: {body}")


def run_chat(options: ChatOptions) -> int:
    try:
        endpoints = Endpoints.load(options.workdir)
    except DemoNotRunning as error:
        print(f"sipmuc-bridge chat: {error}", file=sys.stderr)
        return 1
    nick = options.nick or endpoints.guest_user.split("@")[0].capitalize()
    chat = ConsoleChat(endpoints, nick, sys.stdout)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, chat.done.set)
        return await chat.run(options.duration)

    return asyncio.run(main())
