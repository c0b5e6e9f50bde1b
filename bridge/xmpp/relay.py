"""The text relay of one bridged room: callers' SIP MESSAGEs ⇄ groupchat, both ways.

Splits for SIP's size limit, limits rate per sender, tells a sender when something was not
delivered, and never echoes: stanzas the bridge sent are remembered by id, and messages from
the bridge's own nicks are not relayed (DESIGN §4). Who is in the room is the business of
:class:`bridge.xmpp.room.BridgedRoom`, which hands the puppets in.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum

from slixmpp import JID

from bridge.core.events import SendSipMessage, SipMessageReceived
from bridge.core.ratelimit import RateLimiter, occupant_key
from bridge.logs import get_logger
from bridge.protocol.stox import ChatText, UnsupportedContent, sip_to_xmpp, xmpp_to_sip
from bridge.xmpp.events import RoomEvent
from bridge.xmpp.host import RoomHost
from bridge.xmpp.members import Puppet

log = get_logger(__name__)


class RelayOutcome(StrEnum):
    """What became of a SIP MESSAGE (the SIP side picks its response code from it)."""

    SENT = "sent"  # 200
    IGNORED = "ignored"  # typing notification or empty: 200, nothing shown
    NOT_IN_ROOM = "not-in-room"  # no puppet for this leg (e.g. out-of-dialog): 403/404
    NOT_JOINED = "not-joined"  # puppet not in the room right now: 480
    QUEUED = "queued"  # puppet still joining: sent in order once it is in the room
    TOO_LONG = "too-long"  # 413, the caller was told
    RATE_LIMITED = "rate-limited"  # 486/503, the caller was told once
    UNSUPPORTED = "unsupported-content"  # 415


class Relay:
    """Text between one room and its callers. ``emit`` delivers ``SendSipMessage`` parts;
    ``sender`` is the control occupant's current nick (the bridge's own notices)."""

    def __init__(
        self,
        host: RoomHost,
        room_jid: JID,
        emit: Callable[[RoomEvent], None],
        sender: Callable[[], str],
    ) -> None:
        self.xmpp = host
        self.jid = room_jid
        self.settings = host.settings
        self._emit = emit
        self._sender = sender
        self._sent_ids: deque[str] = deque(maxlen=512)
        self._limiter = RateLimiter(
            self.settings.rate_limit_burst, self.settings.rate_limit_per_minute
        )

    def forget(self, leg_id: str) -> None:
        """The caller left: drop its rate-limit budget."""
        self._limiter.forget("sip:" + leg_id)

    def sent_by_us(self, stanza_id: str) -> bool:
        """A groupchat message the bridge itself sent (its echo must not be relayed)."""
        return stanza_id in self._sent_ids

    def from_caller(
        self, puppet: Puppet, message: SipMessageReceived, listeners: Iterable[Puppet]
    ) -> RelayOutcome:
        """A caller's SIP MESSAGE → a groupchat message from its puppet, and a SIP MESSAGE
        to each of the other ``listeners`` (present puppets)."""
        try:
            chat = sip_to_xmpp(message)
        except UnsupportedContent as error:
            log.info("relay.unsupported", room=str(self.jid), content_type=error.content_type)
            return RelayOutcome.UNSUPPORTED
        if chat is None:
            return RelayOutcome.IGNORED
        limit = self.settings.max_message_chars
        if len(chat.body) > limit:
            self.notice(
                puppet,
                f"Your message was not delivered: it has {len(chat.body)} characters, "
                f"the limit is {limit}.",
            )
            return RelayOutcome.TOO_LONG
        allowed, warn = self._limiter.allow("sip:" + puppet.leg_id, time.monotonic())
        if not allowed:
            if warn:
                self.notice(puppet, "You are sending messages too fast; some were not delivered.")
            log.info("relay.rate_limited", room=str(self.jid), leg_id=puppet.leg_id)
            return RelayOutcome.RATE_LIMITED
        if not (puppet.present and self.xmpp.online):
            return RelayOutcome.NOT_JOINED
        stanza = self.xmpp.make_message(
            mto=self.jid, mfrom=puppet.jid, mtype="groupchat", mbody=chat.body
        )
        if chat.subject:
            stanza["subject"] = chat.subject
        if chat.thread:
            stanza["thread"] = chat.thread
        if chat.lang:
            stanza["lang"] = chat.lang
        stanza["id"] = self.xmpp.new_id()
        self._sent_ids.append(stanza["id"])
        stanza.send()
        for other in listeners:
            if other.hears_room and other is not puppet:
                for part in xmpp_to_sip(
                    chat,
                    leg_id=other.leg_id,
                    sender_nick=puppet.nick,
                    max_bytes=self.settings.sip_message_max_bytes,
                ):
                    self._emit(part)
        return RelayOutcome.SENT

    def to_callers(
        self, nick: str, chat: ChatText, legs: Sequence[Puppet], *, key: str = ""
    ) -> None:
        """A groupchat message from occupant ``nick`` → a SIP MESSAGE to each caller.

        ``key`` names the sender for the rate limit (their real JID: a new nick does not
        buy a new budget; see :func:`bridge.core.ratelimit.occupant_key`)."""
        if not legs:
            return
        limit = self.settings.max_message_chars
        if len(chat.body) > limit:
            self.tell_occupant(
                nick,
                f"Not relayed to the phone callers: your message has {len(chat.body)} "
                f"characters, the limit is {limit}.",
            )
            return
        key = key or occupant_key("", "", nick)
        allowed, warn = self._limiter.allow("xmpp:" + key, time.monotonic())
        if not allowed:
            if warn:
                self.tell_occupant(
                    nick,
                    "You are writing faster than phone callers can be sent messages; "
                    "some were not relayed to them.",
                )
            log.info("relay.rate_limited", room=str(self.jid), nick=nick, key=key)
            return
        parts = 0
        for puppet in legs:
            for part in xmpp_to_sip(
                chat,
                leg_id=puppet.leg_id,
                sender_nick=nick,
                max_bytes=self.settings.sip_message_max_bytes,
            ):
                self._emit(part)
                parts += 1
        self._log_to_sip(nick, chat, len(legs), parts, private=False)

    def _log_to_sip(
        self, nick: str, chat: ChatText, legs: int, parts: int, *, private: bool
    ) -> None:
        """One event per relayed line (the other direction is ``relay.from_sip``): who and
        how much at info level, the text itself only at debug (what people say is theirs)."""
        log.info(
            "relay.to_sip",
            room=str(self.jid),
            nick=nick,
            legs=legs,
            parts=parts,
            chars=len(chat.body),
            correction=chat.correction,
            private=private,
        )
        log.debug("relay.to_sip.text", room=str(self.jid), nick=nick, text=chat.body)

    def private_to_caller(self, puppet: Puppet, nick: str, chat: ChatText, key: str = "") -> bool:
        """A private message from occupant ``nick`` to a puppet → SIP MESSAGE to its caller.

        Same length cap and same per-sender budget (``key``) as the groupchat relay: a
        private message costs the caller's phone the same SIP MESSAGEs. False: refused, and
        the sender was told why (the length every time, the rate once per run)."""
        limit = self.settings.max_message_chars
        if len(chat.body) > limit:
            self.tell_occupant(
                nick,
                f"Your private message to {puppet.nick} was not delivered: it has "
                f"{len(chat.body)} characters, the limit is {limit}.",
            )
            log.info("relay.private_too_long", room=str(self.jid), nick=nick,
                     chars=len(chat.body))  # fmt: skip
            return False
        key = key or occupant_key("", "", nick)
        allowed, warn = self._limiter.allow("xmpp:" + key, time.monotonic())
        if not allowed:
            if warn:
                self.tell_occupant(
                    nick,
                    f"You are sending messages to {puppet.nick} faster than a phone can take "
                    "them; some were not delivered.",
                )
            log.info("relay.rate_limited", room=str(self.jid), nick=nick, key=key)
            return False
        parts = 0
        for part in xmpp_to_sip(
            chat,
            leg_id=puppet.leg_id,
            sender_nick=f"{nick} (private)",
            max_bytes=self.settings.sip_message_max_bytes,
        ):
            self._emit(part)
            parts += 1
        self._log_to_sip(nick, chat, 1, parts, private=True)
        return True

    def rejected(self, puppet: Puppet, condition: str) -> None:
        """The room bounced a puppet's message: tell its caller why."""
        log.info("relay.rejected", room=str(self.jid), nick=puppet.nick, condition=condition)
        why = "you have no voice in this room" if condition == "forbidden" else condition
        self.notice(puppet, f"Your message was not delivered: {why}.")

    def tell_occupant(self, nick: str, text: str) -> None:
        """A private message from the control occupant to one chat occupant."""
        if self.xmpp.online:
            self.xmpp.send_message(
                mto=JID(f"{self.jid}/{nick}"),
                mbody=text,
                mtype="chat",
                mfrom=self.xmpp.control_jid,
            )

    def notice(self, puppet: Puppet, text: str) -> None:
        """A SIP MESSAGE from the bridge itself to one caller."""
        self._emit(SendSipMessage(leg_id=puppet.leg_id, body=text, sender_display=self._sender()))


__all__ = ["Relay", "RelayOutcome"]
