"""The demo's phones talk for as long as the demo runs, not for as long as a file lasts.

A demo caller (SIPp) dials a bare-bones UDP user agent written here, which answers and counts
the RTP that arrives: speech keeps coming after the caller's speech loop has ended once.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from bridge.demo.callers import CYCLE_S, CallerScript, prepare

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("sipp", "espeak-ng", "sox")),
    reason="needs sip-tester, espeak-ng and sox (scripts/bootstrap)",
)

SCRIPT = CallerScript(user="tess", display="Tess", sentences=("One, two, three, four.",),
                      first_half=True)  # fmt: skip


def _answer(sip: socket.socket, rtp_port: int) -> None:
    """200 OK to the first INVITE, with an SDP that sends the caller's RTP to ``rtp_port``."""
    while True:
        data, peer = sip.recvfrom(65535)
        text = data.decode(errors="replace")
        if text.startswith("INVITE "):
            break
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in ("via", "from", "call-id",
                                                                    "cseq")]  # fmt: skip
    to = next(h for h in head if h.lower().startswith("to:"))
    sdp = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")  # fmt: skip
    reply = "\r\n".join(["SIP/2.0 200 OK", *keep, f"{to};tag=uas1",
                         f"Contact: <sip:room@127.0.0.1:{sip.getsockname()[1]}>",
                         "Content-Type: application/sdp", f"Content-Length: {len(sdp)}", "",
                         sdp])  # fmt: skip
    sip.sendto(reply.encode(), peer)


def test_a_demo_phone_keeps_talking_after_its_speech_loop(tmp_path: Path) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sip,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp,
    ):
        sip.bind(("127.0.0.1", 0))
        rtp.bind(("127.0.0.1", 0))
        sip.settimeout(20)
        rtp.settimeout(5)
        caller = prepare(SCRIPT, "demo", sip.getsockname()[1], tmp_path / "tess")
        caller.sipp.start()
        try:
            _answer(sip, rtp.getsockname()[1])
            start = time.monotonic()
            loud: list[float] = []  # arrival times of packets that carry speech
            while (now := time.monotonic() - start) < 2.5 * CYCLE_S:
                packet = rtp.recv(2048)
                payload = np.frombuffer(packet[12:], dtype=np.uint8)
                if np.count_nonzero(payload < 0xF0) > 40:  # µ-law silence is 0xFF/0x7F
                    loud.append(now)
            assert not caller.stopped, caller.problem()
        finally:
            caller.stop()
    # one loop of speech on disk (8 kHz µ-law: a byte a sample), played again and again
    assert (tmp_path / "tess" / "speech.ulaw").stat().st_size == CYCLE_S * 8000
    assert any(t < CYCLE_S for t in loud), "speech in the first loop"
    assert any(CYCLE_S + 0.5 < t < 2 * CYCLE_S for t in loud), "speech again in the second loop"
