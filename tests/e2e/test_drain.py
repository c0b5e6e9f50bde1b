"""SIGTERM drains: the call in progress goes on, new callers get 503, the process exits
once the last call has ended (docs/operations.md, "Drain a node")."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

from bridge.devstack.ports import free_udp_tcp_port
from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer
from tests.e2e.conftest import process_env
from tests.e2e.test_mirroring import dial
from tests.sip.rawsip import RawUac


async def test_sigterm_drains_calls_in_progress(
    prosody: ProsodyServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    sip_port = free_udp_tcp_port()
    log_path = tmp_path / "bridge.log"
    with log_path.open("w") as log_file:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run"],
            env=process_env(prosody, redis_server, sip_port), stderr=log_file,
        )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            while '"bridge.ready"' not in log_path.read_text():
                assert bridge.poll() is None, log_path.read_text()[-2000:]
                await asyncio.sleep(0.1)
        in_call = RawUac(sip_port, user="carl", display="Carl Caller")
        late = RawUac(sip_port, user="dora", display="Dora Late")
        try:
            assert (await dial(in_call)).status == 200
            bridge.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                while '"node.draining"' not in log_path.read_text():
                    await asyncio.sleep(0.1)
            refused = await dial(late)
            assert refused.status == 503, refused.first_line
            assert refused.get("Retry-After")
            assert bridge.poll() is None  # still serving the call in progress
            await asyncio.to_thread(in_call.bye)
            assert await asyncio.to_thread(bridge.wait, 30) == 0
        finally:
            in_call.close()
            late.close()
        events = [json.loads(line)["event"] for line in log_path.read_text().splitlines()
                  if line.startswith("{")]  # fmt: skip
        assert events.index("bridge.drained") < events.index("bridge.stopped")
    finally:
        if bridge.poll() is None:
            bridge.kill()
        bridge.wait()
