"""Text relay rules through the real room: split, refuse, rate limit, fan-out, privacy."""

from __future__ import annotations

from bridge.core.events import SendSipMessage, SipMessageReceived
from bridge.devstack.prosody import ProsodyServer
from bridge.xmpp.relay import RelayOutcome
from tests.xmpp.clients import Recorder, chat_user
from tests.xmpp.conftest import BridgeFactory
from tests.xmpp.test_room_basic import SIP_URI, leg


def sip(body: str, leg_id: str = "leg-1", content_type: str = "text/plain") -> SipMessageReceived:
    return SipMessageReceived(
        room="weekly",
        sender_uri="sip:ann@pbx",
        body=body,
        content_type=content_type,
        call_id="c1@h",
        leg_id=leg_id,
    )


def to_leg(recorder: Recorder, leg_id: str) -> list[SendSipMessage]:
    return [e for e in recorder.of(SendSipMessage) if e.leg_id == leg_id]


async def test_sip_side_limits_and_fan_out(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    settings = {"rate_limit_burst": 2, "rate_limit_per_minute": 0.5, "max_message_chars": 100}
    async with (
        make_bridge(prosody_avu, **settings) as bridge,
        chat_user(prosody_avu, "alice") as alice,
    ):
        room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await alice.join(room_jid, "Alice")
        await room.caller_joined(leg("leg-1", display_name="Ann", from_uri="sip:ann@pbx"))
        await room.caller_joined(leg("leg-2", display_name="Ben", from_uri="sip:ben@pbx"))

        # unknown leg, unsupported type, typing notification
        assert await room.relay_from_sip(sip("x", leg_id="nope")) is RelayOutcome.NOT_IN_ROOM
        assert await room.relay_from_sip(sip("x", content_type="image/png")) is (
            RelayOutcome.UNSUPPORTED
        )
        typing = sip("<isComposing/>", content_type="application/im-iscomposing+xml")
        assert await room.relay_from_sip(typing) is RelayOutcome.IGNORED

        # too long: refused with a clear reply to that caller only
        assert await room.relay_from_sip(sip("y" * 101)) is RelayOutcome.TOO_LONG
        [refusal] = to_leg(recorder, "leg-1")
        assert "101 characters" in refusal.body and "limit is 100" in refusal.body

        # HTML becomes plain text; the other caller gets it too, the sender does not
        html = sip("<p>Hello <b>all</b></p>", content_type="text/html; charset=utf-8")
        assert await room.relay_from_sip(html) is RelayOutcome.SENT
        seen = await alice.next_message(lambda m: m.nick == "Ann")
        assert seen.body == "Hello all" and seen.type == "groupchat"
        assert [m.body for m in to_leg(recorder, "leg-2")] == ["Ann: Hello all"]
        assert len(to_leg(recorder, "leg-1")) == 1  # still only the refusal

        # rate limit: burst of 2, then refused; the caller is told once
        assert await room.relay_from_sip(sip("two")) is RelayOutcome.SENT
        assert await room.relay_from_sip(sip("three")) is RelayOutcome.RATE_LIMITED
        assert await room.relay_from_sip(sip("four")) is RelayOutcome.RATE_LIMITED
        notices = [m for m in to_leg(recorder, "leg-1") if "too fast" in m.body]
        assert len(notices) == 1
        # the other caller has its own budget
        assert await room.relay_from_sip(sip("from ben", leg_id="leg-2")) is RelayOutcome.SENT


async def test_chat_side_split_refuse_and_private(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    settings = {"sip_message_max_bytes": 200, "max_message_chars": 1000}
    async with (
        make_bridge(prosody_avu, **settings) as bridge,
        chat_user(prosody_avu, "alice") as alice,
    ):
        room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await alice.join(room_jid, "Alice")
        await room.caller_joined(leg("leg-1", display_name="Ann", from_uri="sip:ann@pbx"))
        await room.caller_joined(leg("leg-2", display_name="Ben", from_uri="sip:ben@pbx"))
        await alice.wait_for(lambda: {"Ann", "Ben"} <= set(alice.occupants(room_jid)))

        # long but allowed: split into numbered parts of ≤ 200 bytes, to every caller
        text = " ".join(f"word{i}" for i in range(100))  # 589 characters
        await alice.say(room_jid, text)
        await alice.say(room_jid, "end")
        await recorder.wait_for(
            lambda e: (
                isinstance(e, SendSipMessage) and e.body == "Alice: end" and e.leg_id == "leg-2"
            )
        )
        parts = [m for m in to_leg(recorder, "leg-1") if "word" in m.body]
        assert len(parts) > 1
        assert all(len(m.body.encode()) <= 200 for m in parts)
        assert parts[0].body.startswith(f"Alice (1/{len(parts)}): word0 ")
        rebuilt = " ".join(m.body.split(": ", 1)[1] for m in parts)
        assert rebuilt == text
        assert len([m for m in to_leg(recorder, "leg-2") if "word" in m.body]) == len(parts)

        # too long: not relayed, Alice is told privately by the bridge
        count = len(recorder.of(SendSipMessage))
        await alice.say(room_jid, "z" * 1001)
        notice = await alice.next_message(lambda m: m.type == "chat" and m.nick == "bridge")
        assert "1001 characters" in notice.body
        assert len(recorder.of(SendSipMessage)) == count

        # a private message to a caller's puppet reaches that caller only
        await alice.whisper(room_jid, "Ben", "psst")
        private = await recorder.wait_for(
            lambda e: isinstance(e, SendSipMessage) and "psst" in e.body
        )
        assert private.leg_id == "leg-2" and private.body == "Alice (private): psst"
