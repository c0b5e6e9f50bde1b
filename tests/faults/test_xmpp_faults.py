"""Prosody restarted or frozen under a running node: the bridge rejoins, puppets are
reconciled (each caller exactly once, no ghost of a caller who left meanwhile), mutes are
re-applied in the room, and a short network hiccup loses no message either way."""

from __future__ import annotations

import asyncio

from bridge.devstack.prosody import ProsodyServer
from tests.e2e.conftest import NodeFactory
from tests.faults.conftest import MUC, ROOM, WAIT, dial, moderator, until


async def test_prosody_restart_rejoins_and_reconciles_puppets(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    async with make_node() as node:
        async with moderator(moderated_prosody) as alice:
            carl, status = await dial(node.pool.front_port, "carl", "Carl Caller")
            assert status == 200
            dave, status = await dial(node.pool.front_port, "dave", "Dave Dialer")
            assert status == 200
            both = {"Carl Caller", "Dave Dialer"}
            await alice.wait_for(lambda: both <= set(alice.occupants(MUC)))
            await alice.set_role(MUC, "Carl Caller", "visitor")
            await asyncio.to_thread(carl.wait_request, "MESSAGE", WAIT)
        bridged = node.rooms[ROOM].bridged
        await asyncio.to_thread(moderated_prosody.restart)
        # dave hangs up while the room is gone: his puppet must not come back as a ghost
        await asyncio.to_thread(dave.bye)
        await until(
            lambda: bridged.joined and set(bridged.present_puppets.values()) == {"Carl Caller"},
            "bridge back in the room with carl only",
            within=40,
        )
        async with moderator(moderated_prosody) as alice:
            await alice.wait_for(
                lambda: "Carl Caller" in alice.occupants(MUC)
                and alice.occupants(MUC)["Carl Caller"].role == "visitor"
            )
            assert set(alice.occupants(MUC)) == {"bridge", "Carl Caller", "Alice"}
            state = node.engine.cached(ROOM)
            assert state is not None and len(state.legs) == 1 and len(state.mutes) == 1
            assert all(rec.muted for rec in node.pool.legs().values())
            # relay works again both ways
            await alice.say(MUC, "after the restart")
            note = await asyncio.to_thread(carl.wait_request, "MESSAGE", WAIT)
            assert "after the restart" in note.body
        carl.close()
        dave.close()


async def test_network_hiccup_loses_no_message(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    """Prosody frozen (SIGSTOP: no FIN, packets queue up) shorter than the self-ping."""
    async with make_node() as node, moderator(moderated_prosody) as alice:
        carl, status = await dial(node.pool.front_port, "carl", "Carl Caller")
        assert status == 200
        await alice.wait_for(lambda: "Carl Caller" in alice.occupants(MUC))
        assert moderated_prosody.process is not None
        moderated_prosody.process.pause()
        try:
            for i in range(5):
                await alice.say(MUC, f"room→phone {i}")
            for i in range(5):
                await asyncio.to_thread(
                    carl.in_dialog, "MESSAGE", body=f"phone→room {i}", ctype="text/plain"
                )
        finally:
            moderated_prosody.process.resume()
        want = {f"phone→room {i}" for i in range(5)}
        await alice.wait_for(
            lambda: want <= {m.body for m in alice.messages if m.nick == "Carl Caller"}
        )
        got: list[str] = []
        while len(got) < 5:
            note = await asyncio.to_thread(carl.wait_request, "MESSAGE", WAIT)
            got.append(note.body)
        # in order, each once, the sender named once
        assert got == [f"Alice: room→phone {i}" for i in range(5)]
        phone_to_room = [m.body for m in alice.messages if m.nick == "Carl Caller"]
        assert sorted(phone_to_room) == sorted(want)  # exactly once each
        carl.close()


async def test_long_freeze_is_noticed_and_the_room_rebuilt(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    """Prosody frozen long enough for the XEP-0410 self-ping to give up: the bridge
    reconnects, rejoins and shows the live caller exactly once."""
    node_factory = make_node(xmpp=_xmpp(moderated_prosody, self_ping_interval=0.5,
                                        connect_timeout=2.0))  # fmt: skip
    async with node_factory as node:
        carl, status = await dial(node.pool.front_port, "carl", "Carl Caller")
        assert status == 200
        bridged = node.rooms[ROOM].bridged
        await until(lambda: "Carl Caller" in bridged.present_puppets.values(), "puppet in")
        assert moderated_prosody.process is not None
        moderated_prosody.process.pause()
        try:
            await until(lambda: not bridged.joined, "the bridge noticed the freeze", within=30)
        finally:
            moderated_prosody.process.resume()
        await until(lambda: bridged.joined and list(bridged.present_puppets.values())
                    == ["Carl Caller"], "rejoined with the caller", within=40)  # fmt: skip
        async with moderator(moderated_prosody) as alice:
            await alice.wait_for(lambda: "Carl Caller" in alice.occupants(MUC))
            assert set(alice.occupants(MUC)) == {"bridge", "Carl Caller", "Alice"}
        assert len(node.pool.legs()) == 1
        carl.close()


def _xmpp(prosody: ProsodyServer, **overrides: object) -> dict[str, object]:
    return {
        "component_jid": prosody.component_domain,
        "secret": prosody.component_secret,
        "port": prosody.component_port,
        "muc_service": prosody.muc_domain,
        **overrides,
    }
