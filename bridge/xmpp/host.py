"""What a bridged room needs from the component that carries it, as a protocol.

:class:`bridge.xmpp.component.BridgeComponent` is the one implementation; naming the needs
here lets the room modules use it without importing the component (which imports them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from slixmpp import JID

from bridge.config import XmppSettings

if TYPE_CHECKING:
    from slixmpp.pluginsdict import PluginsDict
    from slixmpp.stanza import Message


class RoomHost(Protocol):
    """The component's side of a room: settings, its stream, its JIDs and its plugins."""

    @property
    def settings(self) -> XmppSettings: ...

    @property
    def puppet_key(self) -> bytes: ...

    @property
    def online(self) -> bool: ...

    @property
    def boundjid(self) -> JID: ...

    @property
    def plugin(self) -> PluginsDict: ...

    @property
    def control_jid(self) -> JID: ...

    @property
    def make_message(self) -> Callable[..., Message]: ...

    @property
    def send_message(self) -> Callable[..., Any]: ...

    @property
    def send_presence(self) -> Callable[..., Any]: ...

    def new_id(self) -> str: ...

    def note_module_missing(self, room: str) -> None: ...

    def connection_suspect(self, reason: str) -> None: ...


__all__ = ["RoomHost"]
