"""SIGKILL of one SIP media worker in the middle of calls: only its calls end, their puppets
leave, Redis forgets exactly those legs, the other calls go on (audio slots and text relay),
the worker comes back and serves again, and a mute survives the crash."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np

from bridge.core.events import SendSipMessage
from bridge.devstack.ports import free_udp_tcp_port
from bridge.devstack.prosody import ProsodyServer
from bridge.node.supervisor import Node
from bridge.sip import devpeers as dp
from tests.e2e.conftest import NodeFactory
from tests.e2e.test_commands import UAS_SCENARIO, command, owner, sipp_uas, trunk_settings
from tests.faults.conftest import MUC, ROOM, WAIT, dial, moderator, until
from tests.sip.rawsip import RawUac


def legs_in_redis(node: Node) -> set[str]:
    state = node.engine.cached(ROOM)
    return set(state.legs) if state is not None else set()


async def test_worker_sigkill_ends_only_its_calls(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    workers = {"pool_size": 2, "calls_per_worker": 2, "media_timeout": 0}
    async with make_node(workers=workers) as node, moderator(moderated_prosody) as alice:
        front = node.pool.front_port
        ann, status = await dial(front, "ann", "Ann Front")
        assert status == 200
        zed, status = await dial(front, "zed", "Zed Front")
        assert status == 200  # the front is full now
        worker1 = node.pool.slots()[1].port
        moved, status = await dial(front, "bob", "Bob Worker")
        moved.close()
        assert status == 302
        bob, status = await dial(worker1, "bob", "Bob Worker")
        assert status == 200
        cat, status = await dial(worker1, "cat", "Cat Worker")
        assert status == 200
        names = {"Ann Front", "Zed Front", "Bob Worker", "Cat Worker"}
        await alice.wait_for(lambda: names <= set(alice.occupants(MUC)), WAIT)
        await until(lambda: len(legs_in_redis(node)) == 4, "four legs in Redis")
        by_worker = {rec.worker for rec in node.pool.legs().values()}
        assert by_worker == {0, 1}
        front_legs = {k for k, r in node.pool.legs().items() if r.worker == 0}

        await alice.set_role(MUC, "Bob Worker", "visitor", "mute before the crash")
        await asyncio.to_thread(bob.wait_request, "MESSAGE", WAIT)
        await until(lambda: bool(node.engine.cached(ROOM).mutes), "mute recorded")  # type: ignore[union-attr]

        pids = node.pool.worker_pids()
        node.pool.kill_worker(1)

        # the dead worker's callers leave the room and Redis; ann stays everywhere
        await alice.wait_for(
            lambda: not {"Bob Worker", "Cat Worker"} & set(alice.occupants(MUC)), WAIT
        )
        await until(lambda: legs_in_redis(node) == front_legs, "Redis holds the front's legs")
        assert set(node.pool.legs()) == front_legs
        assert set(node.legs) == front_legs
        assert {"Ann Front", "Zed Front"} <= set(alice.occupants(MUC))
        assert node.pool.worker_pids()[0] == pids[0]

        # ann's call still works both ways
        await alice.say(MUC, "are you still there?")
        note = await asyncio.to_thread(ann.wait_request, "MESSAGE", WAIT)
        assert "still there" in note.body
        await asyncio.to_thread(ann.in_dialog, "MESSAGE", body="yes", ctype="text/plain")
        await alice.next_message(lambda m: m.nick == "Ann Front" and m.body == "yes")

        # the worker is back on the same port; bob calls again and is still muted
        await until(
            lambda: node.pool.slots()[1].alive and node.pool.worker_pids()[1] != pids[1],
            "worker 1 restarted", within=60,
        )  # fmt: skip
        bob.close()
        cat.close()
        bob2, status = await dial(worker1, "bob", "Bob Worker")
        assert status == 200
        await alice.wait_for(
            lambda: "Bob Worker" in alice.occupants(MUC)
            and alice.occupants(MUC)["Bob Worker"].role == "visitor",
            WAIT,
        )
        bob_leg = next(k for k, r in node.pool.legs().items() if r.worker == 1)
        await until(lambda: node.pool.legs()[bob_leg].muted, "bob muted in the mixer again")
        for uac in (ann, zed, bob2):
            await asyncio.to_thread(uac.bye)
            uac.close()


async def test_a_phone_with_session_timers_learns_its_worker_died(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    """RFC 4028 on every call (issue 22): every 200 OK sets a 90 s session timer, also for
    phones that did not ask (we refresh those). After the worker's death a phone that
    refreshes gets 481 from the restarted worker on the same port and ends the call (within
    45 s); a phone that expects our refresh ends it before the 90 s run out. Without timers
    a phone keeps a dead call until its user hangs up. (A phone that proposes a longer
    interval itself, e.g. 1800 s, keeps it: PJSIP takes the peer's Session-Expires as is.)"""
    workers = {"pool_size": 1, "media_timeout": 0}
    async with make_node(workers=workers) as node, moderator(moderated_prosody) as alice:
        port = node.pool.front_port
        uacs = {
            name: RawUac(port, user=name.lower(), display=f"{name} Caller")
            for name in ("Tim", "Sam", "Pat")
        }
        offers = {
            "Tim": ("Supported: timer", "Session-Expires: 90;refresher=uac"),
            "Sam": ("Supported: timer",),  # supports timers, proposes none
            "Pat": (),  # no RFC 4028 at all (SIPp, baresip 1.0)
        }
        expected = {"Tim": "90;refresher=uac", "Sam": "90;refresher=uas", "Pat": "90;refresher=uas"}
        try:
            for name, uac in uacs.items():
                final = await asyncio.to_thread(uac.invite, ROOM, headers=offers[name])
                assert final.status == 200, final.first_line
                assert final.get("Session-Expires").replace(" ", "") == expected[name], name

            tim = "Tim Caller (unverified)"  # straight from "the Internet": nobody vouches
            await alice.wait_for(lambda: tim in alice.occupants(MUC), WAIT)
            pid = node.pool.worker_pids()[0]
            node.pool.kill_worker(0)
            await alice.wait_for(lambda: tim not in alice.occupants(MUC), WAIT)
            await until(lambda: node.pool.slots()[0].alive, "worker 0 restarted")
            assert node.pool.worker_pids()[0] != pid

            # Tim's phone refreshes the session (RFC 4028 §7.4: re-INVITE or UPDATE)
            refreshed = await asyncio.to_thread(
                uacs["Tim"].in_dialog, "UPDATE", headers=("Session-Expires: 90;refresher=uac",)
            )
            assert refreshed.status == 481, refreshed.first_line  # the phone hangs up on it
        finally:
            for uac in uacs.values():
                uac.close()


async def test_every_phone_of_a_dead_worker_gets_a_bye(
    make_node: NodeFactory, moderated_prosody: ProsodyServer, tmp_path: Path
) -> None:
    """Issue 22: baresip 1.0 and SIPp have no RFC 4028 session timers and kept a dead call
    for minutes. When a worker dies the supervisor BYEs each of its confirmed dialogs
    (from another port of the same address, with the dialog's tags, route set and a CSeq
    above what the worker sent, Reason: SIP;cause=500), so every phone learns it at once."""
    workers = {"pool_size": 1, "media_timeout": 0}
    async with make_node(workers=workers) as node, moderator(moderated_prosody) as alice:
        port = node.pool.front_port
        wav = tmp_path / "tone.wav"
        t = np.arange(8000 * 130) / 8000
        dp.write_wav(wav, (3000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 8000)
        baresip = dp.Baresip(tmp_path / "baresip", wav)
        sipp_log = tmp_path / "sipp.log"
        sipp = dp.Sipp(
            dp.sipp_uac_scenario(ROOM, hold_ms=100_000, answer_bye=True), port,
            tmp_path / "sipp", timeout_s=120,
            extra_args=["-trace_logs", "-log_file", str(sipp_log)],
        )  # fmt: skip
        raw = RawUac(port, user="raw", display="Raw Caller")
        present = set(alice.occupants(MUC))  # the bridge and alice
        try:
            baresip.start(f"sip:{ROOM}@127.0.0.1:{port}", 120)
            sipp.start()
            final = await asyncio.to_thread(raw.invite, ROOM)
            assert final.status == 200, final.first_line
            await until(
                lambda: sum(r.joined for r in node.pool.legs().values()) == 3, "three calls up"
            )
            await alice.wait_for(lambda: len(alice.occupants(MUC)) == len(present) + 3, WAIT)
            # the worker uses raw's dialog (an in-dialog MESSAGE): the BYE must go above it
            legs = node.pool.legs().items()
            raw_leg = next(k for k, r in legs if r.caller.call_id == raw.call_id)
            node.pool.send(SendSipMessage(raw_leg, "before the crash"))
            note = await asyncio.to_thread(raw.wait_request, "MESSAGE", WAIT)
            sent_cseq = int(note.get("CSeq").split()[0])

            node.pool.kill_worker(0)

            bye = await asyncio.to_thread(raw.wait_request, "BYE", 10)
            assert bye.get("Call-ID") == raw.call_id
            assert bye.first_line.startswith(f"BYE sip:raw@127.0.0.1:{raw.port} ")  # its Contact
            assert f"tag={raw.tag}" in bye.get("To")
            assert f"tag={raw.remote_tag}" in bye.get("From")
            assert int(bye.get("CSeq").split()[0]) > sent_cseq
            assert bye.get("Reason") == 'SIP;cause=500;text="bridge worker failed"'
            log = tmp_path / "baresip" / "baresip.log"
            await until(  # libre reports a BYE received as ECONNRESET
                lambda: "session closed" in log.read_text(errors="replace"), "baresip ended", 10
            )
            result = await asyncio.to_thread(sipp.wait, 10)
            assert result.returncode == 0, result.errors  # the scenario took the BYE, said 200
            assert "remote BYE" in sipp_log.read_text(errors="replace")
            await alice.wait_for(lambda: set(alice.occupants(MUC)) == present, WAIT)
        finally:
            raw.close()
            sipp.kill()
            baresip.stop()


async def test_a_call_we_placed_gets_a_bye_when_its_worker_dies(
    make_node: NodeFactory, moderated_prosody: ProsodyServer, tmp_path: Path
) -> None:
    """A dial-out leg (the bridge is the UAC): its dialog comes from our ACK to the answer;
    after the worker's death the trunk (SIPp as UAS, through the outbound proxy route)
    gets our BYE, answers 200 and ends its scenario."""
    sipp = shutil.which("sipp")
    assert sipp is not None, "SIPp is not installed (apt-get install sip-tester)"
    port = free_udp_tcp_port()
    uas = sipp_uas(sipp, UAS_SCENARIO, port, tmp_path)
    try:
        workers = {"pool_size": 1, "media_timeout": 0}
        async with make_node(sip=trunk_settings(port), workers=workers) as node, owner(
            moderated_prosody
        ) as alice:
            occupants = set(alice.occupants(MUC))
            await command(alice, "!dial 1234")
            await alice.wait_for(lambda: len(set(alice.occupants(MUC)) - occupants) == 1, WAIT)
            await until(
                lambda: any(r.dialog is not None for r in node.pool.legs().values()),
                "the dialled leg's dialog reported",
            )
            node.pool.kill_worker(0)
            await asyncio.to_thread(uas.wait, 10)
            assert uas.returncode == 0, uas.stderr.read() if uas.stderr else ""
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait()
