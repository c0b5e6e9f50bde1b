"""The supervisor's BYE sender (bridge.sip.orphan_bye) against a phone socket on loopback:
retransmission per Timer E, the final answer ends it, Timer F bounds it, TCP is skipped,
and one event per dialog says how it went."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from bridge.sip import byemsg, orphan_bye
from bridge.sip.byemsg import DialogState
from bridge.sip.orphan_bye import Orphan


@pytest.fixture
def phone() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def orphan(port: int, transport: str = "udp", leg: str = "w0.0.1") -> Orphan:
    d = DialogState(
        "call-1@test", "<sip:room@127.0.0.1>;tag=ours", "<sip:ann@127.0.0.1>;tag=hers",
        f"sip:ann@127.0.0.1:{port}", (), transport, ("127.0.0.1", port),
    )  # fmt: skip
    return Orphan(leg, "room", 0, d, byemsg.bye_cseq(0))


def answer(sock: socket.socket, data: bytes, addr: tuple[str, int], status: int) -> None:
    """Answer per the Via (rport: back to the source), as RFC 3581 phones do."""
    head = data.decode().split("\r\n")
    keep = [ln for ln in head if ln.split(":", 1)[0] in ("Via", "From", "To", "Call-ID", "CSeq")]
    sock.sendto(("\r\n".join([f"SIP/2.0 {status} OK", *keep, "Content-Length: 0"])
                 + "\r\n\r\n").encode(), addr)  # fmt: skip


def test_a_bye_is_retransmitted_until_the_phone_answers(phone: socket.socket) -> None:
    with capture_logs() as logs:
        thread = orphan_bye.send_byes(
            [orphan(phone.getsockname()[1])], bind_host="127.0.0.1", via_host="127.0.0.1"
        )
        assert thread is not None
        first, _ = phone.recvfrom(65535)  # lost, say
        again, addr = phone.recvfrom(65535)  # Timer E: 0.5 s later
        assert first == again and first.startswith(b"BYE sip:ann@127.0.0.1:")
        answer(phone, again, addr, 200)
        thread.join(5)
    (event,) = [e for e in logs if e["event"] == "sip.worker.orphan_bye"]
    assert (event["outcome"], event["status"], event["tries"]) == ("answered", 200, 2)


def test_silence_ends_at_timer_f_and_tcp_is_skipped(phone: socket.socket) -> None:
    with capture_logs() as logs:
        thread = orphan_bye.send_byes(
            [orphan(phone.getsockname()[1]), orphan(5060, "tcp", "w0.0.2")],
            bind_host="127.0.0.1", via_host="127.0.0.1", timer_f=2.0,
        )  # fmt: skip
        assert thread is not None
        thread.join(10)
        assert not thread.is_alive()
    outcomes = {e["leg"]: e for e in logs if e["event"] == "sip.worker.orphan_bye"}
    assert outcomes["w0.0.1"]["outcome"] == "timeout"
    assert outcomes["w0.0.1"]["tries"] == 3  # at 0, 0.5 and 1.5 s
    assert outcomes["w0.0.2"]["outcome"] == "skipped"


def test_a_stopping_node_abandons_what_is_still_open(phone: socket.socket) -> None:
    stop = threading.Event()
    with capture_logs() as logs:
        thread = orphan_bye.send_byes(
            [orphan(phone.getsockname()[1])], bind_host="127.0.0.1", via_host="127.0.0.1",
            stop=stop,
        )  # fmt: skip
        assert thread is not None
        phone.recvfrom(65535)
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
    (event,) = [e for e in logs if e["event"] == "sip.worker.orphan_bye"]
    assert event["outcome"] == "abandoned"
