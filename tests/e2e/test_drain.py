"""SIGTERM drains: the call in progress goes on, new callers get 503 (or, with another
replica, a 302 to the replica that took the room over), the process exits once the last call
has ended (docs/operations.md, "Drain a node")."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bridge.app import open_node
from bridge.devstack.ports import free_udp_tcp_port
from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer
from bridge.sip import devpeers as dp
from tests.e2e.conftest import ROOM, process_env
from tests.e2e.test_mirroring import dial, until
from tests.e2e.test_replicas import LEASE_TTL, _replica_a_env, _settings_b
from tests.sip.rawsip import Message, RawUac


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


async def test_draining_replica_hands_its_room_to_the_other_one(
    two_component_prosody: ProsodyServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    """SIGTERM on the room's owner: its call goes on, its lease is released, the other
    replica takes the room, and a new caller dialling the draining replica is redirected
    (302) there and joins, instead of 503 for the whole drain."""
    port_a = free_udp_tcp_port()
    log_path = tmp_path / "replica-a.log"
    with log_path.open("w") as log_file:
        replica_a = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run"],
            env=_replica_a_env(two_component_prosody, redis_server, port_a), stderr=log_file,
        )  # fmt: skip
    in_call = RawUac(port_a, user="carl", display="Carl Caller")
    late = RawUac(port_a, user="dora", display="Dora Late")
    try:
        async with asyncio.timeout(60):
            while '"bridge.ready"' not in log_path.read_text():
                assert replica_a.poll() is None, log_path.read_text()[-2000:]
                await asyncio.sleep(0.1)
        async with open_node(_settings_b(two_component_prosody, redis_server)) as node_b:
            assert ROOM not in node_b.rooms  # A owns the room
            assert (await dial(in_call)).status == 200

            async def recorded() -> bool:  # A wrote its caller's leg (it owns the room)
                state = await node_b.engine.load(ROOM)
                return any(leg.node == "replica-a" for leg in state.legs.values())

            async with asyncio.timeout(20):
                while not await recorded():
                    await asyncio.sleep(0.1)
            replica_a.send_signal(signal.SIGTERM)
            await until(lambda: ROOM in node_b.rooms, "B took the room over", LEASE_TTL * 5)
            async with asyncio.timeout(LEASE_TTL * 5):  # A learns the new owner
                while True:
                    moved = await dial(late)
                    if moved.status == 302:
                        break
                    tail = log_path.read_text()[-3000:]
                    assert moved.status == 503, f"{moved.first_line}\n{tail}"  # no owner yet
                    late.close()
                    late = RawUac(port_a, user="dora", display="Dora Late")
                    await asyncio.sleep(0.3)
            contact = moved.get("Contact")
            assert f"@127.0.0.1:{node_b.pool.front_port}" in contact, contact
            state = node_b.engine.cached(ROOM)  # restored by now: A is alive, its call no ghost
            assert state is not None
            assert "replica-a" in {leg.node for leg in state.legs.values()}

            on_b = RawUac(node_b.pool.front_port, user="dora", display="Dora Late")
            try:
                assert (await dial(on_b)).status == 200
                names = lambda: {leg.display_name for leg in node_b.legs.values()}  # noqa: E731
                await until(lambda: "Dora Late" in names(), "the new caller is on B")
                # the first call goes on on A: no BYE came, A still runs
                assert not await asyncio.to_thread(_requests, in_call, "BYE", 1.0)
                assert replica_a.poll() is None
                await asyncio.to_thread(on_b.bye)
            finally:
                on_b.close()
            await asyncio.to_thread(in_call.bye)
            assert await asyncio.to_thread(replica_a.wait, 30) == 0

            def a_legs_left() -> bool:
                state = node_b.engine.cached(ROOM)
                return state is not None and "replica-a" not in {
                    leg.node for leg in state.legs.values()
                }

            await until(a_legs_left, "B dropped the stopped replica's leg", LEASE_TTL * 5)
        text = log_path.read_text()
        assert '"room.handed_over"' in text
        assert '"bridge.drained"' in text
    finally:
        in_call.close()
        late.close()
        if replica_a.poll() is None:
            replica_a.kill()
        replica_a.wait()


def _requests(uac: RawUac, method: str, seconds: float) -> list[Message]:
    """Requests of ``method`` that arrive within ``seconds`` (RTP on the port is skipped)."""
    found = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        msg = uac.recv(left)
        if msg is not None and msg.first_line.startswith(f"{method} sip:"):
            found.append(msg)
    return found


async def test_after_the_handover_the_first_caller_hears_the_new_one(
    two_component_prosody: ProsodyServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The draining replica calls the new owner into its own mix of the room (a handover
    line): its remaining caller (baresip, recording) hears a caller who joined after the
    handover on the other replica (SIPp, speaking), instead of a split meeting."""
    port_a = free_udp_tcp_port()
    log_path = tmp_path / "replica-a.log"
    with log_path.open("w") as log_file:
        replica_a = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run"],
            env=_replica_a_env(two_component_prosody, redis_server, port_a), stderr=log_file,
        )  # fmt: skip
    speech = dp.speech("one two three four five six seven eight nine ten", 8000, tmp_path)
    pcap = tmp_path / "speech.pcap"
    dp.write_rtp_pcap(pcap, speech)
    silence = tmp_path / "silence.wav"
    dp.write_wav(silence, np.zeros(8000 * 60, np.int16), 8000)
    listener = dp.Baresip(tmp_path / "baresip", silence)
    try:
        await asyncio.to_thread(_wait_for_line, log_path, '"bridge.ready"', replica_a, 60)
        async with open_node(_settings_b(two_component_prosody, redis_server)) as node_b:
            listener.start(f"sip:{ROOM}@127.0.0.1:{port_a}", 60)
            await asyncio.to_thread(_wait_for_line, log_path, '"leg.joined"', replica_a, 30)
            replica_a.send_signal(signal.SIGTERM)
            await asyncio.to_thread(
                _wait_for_line, log_path, '"room.handover_line_up"', replica_a, LEASE_TTL * 10
            )
            await until(lambda: len(node_b.legs) == 1, "the line joined B")
            # a new caller dials the draining replica, follows its 302 to B and speaks there
            caller = dp.Sipp(dp.sipp_uac_scenario(ROOM, pcap=pcap, hold_ms=8000), port_a,
                             tmp_path / "sipp")  # fmt: skip
            result = await asyncio.to_thread(caller.run)  # the pcap plays during the hold
            assert result.returncode == 0, result.stdout + result.errors
            await asyncio.to_thread(listener.stop)  # A's last call ends: A finishes its drain
            assert await asyncio.to_thread(replica_a.wait, 30) == 0
            await until(lambda: not node_b.legs, "B hung up the line when A stopped")
    finally:
        listener.stop()
        if replica_a.poll() is None:
            replica_a.kill()
        replica_a.wait()
    heard, rate = listener.heard()
    correlation, _ = dp.best_correlation(dp.envelope(heard, rate), dp.envelope(speech, 8000))
    assert correlation > 0.6, f"the first caller did not hear the new one ({correlation:.2f})"


def _wait_for_line(log: Path, marker: str, proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while marker not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {marker} in:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
