"""Two replicas on one Redis and one Prosody: the lease owner serves the room, the other
redirects (302) to it, and takes the room over when the owner is killed (SIGKILL)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from typing import Any

from bridge.app import open_node
from bridge.config import Settings
from bridge.devstack.ports import free_port, free_udp_tcp_port
from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer
from bridge.xmpp import muc
from tests.e2e.conftest import ROOM, SECOND, process_env
from tests.e2e.test_mirroring import MUC, WAIT, dial, until
from tests.sip.rawsip import RawUac
from tests.xmpp.clients import chat_user

LEASE_TTL = 2.0


def _replica_a_env(prosody: ProsodyServer, redis: RedisServer, sip_port: int) -> dict[str, str]:
    return process_env(
        prosody, redis, sip_port,
        SIPMUC_STATE__NODE_ID="replica-a", SIPMUC_STATE__LEASE_TTL=str(LEASE_TTL),
    )  # fmt: skip


def _settings_b(prosody: ProsodyServer, redis: RedisServer) -> Settings:
    sip_port = free_udp_tcp_port()
    data: dict[str, Any] = {
        "rooms": [ROOM],
        "xmpp": {
            "component_jid": SECOND,
            "secret": "second-secret",
            "port": prosody.component_port,
            "muc_service": prosody.muc_domain,
        },
        "sip": {"domain": "127.0.0.1", "port": sip_port, "rtp_port_start": 50000},
        "workers": {"pool_size": 1, "media_timeout": 0},
        "redis": {"url": redis.url},
        "state": {"node_id": "replica-b", "lease_ttl": LEASE_TTL},
        "http": {"port": free_port()},
    }
    return Settings(**data)


async def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    stderr = proc.stderr

    def read() -> None:
        for line in stderr:
            if '"bridge.ready"' in line:
                return
        raise AssertionError("replica A exited before it was ready")

    await asyncio.wait_for(asyncio.to_thread(read), 60)


async def test_owner_serves_other_redirects_and_takes_over_after_sigkill(
    two_component_prosody: ProsodyServer, redis_server: RedisServer
) -> None:
    port_a = free_udp_tcp_port()
    replica_a = subprocess.Popen(
        [sys.executable, "-m", "bridge", "run"],
        env=_replica_a_env(two_component_prosody, redis_server, port_a),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        await _wait_ready(replica_a)
        async with open_node(_settings_b(two_component_prosody, redis_server)) as node_b:
            assert ROOM not in node_b.rooms  # A holds the lease
            uac = RawUac(node_b.pool.front_port, user="carl", display="Carl Caller")
            try:
                moved = await dial(uac)
            finally:
                uac.close()
            assert moved.status == 302, moved.first_line
            assert f"127.0.0.1:{port_a}" in moved.get("Contact")

            replica_a.kill()  # SIGKILL: no lease release, no goodbye to the room
            replica_a.wait()
            await until(lambda: ROOM in node_b.rooms, "replica B took the room", LEASE_TTL * 5)

            async with chat_user(two_component_prosody, "alice") as alice:
                await alice.join(MUC, "Alice")
                uac = RawUac(node_b.pool.front_port, user="carl", display="Carl Caller")
                try:
                    answered = await dial(uac)
                    assert answered.status == 200, answered.first_line
                    nick = "Carl Caller (unverified)"  # nobody vouches for this caller
                    await alice.wait_for(lambda: nick in alice.occupants(MUC), WAIT)
                    jid = alice.occupants(MUC)[nick].jid
                    assert jid.split("/")[0].endswith("@" + SECOND)
                finally:
                    await asyncio.to_thread(uac.bye)
                    uac.close()
    finally:
        if replica_a.poll() is None:
            replica_a.kill()
        replica_a.wait()


async def test_takeover_removes_the_dead_replicas_puppets_from_the_room(
    two_component_prosody: ProsodyServer, redis_server: RedisServer
) -> None:
    """Replica A carries a call and dies without closing its XMPP connection (a frozen or
    partitioned machine: SIGSTOP here, SIGKILL afterwards), so nothing sent to its puppet
    bounces and the room keeps it. Replica B takes the room over, finds A's leg in the
    stored state with no live call behind it, and kicks the puppet (issue 22). (After a
    plain SIGKILL, Prosody itself removes A's occupants with status 333 as soon as a
    stanza to them bounces.)"""
    port_a = free_udp_tcp_port()
    replica_a = subprocess.Popen(
        [sys.executable, "-m", "bridge", "run"],
        env=_replica_a_env(two_component_prosody, redis_server, port_a),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    uac = RawUac(port_a, user="carl", display="Carl Caller")
    try:
        await _wait_ready(replica_a)
        async with chat_user(two_component_prosody, "alice") as alice:
            await alice.join(MUC, "Alice")
            answered = await dial(uac)
            assert answered.status == 200, answered.first_line
            carl = "Carl Caller (unverified)"  # nobody vouches for this caller
            await alice.wait_for(lambda: carl in alice.occupants(MUC), WAIT)
            assert alice.occupants(MUC)[carl].jid.split("/")[0].endswith(
                "@bridge.localhost"
            )
            async with open_node(_settings_b(two_component_prosody, redis_server)) as node_b:
                replica_a.send_signal(signal.SIGSTOP)  # its TCP stays open: no bounce
                await until(lambda: ROOM in node_b.rooms, "replica B took the room", LEASE_TTL * 5)
                await alice.wait_for(lambda: carl not in alice.occupants(MUC), WAIT)
                assert muc.KICKED in alice.rooms[MUC].left_codes[carl]
                replica_a.kill()
                replica_a.wait()
    finally:
        uac.close()
        if replica_a.poll() is None:
            replica_a.kill()
        replica_a.wait()
