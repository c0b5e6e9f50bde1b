"""A tiny UDP SIP user agent for tests: hand-written requests, full view of the responses.

Just enough of RFC 3261 for one dialog at a time: INVITE (+ACK, CANCEL, BYE), in-dialog
and out-of-dialog MESSAGE, INFO, answering requests the bridge sends (MESSAGE, BYE).
Lets tests check status codes and headers exactly and send deliberately broken SIP.
"""

from __future__ import annotations

import itertools
import secrets
import socket
import time
from dataclasses import dataclass, field

SDP = (
    "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


@dataclass
class Message:
    first_line: str
    headers: list[tuple[str, str]]
    body: str
    raw: str

    @property
    def status(self) -> int:
        parts = self.first_line.split()
        return int(parts[1]) if self.first_line.startswith("SIP/2.0") else 0

    @property
    def method(self) -> str:
        return "" if self.first_line.startswith("SIP/2.0") else self.first_line.split()[0]

    def get(self, name: str) -> str:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return ""

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def parse(text: str) -> Message:
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    compact = {
        "f": "From",
        "t": "To",
        "i": "Call-ID",
        "m": "Contact",
        "v": "Via",
        "c": "Content-Type",
        "l": "Content-Length",
    }
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        k = k.strip()
        headers.append((compact.get(k.lower(), k), v.strip()))
    return Message(lines[0], headers, body, text)


@dataclass
class RawUac:
    target_port: int
    user: str = "raw"
    display: str = "Raw Tester"
    sock: socket.socket = field(init=False)
    call_id: str = field(init=False)
    tag: str = field(init=False)
    remote_tag: str = ""
    remote_target: str = ""
    room: str = ""
    cseq: itertools.count[int] = field(init=False)
    received: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.rtp_port = self.port + 0  # nothing listens there: no RTP is sent back
        self.call_id = secrets.token_hex(8) + "@raw"
        self.tag = secrets.token_hex(4)
        self.cseq = itertools.count(1)

    def close(self) -> None:
        self.sock.close()

    # ------------------------------------------------------------------ wire
    def send(self, text: str, port: int | None = None) -> None:
        self.sock.sendto(text.encode(), ("127.0.0.1", port or self.target_port))

    def recv(self, timeout: float = 5.0) -> Message | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        msg = parse(data.decode(errors="replace"))
        self.received.append(msg)
        return msg

    def _via(self) -> str:
        return f"SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch=z9hG4bK{secrets.token_hex(6)}"

    def request(
        self,
        method: str,
        uri: str,
        *,
        headers: tuple[str, ...] = (),
        body: str = "",
        ctype: str = "",
        cseq: int | None = None,
        via: str | None = None,
        to_tag: str = "",
    ) -> str:
        n = next(self.cseq) if cseq is None else cseq
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: {via or self._via()}",
            "Max-Forwards: 70",
            f'From: "{self.display}" <sip:{self.user}@127.0.0.1:{self.port}>;tag={self.tag}',
            f"To: <sip:{self.room or 'x'}@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {self.call_id}",
            f"CSeq: {n} {method}",
            f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>",
            *headers,
        ]
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        lines.append(f"Content-Length: {len(body.encode())}")
        text = "\r\n".join(lines) + "\r\n\r\n" + body
        self.send(text)
        return text

    def final_response(self, method: str, timeout: float = 10.0) -> Message:
        """Wait for the final response to ``method``, answering requests meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.recv(max(0.05, deadline - time.monotonic()))
            if msg is None:
                break
            if msg.method:
                self.answer(msg)
                continue
            if msg.get("CSeq").split()[-1] == method and msg.status >= 200:
                return msg
        raise TimeoutError(f"no final response to {method}")

    # ---------------------------------------------------------------- dialogs
    def invite(
        self,
        room: str,
        *,
        headers: tuple[str, ...] = (),
        sdp: str | None = None,
        ctype: str = "application/sdp",
        ack: bool = True,
        timeout: float = 10.0,
    ) -> Message:
        self.room = room
        body = SDP.format(port=self.rtp_port) if sdp is None else sdp
        self.invite_text = self.request(
            "INVITE", f"sip:{room}@127.0.0.1:{self.target_port}",
            headers=headers, body=body, ctype=ctype if body else "",
        )  # fmt: skip
        final = self.final_response("INVITE", timeout)
        self.invite_cseq = int(final.get("CSeq").split()[0])
        self.remote_tag = final.get("To").partition("tag=")[2].split(";")[0]
        contact = final.get("Contact")
        self.remote_target = contact[contact.find("<") + 1 : contact.find(">")] if contact else ""
        if ack:
            self.ack(final)
        return final

    def ack(self, final: Message) -> None:
        uri = (
            self.remote_target
            if final.status < 300
            else f"sip:{self.room}@127.0.0.1:{self.target_port}"
        )
        via = final.get("Via") if final.status >= 300 else None
        self.request("ACK", uri, cseq=self.invite_cseq, via=via, to_tag=self.remote_tag)

    def in_dialog(
        self, method: str, *, body: str = "", ctype: str = "", headers: tuple[str, ...] = ()
    ) -> Message:
        self.request(
            method, self.remote_target, body=body, ctype=ctype, headers=headers,
            to_tag=self.remote_tag,
        )  # fmt: skip
        return self.final_response(method)

    def bye(self) -> Message:
        return self.in_dialog("BYE")

    def answer(self, request: Message, status: int = 200) -> None:
        """Respond to a request the bridge sent (MESSAGE, BYE, re-INVITE …)."""
        if request.method == "ACK":
            return
        lines = [f"SIP/2.0 {status} OK"]
        lines += [f"Via: {v}" for v in request.get_all("Via")]
        to = request.get("To")
        if "tag=" not in to:
            to += f";tag={self.tag}"
        lines += [
            f"From: {request.get('From')}",
            f"To: {to}",
            f"Call-ID: {request.get('Call-ID')}",
            f"CSeq: {request.get('CSeq')}",
        ]
        body = ""
        if request.method == "INVITE" and status == 200:  # a session refresh (RFC 4028)
            body = SDP.format(port=self.rtp_port)
            lines += [
                f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>",
                "Content-Type: application/sdp",
            ]
        lines.append(f"Content-Length: {len(body.encode())}")
        self.send("\r\n".join(lines) + "\r\n\r\n" + body)

    def wait_request(self, method: str, timeout: float = 10.0) -> Message:
        """Next request of ``method`` from the bridge (answered 200; others answered too)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.recv(max(0.05, deadline - time.monotonic()))
            if msg is None:
                break
            if msg.method:
                self.answer(msg)
                if msg.method == method:
                    return msg
        raise TimeoutError(f"no {method} received")
