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
        # and in the description, which every client shows
        assert info["muc#roominfo_description"] == f"Join by phone: {SIP_URI}"
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


async def test_each_groupchat_line_is_handled_once_not_once_per_puppet(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    """The room sends a line to every occupant; only the control occupant's copy becomes a
    stanza in the component (issue 22: N puppets cost N parses per line)."""
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import StanzaPath

    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    async with (
        make_bridge(prosody_avu, rate_limit_burst=100) as bridge,
        chat_user(prosody_avu, "alice") as alice,
    ):
        built: list[str] = []
        counter = Callback(
            "count", StanzaPath("message@type=groupchat"), lambda m: built.append(str(m["to"]))
        )
        bridge.register_handler(counter)
        room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await alice.join(room_jid, "Alice")
        for n in range(3):
            await room.caller_joined(leg(f"leg-{n}", display_name=f"Phone {n}"))
        await alice.wait_for(lambda: "Phone 2" in alice.occupants(room_jid))
        built.clear()
        for n in range(5):
            await alice.say(room_jid, f"line {n}")
        await alice.say(room_jid, "marker")
        for n in range(3):
            await recorder.wait_for(
                lambda e, n=n: isinstance(e, SendSipMessage)
                and e.leg_id == f"leg-{n}"
                and "marker" in e.body
            )
        per_leg = {
            n: [e.body for e in recorder.of(SendSipMessage) if e.leg_id == f"leg-{n}"]
            for n in range(3)
        }
        for bodies in per_leg.values():
            assert [b for b in bodies if "line" in b] == [f"Alice: line {n}" for n in range(5)]
        assert built == [str(bridge.control_jid)] * 6  # one stanza per line: the control's
        assert bridge.groupchat_copies_dropped >= 18  # 6 lines x 3 puppets, never built


async def test_a_join_cancelled_as_its_presence_arrives_stays_cancelled(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    """Shutdown cancels the node's tasks; one that is waiting for a puppet's join presence
    must end even when that presence is read in the same loop turn as the cancel (issue 22:
    Python 3.11's ``asyncio.wait_for`` then returned the result and swallowed the cancel,
    and the task went on serving events: the 300 s shutdown hang)."""
    import asyncio

    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import StanzaPath

    room_jid = f"weekly@{prosody_avu.muc_domain}"
    async with make_bridge(prosody_avu) as bridge:
        room = await bridge.link_room(room_jid, SIP_URI, sink=Recorder())
        joining: list[asyncio.Task[object]] = []

        def cancel_on_self_presence(presence: object) -> None:
            # runs right after the room resolved the join future from this presence
            if joining and not joining[0].done():
                joining[0].cancel()

        bridge.register_handler(
            Callback("cancel", StanzaPath("presence"), cancel_on_self_presence)
        )
        task = asyncio.get_running_loop().create_task(room.caller_joined(leg()))
        joining.append(task)
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, "the join never ended"
        assert task.cancelled(), f"cancellation swallowed: the join returned {task.result()!r}"


async def test_a_caller_message_sent_while_its_puppet_joins_reaches_the_room(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    """SIP side of the join edge (issue 22): a MESSAGE from a caller whose puppet is not in
    the room yet is kept and sent, in order, once it is (it used to be dropped: pjsua had
    already answered 200)."""
    import asyncio

    room_jid = f"weekly@{prosody_avu.muc_domain}"
    async with make_bridge(prosody_avu) as bridge, chat_user(prosody_avu, "alice") as alice:
        room = await bridge.link_room(room_jid, SIP_URI, sink=Recorder())
        await alice.join(room_jid, "Alice")
        joining = asyncio.get_running_loop().create_task(
            room.caller_joined(leg(display_name="Bob Phone"))
        )
        await asyncio.sleep(0)  # the join presence is out, the answer not in yet
        outcomes = [
            await room.relay_from_sip(
                SipMessageReceived(
                    room="weekly", sender_uri="sip:+33612345612@pbx.example",
                    body=f"early {n}", call_id="abc@10.0.0.5", leg_id="leg-1",
                )
            )
            for n in range(2)
        ]
        assert outcomes == [RelayOutcome.QUEUED] * 2
        assert await joining is not None
        first = await alice.next_message(lambda m: m.body == "early 0")
        second = await alice.next_message(lambda m: m.body == "early 1")
        assert first.nick == second.nick == "Bob Phone"
        assert alice.messages.index(first) < alice.messages.index(second)
