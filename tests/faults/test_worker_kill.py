"""SIGKILL of one SIP media worker in the middle of calls: only its calls end, their puppets
leave, Redis forgets exactly those legs, the other calls go on (audio slots and text relay),
the worker comes back and serves again, and a mute survives the crash."""

from __future__ import annotations

import asyncio

from bridge.devstack.prosody import ProsodyServer
from bridge.node.supervisor import Node
from tests.e2e.conftest import NodeFactory
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
        assert status == 200  # the front keeps one slot for itself
        worker1 = node.pool.slots()[1].port
        moved, status = await dial(front, "bob", "Bob Worker")
        moved.close()
        assert status == 302
        bob, status = await dial(worker1, "bob", "Bob Worker")
        assert status == 200
        cat, status = await dial(worker1, "cat", "Cat Worker")
        assert status == 200
        names = {"Ann Front", "Bob Worker", "Cat Worker"}
        await alice.wait_for(lambda: names <= set(alice.occupants(MUC)), WAIT)
        await until(lambda: len(legs_in_redis(node)) == 3, "three legs in Redis")
        by_worker = {rec.worker for rec in node.pool.legs().values()}
        assert by_worker == {0, 1}
        ann_leg = next(k for k, r in node.pool.legs().items() if r.worker == 0)

        await alice.set_role(MUC, "Bob Worker", "visitor", "mute before the crash")
        await asyncio.to_thread(bob.wait_request, "MESSAGE", WAIT)
        await until(lambda: bool(node.engine.cached(ROOM).mutes), "mute recorded")  # type: ignore[union-attr]

        pids = node.pool.worker_pids()
        node.pool.kill_worker(1)

        # the dead worker's callers leave the room and Redis; ann stays everywhere
        await alice.wait_for(
            lambda: not {"Bob Worker", "Cat Worker"} & set(alice.occupants(MUC)), WAIT
        )
        await until(lambda: legs_in_redis(node) == {ann_leg}, "Redis holds only ann's leg")
        assert set(node.pool.legs()) == {ann_leg}
        assert set(node.legs) == {ann_leg}
        assert "Ann Front" in alice.occupants(MUC)
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
        for uac in (ann, bob2):
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

            await alice.wait_for(lambda: "Tim Caller" in alice.occupants(MUC), WAIT)
            pid = node.pool.worker_pids()[0]
            node.pool.kill_worker(0)
            await alice.wait_for(lambda: "Tim Caller" not in alice.occupants(MUC), WAIT)
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
