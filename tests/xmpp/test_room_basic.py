"""End-to-end against the real Prosody: advertise, puppets, relay."""

from __future__ import annotations

from bridge.core.events import LegJoined, LegLeft, SendSipMessage, SipMessageReceived
from bridge.devstack.prosody import ProsodyServer
from bridge.xmpp.events import PuppetJoined, PuppetLeft, RoomJoined
from bridge.xmpp.relay import RelayOutcome
from tests.xmpp.clients import Recorder, chat_user
from tests.xmpp.conftest import BridgeFactory

SIP_URI = "sip:weekly@sip.localhost"


def leg(leg_id: str = "leg-1", **fields: str) -> LegJoined:
    values = {
        "room": "weekly",
        "call_id": f"{leg_id}@10.0.0.5",
        "worker": 0,
        "from_uri": "sip:+33612345612@pbx.example;user=phone",
    }
    values.update(fields)
    return LegJoined(leg_id=leg_id, **values)  # type: ignore[arg-type]


async def test_roominfo_shows_audio_video_uri(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    async with make_bridge(prosody_avu) as bridge:
        room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        joined = await recorder.wait_for(lambda e: isinstance(e, RoomJoined))
        assert joined.advertised == "audio-video-uri"
        async with chat_user(prosody_avu, "alice") as alice:
            info = await alice.roominfo(room_jid)
        assert info["audio-video-uri"] == SIP_URI
        assert "Join the call" not in str(info.get("muc#roominfo_description", ""))
        assert room.joined


async def test_caller_appears_and_leaves(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    async with make_bridge(prosody_avu) as bridge, chat_user(prosody_avu, "alice") as alice:
        room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await alice.join(room_jid, "Alice")
        joined = await room.caller_joined(leg())
        assert joined is not None and joined.nick == "+33 6•• •• •• 12"
        await alice.wait_for(lambda: "+33 6•• •• •• 12" in alice.occupants(room_jid))
        occupant = alice.occupants(room_jid)["+33 6•• •• •• 12"]
        assert occupant.role == "participant"
        assert "612345612" not in str(alice.occupants(room_jid))
        await room.caller_left(LegLeft(leg_id="leg-1", room="weekly", call_id="c", reason="bye"))
        await alice.wait_for(lambda: "+33 6•• •• •• 12" not in alice.occupants(room_jid))
        assert [type(e) for e in recorder.events if isinstance(e, PuppetJoined | PuppetLeft)] == [
            PuppetJoined,
            PuppetLeft,
        ]


async def test_message_each_way_exactly_once(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    async with make_bridge(prosody_avu) as bridge, chat_user(prosody_avu, "alice") as alice:
        room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await alice.join(room_jid, "Alice")
        await room.caller_joined(leg(display_name="Bob Phone"))
        await alice.wait_for(lambda: "Bob Phone" in alice.occupants(room_jid))

        # chat → SIP
        await alice.say(room_jid, "hello phones")
        await alice.say(room_jid, "marker one")
        await recorder.wait_for(lambda e: isinstance(e, SendSipMessage) and "marker one" in e.body)
        to_sip = [e for e in recorder.of(SendSipMessage) if "hello phones" in e.body]
        assert len(to_sip) == 1
        assert to_sip[0].leg_id == "leg-1"
        assert to_sip[0].body == "Alice: hello phones"
        assert to_sip[0].sender_display == "Alice"

        # SIP → chat
        seen = len(alice.messages)
        outcome = await room.relay_from_sip(
            SipMessageReceived(
                room="weekly",
                sender_uri="sip:+33612345612@pbx.example",
                body="hi from the phone",
                call_id="abc@10.0.0.5",
                language="fr",
                leg_id="leg-1",
                subject="Hi",
            )
        )
        assert outcome is RelayOutcome.SENT
        await alice.say(room_jid, "marker two")
        await alice.next_message(lambda m: m.body == "marker two", start=seen)
        from_phone = [m for m in alice.messages[seen:] if m.body == "hi from the phone"]
        assert len(from_phone) == 1
        assert from_phone[0].nick == "Bob Phone"
        assert from_phone[0].thread == "abc"  # Call-ID without its host part
        assert from_phone[0].lang == "fr"
        assert from_phone[0].subject == "Hi"
        # never echoed back to the caller
        await recorder.wait_for(lambda e: isinstance(e, SendSipMessage) and "marker two" in e.body)
        assert not [e for e in recorder.of(SendSipMessage) if "hi from the phone" in e.body]
