"""The same bridge against ejabberd, which lacks our module: the description fallback."""

from __future__ import annotations

from bridge.core.events import LegLeft, SendSipMessage, SipMessageReceived
from bridge.devstack.ejabberd import EjabberdServer
from bridge.xmpp.events import RoomJoined
from bridge.xmpp.relay import RelayOutcome
from tests.xmpp.clients import Recorder, anonymous_user
from tests.xmpp.conftest import BridgeFactory
from tests.xmpp.test_room_basic import SIP_URI, leg


async def test_ejabberd_fallback_puppets_and_relay(
    ejabberd: EjabberdServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{ejabberd.muc_domain}"
    recorder = Recorder()
    async with (
        make_bridge(ejabberd) as bridge,
        anonymous_user(ejabberd.domain, ejabberd.c2s_port) as guest,
    ):
        room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        joined = await recorder.wait_for(lambda e: isinstance(e, RoomJoined))
        assert joined.advertised == "description"
        info = await guest.roominfo(room_jid)
        assert f"Join by phone: {SIP_URI}" in str(info.get("muc#roominfo_description"))
        assert "audio-video-uri" not in info

        await guest.join(room_jid, "Guest")
        await room.caller_joined(leg(display_name="Ann"))
        await guest.wait_for(lambda: "Ann" in guest.occupants(room_jid))

        await guest.say(room_jid, "hello Ann")
        got = await recorder.wait_for(lambda e: isinstance(e, SendSipMessage))
        assert got.body == "Guest: hello Ann"
        outcome = await room.relay_from_sip(
            SipMessageReceived(
                room="weekly", sender_uri="sip:ann@pbx", body="hi guest", leg_id="leg-1"
            )
        )
        assert outcome is RelayOutcome.SENT
        message = await guest.next_message(lambda m: m.body == "hi guest")
        assert message.nick == "Ann"

        await room.caller_left(LegLeft("leg-1", "weekly", "c", "bye"))
        await guest.wait_for(lambda: "Ann" not in guest.occupants(room_jid))
        assert [e for e in recorder.of(SendSipMessage) if "hi guest" in e.body] == []
