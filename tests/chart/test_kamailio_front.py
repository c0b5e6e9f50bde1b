"""The chart's Kamailio front really follows a 302: a real kamailio (Debian package) on
loopback with the rendered configuration, a fake bridge front that redirects and a fake worker
that answers. The client sees only the worker's 200, never the 302."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from bridge.devstack.ports import free_port
from tests.chart.test_chart import SECRETS

CHART = Path(__file__).resolve().parents[2] / "charts" / "sipmuc-bridge"

pytestmark = pytest.mark.skipif(
    shutil.which("kamailio") is None, reason="Debian package kamailio absent"
)


def rendered_config() -> str:
    with helm.Chart.load(CHART) as chart:
        values = {**SECRETS, "kamailio": {"enabled": True}}
        files = chart.render(values, name="voice", namespace="t")
    for doc in yaml.safe_load_all(files["sipmuc-bridge/templates/kamailio.yaml"]):
        if doc and doc["kind"] == "ConfigMap":
            config: str = doc["data"]["kamailio.cfg"]
            return config
    raise AssertionError("no Kamailio ConfigMap rendered")


def udp_socket() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", free_port(socket.SOCK_DGRAM)))
    sock.settimeout(10)
    return sock, sock.getsockname()[1]


def headers(message: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in message.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        name, _, value = line.partition(":")
        out.setdefault(name.strip().lower(), []).append(value.strip())
    return out


def answer(request: str, status: str, extra: str = "") -> bytes:
    h = headers(request)
    vias = "".join(f"Via: {v}\r\n" for v in h["via"])
    rr = "".join(f"Record-Route: {v}\r\n" for v in h.get("record-route", []))
    return (
        f"SIP/2.0 {status}\r\n{vias}{rr}From: {h['from'][0]}\r\nTo: {h['to'][0]};tag=b1\r\n"
        f"Call-ID: {h['call-id'][0]}\r\nCSeq: {h['cseq'][0]}\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def receive_request(sock: socket.socket, method: str) -> tuple[str, tuple[str, int]]:
    while True:
        data, peer = sock.recvfrom(65535)
        text = data.decode()
        if text.startswith(method + " "):
            return text, peer


def test_kamailio_follows_the_redirect_for_the_client(tmp_path: Path) -> None:
    client, client_port = udp_socket()
    front, front_port = udp_socket()
    worker, worker_port = udp_socket()
    kamailio_port = free_port(socket.SOCK_DGRAM)
    config = rendered_config()
    config = re.sub(
        r'#!substdef "!BRIDGE_URI!.*!g"',
        f'#!substdef "!BRIDGE_URI!sip:127.0.0.1:{front_port}!g"',
        config,
    )
    config = config.replace("0.0.0.0:5060", f"127.0.0.1:{kamailio_port}")
    (tmp_path / "kamailio.cfg").write_text(config)
    (tmp_path / "run").mkdir()
    log = open(tmp_path / "kamailio.log", "w")  # noqa: SIM115 (closed in finally)
    process = subprocess.Popen(
        [
            "kamailio",
            "-DD",
            "-E",
            "-Y",
            str(tmp_path / "run"),
            "-f",
            str(tmp_path / "kamailio.cfg"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    try:
        invite = (
            f"INVITE sip:room1@127.0.0.1:{kamailio_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{client_port};branch=z9hG4bK-test1;rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:alice@127.0.0.1:{client_port}>;tag=a1\r\n"
            f"To: <sip:room1@127.0.0.1:{kamailio_port}>\r\n"
            "Call-ID: kamailio-front-test@127.0.0.1\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:alice@127.0.0.1:{client_port}>\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        deadline = time.monotonic() + 30
        front.settimeout(0.2)
        request = None
        while request is None and time.monotonic() < deadline:  # kamailio is starting up
            client.sendto(invite, ("127.0.0.1", kamailio_port))
            try:
                request, peer = receive_request(front, "INVITE")
            except TimeoutError:
                assert process.poll() is None, (tmp_path / "kamailio.log").read_text()
        assert request is not None, "kamailio never relayed the INVITE to the bridge front"
        contact = f"Contact: <sip:room1@127.0.0.1:{worker_port}>\r\n"
        front.sendto(answer(request, "302 Moved Temporarily", contact), peer)

        redirected, peer = receive_request(worker, "INVITE")
        assert redirected.startswith(f"INVITE sip:room1@127.0.0.1:{worker_port} SIP/2.0")
        assert headers(redirected)["call-id"] == ["kamailio-front-test@127.0.0.1"]
        worker.sendto(
            answer(redirected, "200 OK", f"Contact: <sip:room1@127.0.0.1:{worker_port}>\r\n"), peer
        )

        statuses = []
        while not statuses or statuses[-1] < 200:
            data, _ = client.recvfrom(65535)
            statuses.append(int(data.decode().split(" ", 2)[1]))
        assert statuses[-1] == 200
        assert 302 not in statuses
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # kamailio forks children: its own group
        process.wait(timeout=30)
        log.close()
        for sock in (client, front, worker):
            sock.close()
