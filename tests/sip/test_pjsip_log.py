"""PJSIP's own log lines reach the log as structlog JSON events, never as console text."""

from __future__ import annotations

import json
import logging
import re
import socket
import time

import pytest

from bridge.config import LogSettings, SipSettings, WorkerSettings
from bridge.core.admission import RoomDirectory
from bridge.devstack.ports import free_udp_tcp_port
from bridge.sip import pjlog
from bridge.sip.pool import WorkerPool

from .conftest import rtp_range

# pjlib's console format: "17:21:31.242         sip_endpoint.c  Error processing packet …"
CONSOLE_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} ")

NO_CALL_ID = (
    "OPTIONS sip:demo@127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-log-test\r\n"
    "From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:demo@127.0.0.1>\r\n"
    "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def test_parse_sender_and_text() -> None:
    line = pjlog.parse(1, f"{'sip_endpoint.c':>22} Error processing packet: Missing Call-ID\n")
    assert line.sender == "sip_endpoint.c"
    assert line.text == "Error processing packet: Missing Call-ID"
    assert (line.level, line.pj_level) == (logging.ERROR, 1)


def test_parse_levels_and_long_senders() -> None:
    assert [pjlog.parse(n, "x y").level for n in range(7)] == [
        logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO,
        logging.DEBUG, logging.DEBUG, logging.DEBUG,
    ]  # fmt: skip
    cut = pjlog.parse(3, "a_very_long_object_nam said hi")  # pjlib cut the sender at 22
    assert (cut.sender, cut.text) == ("a_very_long_object_nam", "said hi")


def test_parse_keeps_a_multi_line_message_whole() -> None:
    head = f"{'pjsua_core.c':>22} TX 312 bytes Request msg OPTIONS:"
    dump = head + "\nOPTIONS sip:x SIP/2.0\r\nVia: …"
    line = pjlog.parse(4, dump)
    assert line.sender == "pjsua_core.c"
    assert line.text.startswith("TX 312 bytes") and "\nOPTIONS sip:x SIP/2.0" in line.text


def test_parse_other_sender_width() -> None:
    line = pjlog.parse(2, f"{'sip_endpoint.c':>14} Hello_there_everyone")  # 32-bit width
    assert (line.sender, line.text) == ("sip_endpoint.c", "Hello_there_everyone")


def test_worker_pjsip_lines_are_json(capfd: pytest.CaptureFixture[str]) -> None:
    """A datagram without Call-ID makes pjsip log an error in the worker: as JSON."""
    sip = SipSettings(port=free_udp_tcp_port(), rtp_port_start=rtp_range(), rtp_port_count=40)
    pool = WorkerPool(
        sip,
        WorkerSettings(pool_size=1, calls_per_worker=4),
        LogSettings(format="json", level="info"),  # type: ignore[arg-type]
        directory=RoomDirectory.create(("demo",)),
    )
    pool.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for port in (pool.front_port, *(s.port for s in pool.slots())):
                sock.sendto(NO_CALL_ID.format(port=port).encode(), ("127.0.0.1", port))
        time.sleep(1.0)
    finally:
        pool.stop()
    out, err = capfd.readouterr()
    text = out + err
    assert not [line for line in text.splitlines() if CONSOLE_LINE.match(line)]
    events = []
    for line in text.splitlines():
        if '"worker"' in line:  # every line a worker writes
            events.append(json.loads(line))
    pjsip = [e for e in events if e["event"] == pjlog.EVENT]
    assert any(
        e["sender"] == "sip_endpoint.c" and "Call-ID" in e["text"] and e["level"] == "error"
        for e in pjsip
    ), pjsip
