"""A bridge started with exactly the environment the chart renders (Helm SDK) comes up, binds
one address and tells callers another.

The rendered StatefulSet's environment (ConfigMap, downward API fields, secret files of the
projected volume) is what the process gets; the pod's fields are faked as a host-network pod
on "node" 127.0.0.2. The chart binds ``sip.bindAddress`` (127.0.0.1 here: tests never listen
on other addresses) and advertises the node address, so SIP Contact, SDP ``c=`` and the 302
that sends a caller to a worker all say 127.0.0.2, while every packet goes to 127.0.0.1. Its
TCP listener starts too (a published 0.0.0.0 made pjsip refuse it, PJ_EINVAL, exit 6).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bridge.devstack.ports import free_port, free_udp_tcp_port
from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer
from bridge.probe import http_ready
from tests.chart.test_chart import FULLNAME, bridge_container, materialise, render
from tests.e2e.test_mirroring import dial
from tests.sip.rawsip import RawUac

ROOM = "standup"
NODE_IP = "127.0.0.2"  # the address the pod advertises (its "node")


def chart_values(prosody: ProsodyServer, redis: RedisServer) -> dict[str, Any]:
    sip_port, worker_port = free_udp_tcp_port(), free_udp_tcp_port()
    return {
        "xmpp": {
            "componentJid": prosody.component_domain,
            "host": "127.0.0.1",
            "port": prosody.component_port,
            "mucService": prosody.muc_domain,
            "secret": prosody.component_secret,
            "puppetKey": "a-stable-puppet-key",
        },
        "sip": {
            "domain": "127.0.0.1",
            "port": sip_port,
            "bindAddress": "127.0.0.1",
            "transports": ["udp", "tcp"],
            "rtp": {"portStart": 10000 + sip_port % 20000, "portCount": 40},
        },
        "workers": {"poolSize": 2, "callsPerWorker": 1, "basePort": worker_port},
        "redis": {"mode": "external", "external": {"url": redis.url}},
        "http": {"port": free_port()},
        "realtime": {"enabled": False},
        "extraEnv": [
            {"name": "SIPMUC_ROOMS", "value": json.dumps([ROOM])},
            {"name": "SIPMUC_WORKERS__MEDIA_TIMEOUT", "value": "0"},
        ],
    }


def process_environment(docs: list[dict[str, Any]], secrets_dir: Path) -> dict[str, str]:
    """What the container gets: the rendered env, plus PATH/HOME as a runtime sets them."""
    env = materialise(
        docs, secrets_dir, **{"status.podIP": NODE_IP, "status.hostIP": NODE_IP}
    )
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return {**base, **env}


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    """Until ``url`` answers 200 (what the readiness probe waits for)."""
    deadline = time.monotonic() + timeout
    while not http_ready(url, timeout=2).ok:
        assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"not ready in {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.3)


async def test_bridge_with_the_rendered_environment_binds_one_address_and_advertises_another(
    prosody: ProsodyServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    values = chart_values(prosody, redis_server)
    docs = render(values)
    pod, container = bridge_container(docs)
    assert pod["hostNetwork"] is True
    assert container["command"][1:] == ["-m", "bridge", "run"]
    env = process_environment(docs, tmp_path / "secrets")
    assert env["SIPMUC_SIP__BIND_HOST"] == "127.0.0.1"
    assert env["SIPMUC_SIP__ADVERTISE_HOST"] == NODE_IP
    assert env["SIPMUC_STATE__NODE_ID"] == f"{FULLNAME}-0"

    log = tmp_path / "bridge.log"
    with log.open("wb") as sink:
        bridge = subprocess.Popen(
            [sys.executable, *container["command"][1:]], env=env, stderr=sink,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    sip_port = values["sip"]["port"]
    first = RawUac(sip_port, user="carl", display="Carl Caller")
    second = RawUac(sip_port, user="dora", display="Dora Second")
    try:
        url = f"http://{NODE_IP}:{values['http']['port']}/readyz"
        await asyncio.to_thread(wait_ready, url, bridge, log)

        answered = await dial(first)
        assert answered.status == 200, answered.first_line
        assert f"@{NODE_IP}:{sip_port}" in answered.get("Contact")
        assert f"c=IN IP4 {NODE_IP}" in answered.body
        moved = await dial(second)  # the front's one slot is taken: off to worker 1
        assert moved.status == 302, moved.first_line
        assert f"<sip:{ROOM}@{NODE_IP}:{values['workers']['basePort']}>" in moved.get("Contact")

        with socket.create_connection(("127.0.0.1", sip_port), timeout=5):
            pass  # the TCP listener is up
        await asyncio.to_thread(first.bye)
    finally:
        first.close()
        second.close()
        bridge.terminate()
        try:
            code = await asyncio.to_thread(bridge.wait, 30)
        except subprocess.TimeoutExpired:
            bridge.kill()
            code = bridge.wait()
    text = await asyncio.to_thread(log.read_text)
    assert code == 0, text[-3000:]
    ready = next(json.loads(line) for line in text.splitlines() if '"bridge.ready"' in line)
    assert ready["advertised"] == NODE_IP
