"""A tiny RFC 4575 watcher for the demo: SUBSCRIBE to the room's conference over UDP and
keep every NOTIFY the bridge sends (answering each with 200), so the demo shows the real
documents a SIP client would get rather than something rendered for the screen."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.protocol.conference_info import ConferenceInfo, ConferenceInfoError, apply_partial
from bridge.protocol.conference_info import parse as parse_document

_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "o": "event", "l": "content-length",
            "c": "content-type", "m": "contact"}  # fmt: skip


@dataclass
class _Sip:
    start: str
    headers: list[tuple[str, str]]
    body: bytes

    def get(self, name: str) -> str:
        return next((v for k, v in self.headers if k == name), "")

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


def _parse(data: bytes) -> _Sip | None:
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        lines = head.decode("utf-8").split("\r\n")
    except UnicodeDecodeError:
        return None
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            key = name.strip().lower()
            headers.append((_COMPACT.get(key, key), value.strip()))
    length = next((v for k, v in headers if k == "content-length"), "")
    return _Sip(lines[0], headers, body[: int(length)] if length.isdigit() else body)


@dataclass
class Notify:
    """One NOTIFY as received: its raw document and the merged conference state after it."""

    subscription_state: str
    raw: bytes
    state: ConferenceInfo | None


@dataclass
class ConferenceWatcher(asyncio.DatagramProtocol):
    """``await watcher.subscribe(port, room)``; ``notifies`` grows as the bridge notifies."""

    on_notify: Callable[[Notify], None] = lambda _: None
    notifies: list[Notify] = field(default_factory=list)
    status: int = 0  # final response to our SUBSCRIBE
    state: ConferenceInfo | None = None
    _transport: asyncio.DatagramTransport | None = None
    _answered: asyncio.Event = field(default_factory=asyncio.Event)
    _seen: set[str] = field(default_factory=set)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = _parse(data)
        if msg is None:
            return
        if msg.start.startswith("SIP/2.0 "):
            code = int(msg.start.split()[1])
            if code >= 200 and msg.get("cseq").endswith("SUBSCRIBE"):
                self.status = code
                self._answered.set()
            return
        if not msg.start.startswith("NOTIFY "):
            return
        reply = ["SIP/2.0 200 OK", *(f"Via: {v}" for v in msg.get_all("via"))]
        reply += [f"{h}: {msg.get(h.lower())}" for h in ("From", "To", "Call-ID", "CSeq")]
        reply.append("Content-Length: 0")
        assert self._transport is not None
        self._transport.sendto(("\r\n".join(reply) + "\r\n\r\n").encode(), addr)
        key = msg.get("cseq")
        if key in self._seen:
            return  # a retransmission
        self._seen.add(key)
        if msg.body:
            try:
                doc = parse_document(msg.body)
                self.state = doc if self.state is None else apply_partial(self.state, doc)
            except ConferenceInfoError:
                pass  # shown raw; the state keeps its last good value
        notify = Notify(msg.get("subscription-state"), msg.body, self.state)
        self.notifies.append(notify)
        self.on_notify(notify)

    async def subscribe(self, port: int, room: str, attempts: int = 20) -> int:
        """SUBSCRIBE to ``sip:room@127.0.0.1:port``; returns the final status code."""
        assert self._transport is not None
        local = self._transport.get_extra_info("sockname")[1]
        lines = [
            f"SUBSCRIBE sip:{room}@127.0.0.1:{port} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};rport;branch=z9hG4bK-{uuid.uuid4().hex}",
            "Max-Forwards: 70",
            f"From: <sip:watcher@127.0.0.1:{local}>;tag={uuid.uuid4().hex[:10]}",
            f"To: <sip:{room}@127.0.0.1:{port}>",
            f"Call-ID: {uuid.uuid4().hex}@demo-watcher",
            "CSeq: 1 SUBSCRIBE",
            f"Contact: <sip:watcher@127.0.0.1:{local}>",
            "Event: conference",
            "Accept: application/conference-info+xml",
            "Expires: 600",
            "Content-Length: 0",
        ]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        for _ in range(attempts):  # UDP: retransmit every 0.5 s until answered
            self._transport.sendto(data, ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), 0.5)
                break
        return self.status

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_watcher(on_notify: Callable[[Notify], None]) -> ConferenceWatcher:
    """A watcher bound to a free UDP port on 127.0.0.1."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: ConferenceWatcher(on_notify=on_notify), local_addr=("127.0.0.1", 0)
    )
    return protocol
