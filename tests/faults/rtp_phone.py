"""A phone for fault tests: the raw SIP UAC plus its own RTP socket that speaks a PCMU tone
and keeps the level of every packet it hears, with the time it arrived."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time

import numpy as np

from bridge.sip.devpeers import ulaw_decode, ulaw_encode
from tests.e2e.conftest import ROOM, TRUSTED_PEER
from tests.sip.rawsip import SDP, Message, RawUac


class RtpPhone:
    """Dials ``ROOM`` as a caller behind the trusted PBX; ``speaking`` sends a 440 Hz tone
    (silence otherwise) every 20 ms to the media address of the bridge's answer."""

    def __init__(self, sip_port: int, user: str, display: str) -> None:
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.settimeout(0.1)
        self.uac = RawUac(
            sip_port, user=user, display=display, bind=TRUSTED_PEER,
            extra_headers=(f"P-Asserted-Identity: <sip:{user}@pbx.example>",),
        )  # fmt: skip
        self.speaking = False
        self.heard: list[tuple[float, int]] = []  # (time.time(), peak) per packet
        self._remote: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        tone = 8000 * np.sin(2 * np.pi * 440 * np.arange(160) / 8000)
        self._tone = ulaw_encode(tone.astype(np.int16))
        self._silence = ulaw_encode(np.zeros(160, np.int16))

    def dial(self) -> Message:
        sdp = SDP.format(port=self.rtp.getsockname()[1])
        final = self.uac.invite(ROOM, sdp=sdp)
        if final.status == 200:
            host = re.search(r"c=IN IP4 (\S+)", final.body)
            port = re.search(r"m=audio (\d+)", final.body)
            assert host and port, final.body
            self._remote = (host.group(1), int(port.group(1)))
            for target in (self._send, self._receive):
                thread = threading.Thread(target=target, daemon=True)
                thread.start()
                self._threads.append(thread)
        return final

    def _send(self) -> None:
        seq, ts, ssrc = 0, 0, 0x5EED
        next_t = time.monotonic()
        while not self._stop.is_set() and self._remote is not None:
            payload = self._tone if self.speaking else self._silence
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
            try:
                self.rtp.sendto(header + payload, self._remote)
            except OSError:
                return
            seq, ts = seq + 1, ts + 160
            next_t += 0.02
            time.sleep(max(0.0, next_t - time.monotonic()))

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.rtp.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) > 12 and data[1] & 0x7F == 0:
                peak = int(np.abs(ulaw_decode(data[12:]).astype(np.int32)).max())
                self.heard.append((time.time(), peak))

    def loud_between(self, start: float, end: float, level: int = 2000) -> int:
        """How many packets heard between two ``time.time()`` were louder than ``level``."""
        return sum(1 for t, peak in self.heard if start <= t < end and peak > level)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        self.uac.close()
        self.rtp.close()
