"""The bridge's XEP-0114 external component: connection, reconnection, room registry.

One component serves every linked room of the node. Stanzas from a room are dispatched to its
``BridgedRoom``; connection loss marks every room out and a reconnect (with backoff) rejoins
them all (DESIGN §5: a crash leaves puppets behind until reconciled).
"""

from __future__ import annotations

import asyncio
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any

from slixmpp import JID, ComponentXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from bridge import metrics
from bridge.config import XmppSettings
from bridge.core.events import LegJoined
from bridge.logs import get_logger
from bridge.xmpp.events import RoomEvent
from bridge.xmpp.room import BridgedRoom

log = get_logger(__name__)


class XmppUnavailable(Exception):
    """The component could not reach or authenticate with the XMPP server."""


def _puppet_key(settings: XmppSettings) -> bytes:
    configured = settings.puppet_key.get_secret_value()
    if configured:
        return configured.encode("utf-8")
    secret = settings.secret.get_secret_value().encode()
    return hashlib.sha256(b"sipmuc puppet ids\0" + secret).digest()


class BridgeComponent(ComponentXMPP):
    """slixmpp component with the settings we always want (see DESIGN §5)."""

    def __init__(self, settings: XmppSettings, *, puppet_key: bytes | None = None) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            settings.component_jid,
            settings.secret.get_secret_value(),
            host=settings.host,
            port=settings.port,
            # Without it slixmpp reads every error as feature-not-implemented.
            fix_error_ns=True,
            # One component joins rooms as many occupants (control + puppets).
            plugin_config={"xep_0045": {"multi_from": True}},
        )
        self.settings = settings
        # Every plugin that adds a disco#info feature is loaded here, before the first
        # presence: the XEP-0115 hash those presences carry is computed from that info.
        for plugin in ("xep_0030", "xep_0004", "xep_0045", "xep_0050", "xep_0199", "xep_0410"):
            self.register_plugin(plugin)
        # Keyed so that puppet JIDs do not reveal callers' numbers (see bridge.xmpp.jids).
        # Its own setting, so that rotating the component secret renames no puppet (bans
        # and affiliations name puppet JIDs); derived from the secret only when unset.
        self.puppet_key = puppet_key or _puppet_key(settings)
        self.rooms: dict[str, BridgedRoom] = {}
        self.online = False
        self._closing = False
        self._lost = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._module_missing_noted = False
        #: groupchat copies addressed to puppets, dropped before any stanza object was built
        self.groupchat_copies_dropped = 0
        for name, path in (("BridgeRoomPresence", "presence"), ("BridgeRoomMessage", "message")):
            self.register_handler(Callback(name, StanzaPath(path), self._dispatch))
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("disconnected", self._on_disconnected)

    @property
    def control_jid(self) -> JID:
        """The control occupant's real JID: the component's own domain."""
        return JID(self.boundjid.bare)

    # ---- rooms ---------------------------------------------------------------------------

    async def link_room(
        self,
        room_jid: str,
        sip_uri: str,
        *,
        legs: Iterable[LegJoined] = (),
        sink: Callable[[RoomEvent], None] | None = None,
    ) -> BridgedRoom:
        """Bridge ``room_jid`` to the conference at ``sip_uri`` and join it (when online).

        ``legs`` are the callers already in the call (start-up after a crash): they are
        known before the first sync so that their puppets are kept, not removed as ghosts.
        """
        room = BridgedRoom(self, room_jid, sip_uri, sink=sink)
        key = str(room.jid)
        if key in self.rooms:
            raise ValueError(f"room {key} is already linked")
        self.rooms[key] = room
        for leg in legs:
            await room.caller_joined(leg)
        if self.online:
            await room.sync()
        return room

    async def unlink_room(self, room_jid: str) -> None:
        """Stop bridging: withdraw the advertised URI, puppets and control occupant leave."""
        room = self.rooms.pop(str(JID(room_jid)), None)
        if room is not None:
            await room.close(unlink=True)

    def note_module_missing(self, room: str) -> None:
        """Say once per process that the server lacks mod_muc_audio_video_uri."""
        if not self._module_missing_noted:
            self._module_missing_noted = True
            log.warning(
                "xmpp.audio_video_uri_unsupported",
                room=room,
                fallback="room description",
                hint="load bridge/prosody/mod_muc_audio_video_uri.lua on the MUC component "
                "to publish audio-video-uri in disco#info",
            )
        else:
            log.info("room.advertised_in_description", room=room)

    def _spawn_event(self, xml: ET.Element) -> None:
        """Drop the room's copies of a groupchat line addressed to our puppets, unparsed.

        A MUC sends every line to every occupant: with N puppets, N + 1 copies reach the
        component, and building a slixmpp stanza for each (plus every plugin's matchers)
        was the supervisor's hottest path at 60 callers. The control occupant's copy is the
        only one the bridge relays (``BridgedRoom.handle_message``), so the others stop here,
        on the raw element's ``type`` and ``to`` attributes. Errors, private messages and
        presences to puppets still go through.
        """
        if (
            xml.get("type") == "groupchat"
            and xml.tag.endswith("}message")
            and xml.get("to", "") != self.boundjid.bare
        ):
            self.groupchat_copies_dropped += 1
            return
        super()._spawn_event(xml)

    def _dispatch(self, stanza: Any) -> None:
        room = self.rooms.get(stanza["from"].bare)
        if room is None:
            return
        if stanza.name == "presence":
            room.handle_presence(stanza)
        else:
            room.handle_message(stanza)

    # ---- connection lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Connect (raising XmppUnavailable if the server is unusable at start-up), then
        keep the connection: reconnect with backoff whenever it drops."""
        await self.connect_and_wait()
        self._keeper = asyncio.get_running_loop().create_task(self._keep_connected())

    async def close(self) -> None:
        """Leave every room (puppets first) and disconnect cleanly."""
        self._closing = True
        for room in list(self.rooms.values()):
            await room.close()
        if self._keeper is not None:
            self._keeper.cancel()
        if self.online:
            await self.disconnect(wait=2.0, reason="bridge shutting down")

    def connection_suspect(self, reason: str) -> None:
        """The server stopped answering (self-ping timeout): drop the stream and reconnect."""
        log.warning("xmpp.connection_suspect", reason=reason)
        self.abort()

    async def _on_session_start(self, _: Any) -> None:
        self.online = True
        await self.refresh_caps()
        for room in self.rooms.values():
            room.schedule_sync()

    async def refresh_caps(self) -> None:
        """XEP-0115: the ``ver`` our presences carry must be the hash of the disco#info we
        answer for it. slixmpp computes it once, early, when a plugin registers; features
        added later (ad-hoc commands) make clients reject it ("verification strings do not
        match"), so it is computed again from the info as it is now."""
        await self.plugin["xep_0115"].update_caps(self.control_jid, broadcast=False)

    def _on_disconnected(self, reason: Any) -> None:
        was_online, self.online = self.online, False
        if was_online and self._closing:
            log.info("xmpp.disconnected", reason="bridge shutting down")
        elif was_online:
            log.warning("xmpp.disconnected", reason=str(reason) if reason else "connection lost")
        for room in self.rooms.values():
            room.went_offline("XMPP connection lost")
        self._lost.set()

    async def _keep_connected(self) -> None:
        initial = min(0.5, self.settings.reconnect_max_delay)
        delay = initial
        while not self._closing:
            await self._lost.wait()
            self._lost.clear()
            if self.online or self._closing:
                continue
            while not self._closing:
                await asyncio.sleep(delay)
                try:
                    await self.connect_and_wait()
                except XmppUnavailable as error:
                    delay = min(delay * 2, self.settings.reconnect_max_delay)
                    log.warning("xmpp.reconnect_failed", error=str(error), retry_in=delay)
                    continue
                delay = initial
                metrics.MUC_RECONNECTS.inc()
                self._lost.clear()
                if not self.online:
                    self._lost.set()
                break

    async def connect_and_wait(self) -> None:
        """Connect and wait for the handshake; raise XmppUnavailable with the reason.

        At start-up a wrong host, port or secret must stop the service with a clear message
        rather than retry silently forever.
        """
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[None] = loop.create_future()
        where = f"{self.settings.host}:{self.settings.port}"

        def settle(error: str | None) -> None:
            if outcome.done():
                return
            if error is None:
                outcome.set_result(None)
            else:
                outcome.set_exception(XmppUnavailable(error))

        def on_start(_: Any) -> None:
            settle(None)

        def on_failed(reason: Any) -> None:
            settle(f"cannot connect to XMPP server at {where}: {reason}")

        def on_stream_error(error: Any) -> None:
            condition = error["condition"] if error is not None else "unknown"
            settle(f"XMPP server at {where} refused the component: {condition}")

        handlers = {
            "session_start": on_start,
            "connection_failed": on_failed,
            "stream_error": on_stream_error,
        }
        for name, handler in handlers.items():
            self.add_event_handler(name, handler)
        try:
            self.connect()
            async with asyncio.timeout(self.settings.connect_timeout):  # never wait_for:
                await outcome  # it can swallow a cancel (see BridgedRoom._join)
        except TimeoutError:
            raise XmppUnavailable(
                f"no component handshake from {where} within "
                f"{self.settings.connect_timeout:g}s (wrong port or secret?)"
            ) from None
        except XmppUnavailable:
            self.cancel_connection_attempt()
            self.abort()
            raise
        finally:
            for name, handler in handlers.items():
                self.del_event_handler(name, handler)
        log.info("xmpp.connected", component=self.settings.component_jid, server=where)
