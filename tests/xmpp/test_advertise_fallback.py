"""Servers without mod_muc_audio_video_uri: the SIP URI goes into the room description."""

from __future__ import annotations

from structlog.testing import capture_logs

from bridge.devstack.prosody import ProsodyServer
from bridge.xmpp.events import RoomJoined
from tests.xmpp.clients import Recorder, chat_user
from tests.xmpp.conftest import BridgeFactory
from tests.xmpp.test_room_basic import SIP_URI

DESCRIPTION = "muc#roominfo_description"


async def test_stock_prosody_gets_description_without_clobbering(
    prosody: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody.muc_domain}"
    other_jid = f"other@{prosody.muc_domain}"
    async with chat_user(prosody, "alice") as alice:
        await alice.join(room_jid, "Alice")
        await alice.configure(room_jid, {"muc#roomconfig_roomdesc": "Team sync, Mondays"})
        await alice.set_affiliation(room_jid, prosody.component_domain, "owner")
        recorder = Recorder()
        with capture_logs() as logs:
            async with make_bridge(prosody) as bridge:
                await bridge.link_room(room_jid, SIP_URI, sink=recorder)
                await bridge.link_room(other_jid, "sip:other@sip.localhost", sink=recorder)
                joined = await recorder.wait_for(lambda e: isinstance(e, RoomJoined))
                assert joined.advertised == "description"
                info = await alice.roominfo(room_jid)
                assert info[DESCRIPTION] == f"Team sync, Mondays · Join by phone: {SIP_URI}"
                assert "audio-video-uri" not in info
                # a second sync (e.g. after a reconnect) does not add the line twice
                room = bridge.rooms[room_jid]
                room.joined = False
                await room.sync()
                info = await alice.roominfo(room_jid)
                assert info[DESCRIPTION] == f"Team sync, Mondays · Join by phone: {SIP_URI}"
                # unlinking gives the owner's text back
                await bridge.unlink_room(room_jid)
                info = await alice.roominfo(room_jid)
                assert info[DESCRIPTION] == "Team sync, Mondays"
    warnings = [e for e in logs if e["event"] == "xmpp.audio_video_uri_unsupported"]
    assert len(warnings) == 1, "said once per process, not once per room"
    assert "mod_muc_audio_video_uri" in warnings[0]["hint"]


async def test_module_field_survives_and_clears(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    """With the module: the config form carries the field; unlink withdraws it."""
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    async with chat_user(prosody_avu, "alice") as alice, make_bridge(prosody_avu) as bridge:
        recorder = Recorder()
        await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await recorder.wait_for(lambda e: isinstance(e, RoomJoined))
        await alice.join(room_jid, "Alice")  # keeps the (temporary) room alive after unlink
        assert (await alice.roominfo(room_jid))["audio-video-uri"] == SIP_URI
        await bridge.unlink_room(room_jid)
        await alice.wait_for(lambda: "bridge" not in alice.occupants(room_jid))
        assert "audio-video-uri" not in await alice.roominfo(room_jid)
