"""Room-side moderation of puppets → typed events for the mirror policy (DESIGN §4)."""

from __future__ import annotations

from bridge.devstack.prosody import ProsodyServer
from bridge.xmpp.events import (
    OccupantRoleChanged,
    PuppetKicked,
    PuppetVoiceChanged,
    SubjectChanged,
)
from tests.xmpp.clients import ChatUser, Recorder, chat_user
from tests.xmpp.conftest import BridgeFactory
from tests.xmpp.test_room_basic import SIP_URI, leg


async def _owned_room(alice: ChatUser, prosody: ProsodyServer, name: str = "weekly") -> str:
    """Alice creates the room (owner) and makes the bridge an owner too."""
    room_jid = f"{name}@{prosody.muc_domain}"
    await alice.join(room_jid, "Alice")
    await alice.set_affiliation(room_jid, prosody.component_domain, "owner")
    return room_jid


async def test_voice_kick_and_roles(prosody_avu: ProsodyServer, make_bridge: BridgeFactory) -> None:
    recorder = Recorder()
    async with chat_user(prosody_avu, "alice") as alice, chat_user(prosody_avu, "bob") as bob:
        room_jid = await _owned_room(alice, prosody_avu)
        async with make_bridge(prosody_avu) as bridge:
            room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
            await room.caller_joined(leg(display_name="Ann"))
            await alice.wait_for(lambda: "Ann" in alice.occupants(room_jid))

            # a moderator revokes the caller's voice, then gives it back
            await alice.set_role(room_jid, "Ann", "visitor", reason="noise")
            muted = await recorder.wait_for(lambda e: isinstance(e, PuppetVoiceChanged))
            assert (muted.leg_id, muted.has_voice, muted.by_bridge) == ("leg-1", False, False)
            mark = len(recorder.events)
            await alice.set_role(room_jid, "Ann", "participant")
            unmuted = await recorder.wait_for(
                lambda e: isinstance(e, PuppetVoiceChanged), start=mark
            )
            assert unmuted.has_voice

            # the bridge mirrors a SIP-side mute: the event says it came from the bridge
            mark = len(recorder.events)
            await room.set_voice("leg-1", False, reason="muted on the phone")
            self_muted = await recorder.wait_for(
                lambda e: isinstance(e, PuppetVoiceChanged), start=mark
            )
            assert self_muted.by_bridge and not self_muted.has_voice
            await alice.wait_for(lambda: alice.occupants(room_jid)["Ann"].role == "visitor")

            # a chat user is made moderator: the policy hears about it
            await bob.join(room_jid, "Bob")
            mark = len(recorder.events)
            await alice.set_role(room_jid, "Bob", "moderator")
            promoted = await recorder.wait_for(
                lambda e: isinstance(e, OccupantRoleChanged) and e.nick == "Bob", start=mark
            )
            assert promoted.role == "moderator" and promoted.previous_role == "participant"
            assert promoted.jid == prosody_avu.jid("bob") and promoted.leg_id == ""

            # subject change
            await alice.say(room_jid, "", subject="Quarterly review")
            subject = await recorder.wait_for(
                lambda e: isinstance(e, SubjectChanged) and not e.initial
            )
            assert subject.subject == "Quarterly review" and subject.by_nick == "Alice"

            # kick
            await alice.kick(room_jid, "Ann", reason="bye")
            kicked = await recorder.wait_for(lambda e: isinstance(e, PuppetKicked))
            assert (kicked.leg_id, kicked.reason) == ("leg-1", "bye")
            assert room.present_puppets == {}
            # a kicked caller is not put back by the next sync
            await room.sync()
            assert "Ann" not in alice.occupants(room_jid)
