"""Server restart, crash leftovers (ghosts), silent drop-out (self-ping), join errors."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.devstack.prosody import ProsodyServer
from bridge.xmpp.component import BridgeComponent
from bridge.xmpp.events import PuppetJoined, PuppetJoinFailed, RoomJoined, RoomLost
from tests.xmpp.clients import Recorder, chat_user
from tests.xmpp.conftest import BridgeFactory, bridge_settings
from tests.xmpp.test_room_basic import SIP_URI, leg


async def test_prosody_restart_bridge_rejoins_with_puppets(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    async with make_bridge(prosody_avu) as bridge:
        room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await room.caller_joined(leg("leg-1", display_name="Ann"))
        await room.caller_joined(leg("leg-2", display_name="Ben", from_uri="sip:ben@pbx"))
        mark = len(recorder.events)

        await asyncio.to_thread(prosody_avu.restart)

        await recorder.wait_for(lambda e: isinstance(e, RoomLost), start=mark)
        await recorder.wait_for(lambda e: isinstance(e, RoomJoined), start=mark, within=20)
        for leg_id in ("leg-1", "leg-2"):
            await recorder.wait_for(
                lambda e, leg_id=leg_id: isinstance(e, PuppetJoined) and e.leg_id == leg_id,
                start=mark,
            )
        async with chat_user(prosody_avu, "carol") as carol:
            await carol.join(room_jid, "Carol")
            await carol.wait_for(lambda: {"Ann", "Ben", "bridge"} <= set(carol.occupants(room_jid)))
            info = await carol.roominfo(room_jid)
        assert set(carol.occupants(room_jid)) == {"Ann", "Ben", "bridge", "Carol"}
        assert info["audio-video-uri"] == SIP_URI
        assert room.present_puppets == {"leg-1": "Ann", "leg-2": "Ben"}


async def test_start_removes_ghosts_and_keeps_live_callers(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    async with chat_user(prosody_avu, "alice") as alice:
        await alice.join(room_jid, "Alice")  # alice creates the room and makes the bridge owner
        await alice.set_affiliation(room_jid, prosody_avu.component_domain, "owner")
        # A bridge that crashes: connected, puppets in, then the stream is cut without leaving.
        crashed = BridgeComponent(bridge_settings(prosody_avu))
        await crashed.connect_and_wait()
        first = await crashed.link_room(room_jid, SIP_URI)
        await first.caller_joined(leg("leg-1", display_name="Gone Caller"))
        await first.caller_joined(leg("leg-2", display_name="Still Here", from_uri="sip:x@pbx"))
        await alice.wait_for(
            lambda: {"Gone Caller", "Still Here"} <= set(alice.occupants(room_jid))
        )
        crashed.abort()

        # The restarted bridge knows (from the SIP side) that only leg-2 is still connected.
        recorder = Recorder()
        async with make_bridge(prosody_avu) as bridge:
            room = await bridge.link_room(
                room_jid,
                SIP_URI,
                legs=[leg("leg-2", display_name="Still Here", from_uri="sip:x@pbx")],
                sink=recorder,
            )
            await alice.wait_for(lambda: "Gone Caller" not in alice.occupants(room_jid))
            assert "Still Here" in alice.occupants(room_jid)
            assert room.present_puppets == {"leg-2": "Still Here"}


async def test_self_ping_notices_silent_drop_out(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    """The server forgets the control occupant without telling us: self-ping notices."""
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    async with (
        make_bridge(prosody_avu, self_ping_interval=0.5) as bridge,
        chat_user(prosody_avu, "alice") as alice,
    ):
        room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await room.caller_joined(leg("leg-1", display_name="Ann"))
        await alice.join(room_jid, "Alice")
        mark = len(recorder.events)

        # Leave behind the bridge's back: drop the room's answer before the bridge sees it.
        swallowed = asyncio.Event()

        def swallow(stanza: Any) -> Any:
            if (
                stanza.name == "presence"
                and stanza["type"] == "unavailable"
                and str(stanza["to"]) == str(bridge.control_jid)
            ):
                swallowed.set()
                return None
            return stanza

        bridge.add_filter("in", swallow)
        bridge.send_presence(
            pto=f"{room_jid}/bridge", pfrom=bridge.control_jid, ptype="unavailable"
        )
        await asyncio.wait_for(swallowed.wait(), 10)
        bridge.del_filter("in", swallow)
        await alice.wait_for(lambda: "bridge" not in alice.occupants(room_jid))
        assert room.joined  # the bridge has not noticed anything yet

        lost = await recorder.wait_for(lambda e: isinstance(e, RoomLost), start=mark)
        assert "self-ping" in lost.reason
        await recorder.wait_for(lambda e: isinstance(e, RoomJoined), start=mark)
        await alice.wait_for(lambda: {"bridge", "Ann"} <= set(alice.occupants(room_jid)))


async def test_frozen_server_is_noticed_and_rejoined(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    """The server hangs (SIGSTOP, no FIN): self-ping times out, the bridge reconnects."""
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    settings = {"self_ping_interval": 0.5, "connect_timeout": 2.0}
    async with make_bridge(prosody_avu, **settings) as bridge:
        room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await room.caller_joined(leg("leg-1", display_name="Ann"))
        mark = len(recorder.events)
        assert prosody_avu.process is not None
        prosody_avu.process.pause()
        try:
            await recorder.wait_for(lambda e: isinstance(e, RoomLost), start=mark, within=20)
        finally:
            prosody_avu.process.resume()
        await recorder.wait_for(lambda e: isinstance(e, RoomJoined), start=mark, within=20)
        await recorder.wait_for(lambda e: isinstance(e, PuppetJoined), start=mark)
        async with chat_user(prosody_avu, "bob") as bob:
            await bob.join(room_jid, "Bob")
            await bob.wait_for(lambda: {"bridge", "Ann"} <= set(bob.occupants(room_jid)))


async def test_banned_bridge_reports_clearly(
    prosody: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"closed@{prosody.muc_domain}"
    async with chat_user(prosody, "alice") as alice:
        await alice.join(room_jid, "Alice")
        await alice.set_affiliation(room_jid, prosody.component_domain, "outcast")
        recorder = Recorder()
        async with make_bridge(prosody) as bridge:
            room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
            lost = await recorder.wait_for(lambda e: isinstance(e, RoomLost))
            assert "forbidden" in lost.reason and not lost.will_rejoin
            assert not room.joined
            # callers are kept for later and not joined into a room we are not in
            assert await room.caller_joined(leg()) is None


async def test_banned_caller_cannot_come_back(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    from bridge.core.events import LegLeft
    from bridge.xmpp.events import PuppetBanned

    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    async with chat_user(prosody_avu, "alice") as alice:
        await alice.join(room_jid, "Alice")  # alice creates the room: she owns it
        await alice.set_affiliation(room_jid, prosody_avu.component_domain, "owner")
        async with make_bridge(prosody_avu) as bridge:
            room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
            joined = await room.caller_joined(leg(display_name="Troll"))
            assert joined is not None
            await alice.wait_for(lambda: "Troll" in alice.occupants(room_jid))
            puppet_bare = joined.jid.split("/")[0]
            await alice.set_affiliation(room_jid, puppet_bare, "outcast")
            banned = await recorder.wait_for(lambda e: isinstance(e, PuppetBanned))
            assert banned.leg_id == "leg-1" and banned.jid == puppet_bare
            await room.caller_left(LegLeft("leg-1", "weekly", "c", "kicked"))
            # the same caller dials in again: the room refuses its puppet
            assert await room.caller_joined(leg("leg-9", display_name="Troll")) is None
            failed = await recorder.wait_for(lambda e: isinstance(e, PuppetJoinFailed))
            assert failed.condition == "forbidden" and failed.leg_id == "leg-9"
