"""SIGKILL of the supervisor (``python -m bridge run``) and a restart on the same ports:
rooms, mutes and bans come back from Redis, no ghost puppet stays in the room, no worker
process outlives its supervisor, Redis forgets the calls that died with the node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil

from bridge.core.records import RoomState
from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer
from bridge.state.connection import redis_client
from bridge.state.store import StateStore
from tests.faults.conftest import MUC, ROOM, WAIT, BridgeProcess, dial, moderator


async def stored(redis: RedisServer) -> RoomState:
    client = redis_client(redis.url)
    try:
        return await StateStore(client).load_room(ROOM)
    finally:
        await client.aclose()


async def test_supervisor_sigkill_and_restart_restores_moderation(
    moderated_prosody: ProsodyServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    bridge = BridgeProcess(moderated_prosody, redis_server, tmp_path / "bridge")
    bridge.start()
    try:
        await bridge.wait_ready()
        async with moderator(moderated_prosody) as alice:
            await alice.wait_for(lambda: "bridge" in alice.occupants(MUC), WAIT)
            carl, status = await dial(bridge.sip_port, "carl", "Carl Caller")
            assert status == 200
            eve, status = await dial(bridge.sip_port, "eve", "Eve Troll")
            assert status == 200
            await alice.wait_for(
                lambda: {"Carl Caller", "Eve Troll"} <= set(alice.occupants(MUC)), WAIT
            )
            # moderation in the room: carl muted, eve banned
            await alice.set_role(MUC, "Carl Caller", "visitor", "noisy")
            note = await asyncio.to_thread(carl.wait_request, "MESSAGE", WAIT)
            assert "muted" in note.body.lower()
            eve_puppet = alice.occupants(MUC)["Eve Troll"]
            state = await stored(redis_server)
            eve_leg = next(leg for leg in state.legs.values() if leg.nick == "Eve Troll")
            await alice.set_affiliation(MUC, eve_leg.puppet_jid, "outcast")
            await asyncio.to_thread(eve.wait_request, "BYE", WAIT)
            del eve_puppet

            async def recorded() -> RoomState:
                while True:
                    state = await stored(redis_server)
                    if state.mutes and state.bans:
                        return state
                    await asyncio.sleep(0.1)

            before = await asyncio.wait_for(recorded(), WAIT)
            assert len(before.legs) == 1  # carl; eve's leg ended with the ban

            # -------- kill -9 the supervisor, as the OOM killer or a node crash would
            workers = bridge.kill9()
            assert workers, "the node had worker processes"
            # the workers notice their supervisor is gone and exit: nothing holds the ports
            _, alive = await asyncio.to_thread(psutil.wait_procs, workers, 30)
            assert not alive, f"workers outlived the supervisor: {alive}"
            carl.close()
            eve.close()

            # -------- same settings, same ports, same Redis
            bridge.start()
            await bridge.wait_ready()
            # the dead call's puppet is reconciled away: no ghost
            await alice.wait_for(
                lambda: "Carl Caller" not in alice.occupants(MUC)
                and "bridge" in alice.occupants(MUC),
                WAIT,
            )
            # the restore after the room's join deletes the dead call's leg (just after its
            # puppet is gone from the room: poll, the two are not ordered)
            async with asyncio.timeout(WAIT):
                while (after := await stored(redis_server)).legs:
                    await asyncio.sleep(0.1)
            assert not after.legs, f"Redis still lists dead calls: {after.legs}"
            assert set(after.mutes) == set(before.mutes)
            assert set(after.bans) == set(before.bans)

            # the ban still applies: 403
            eve2, status = await dial(bridge.sip_port, "eve", "Eve Troll")
            eve2.close()
            assert status == 403
            # the mute still applies: the re-caller comes in as a visitor and is told
            carl2, status = await dial(bridge.sip_port, "carl", "Carl Caller")
            try:
                assert status == 200
                await alice.wait_for(
                    lambda: "Carl Caller" in alice.occupants(MUC)
                    and alice.occupants(MUC)["Carl Caller"].role == "visitor",
                    WAIT,
                )
                final = await stored(redis_server)
                assert len(final.legs) == 1
                assert next(iter(final.legs.values())).participant in final.mutes
                await asyncio.to_thread(carl2.bye)
            finally:
                carl2.close()
    finally:
        bridge.stop()
