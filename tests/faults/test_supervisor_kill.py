"""SIGKILL of the supervisor (``python -m bridge run``) and a restart on the same ports:
callers hear each other while it is down and get a BYE when it returns (or when the
orphans' grace ends), rooms, mutes and bans come back from Redis, no ghost puppet stays in
the room, no worker process outlives its grace, Redis forgets the calls that died."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

import psutil

from bridge.core.records import RoomState
from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer
from bridge.state.connection import redis_client
from bridge.state.store import StateStore
from tests.faults.conftest import MUC, ROOM, WAIT, BridgeProcess, dial, moderator, until
from tests.faults.rtp_phone import RtpPhone


async def stored(redis: RedisServer) -> RoomState:
    client = redis_client(redis.url)
    try:
        return await StateStore(client).load_room(ROOM)
    finally:
        await client.aclose()


async def test_supervisor_sigkill_and_restart_restores_moderation(
    moderated_prosody: ProsodyServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    # no supervisor comes back within the orphans' grace: they end by themselves
    grace = {"SIPMUC_WORKERS__ORPHAN_GRACE": "2"}
    bridge = BridgeProcess(moderated_prosody, redis_server, tmp_path / "bridge", extra_env=grace)
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
            # after the grace the workers BYE their calls and exit: nothing holds the ports
            await asyncio.to_thread(carl.wait_request, "BYE", WAIT)
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


async def test_callers_hear_each_other_while_the_supervisor_is_down_then_get_a_bye(
    moderated_prosody: ProsodyServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Issue 17: when the supervisor dies, audio between callers goes on (the mixer and the
    workers carry on for ``workers.orphan_grace``) until it is back: the keeper (what runs
    as PID 1 in the image, forced here) restarts it, and the new supervisor ends the
    orphans cleanly (a BYE to every caller, the old processes gone) before it takes the
    ports. A SIGTERM to the keeper then stops the node as usual."""
    bridge = BridgeProcess(
        moderated_prosody, redis_server, tmp_path / "bridge", extra_env={"SIPMUC_KEEPER": "1"}
    )
    bridge.start()
    carl = RtpPhone(bridge.sip_port, "carl", "Carl Caller")
    dave = RtpPhone(bridge.sip_port, "dave", "Dave Dialer")
    try:
        await bridge.wait_ready()
        for phone in (carl, dave):
            final = await asyncio.to_thread(phone.dial)
            assert final.status == 200, final.first_line
        carl.speaking = True
        await until(lambda: dave.loud_between(time.time() - 1, time.time()) > 10, "dave hears")

        keeper, supervisor, *orphans = bridge.family()
        assert supervisor.ppid() == keeper.pid and len(orphans) >= 2  # a mixer, a worker
        supervisor.kill()  # SIGKILL, as the OOM killer would
        killed = time.time()
        byes = await asyncio.gather(
            asyncio.to_thread(carl.uac.wait_request, "BYE", 60),
            asyncio.to_thread(dave.uac.wait_request, "BYE", 60),
        )
        assert all(bye.method == "BYE" for bye in byes)
        _, alive = await asyncio.to_thread(psutil.wait_procs, orphans, 10)
        assert not alive, f"orphans outlived the returning supervisor: {alive}"
        await bridge.wait_ready()
        events = bridge.log_events()
        assert [e for e in events if e.get("event") == "keeper.supervisor_died"]
        (ended,) = [e for e in events if e.get("event") == "sip.orphans.ended"]
        processes = {str(p) for p in ended["processes"]}  # type: ignore[attr-defined]
        # the mixer and the worker (multiprocessing's resource tracker exits by itself)
        assert {p.split(":")[0] for p in processes} == {"mixer", "worker"}, ended
        assert {int(p.split(":")[1]) for p in processes} < {p.pid for p in orphans}
        # until the new supervisor ended them, carl and dave heard each other
        back = datetime.fromisoformat(str(ended["timestamp"])).timestamp()
        assert back - killed > 1.0, "the keeper restarts after a second"
        heard = dave.loud_between(killed + 0.5, back)
        assert heard > 20, f"dave heard {heard} loud packets while the supervisor was down"

        again = RtpPhone(bridge.sip_port, "carl", "Carl Caller")
        try:
            final = await asyncio.to_thread(again.dial)
            assert final.status == 200, final.first_line  # the new node holds the ports
            await asyncio.to_thread(again.uac.bye)
        finally:
            again.close()
        bridge.stop()
        assert bridge.proc is not None and bridge.proc.returncode == 0  # a clean stop
    finally:
        carl.close()
        dave.close()
        bridge.stop()
