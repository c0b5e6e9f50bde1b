"""What any XMPP client shows of a linked room, against the real Prosody: the phone address
in the subject and the description (not only in disco#info), a moderated room where callers
and guests keep their voice, entity capabilities that verify, corrections marked for phones,
and who is speaking as a rate-limited presence status."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

from slixmpp import JID
from structlog.testing import capture_logs

from bridge.core.events import SendSipMessage
from bridge.devstack.prosody import ProsodyServer
from bridge.xmpp.adhoc import AdhocCommands
from bridge.xmpp.events import RoomJoined, SubjectChanged
from bridge.xmpp.members import PUPPET_STATUS
from bridge.xmpp.room import SPEAKING_STATUS
from tests.xmpp.clients import ChatUser, Recorder, chat_user
from tests.xmpp.conftest import BridgeFactory
from tests.xmpp.test_room_basic import SIP_URI, leg

DIAL_IN = f"Join by phone: {SIP_URI}"


def _subjects(user: ChatUser, room: str) -> list[str]:
    """Every subject the user was sent in ``room`` (messages with a <subject/>, no body)."""
    return [m.subject for m in user.messages if m.room == room and m.type == "groupchat"
            and m.has_subject and not m.body]  # fmt: skip


async def _features(user: ChatUser, room: str) -> set[str]:
    info = await user.client.plugin["xep_0030"].get_info(jid=JID(room), timeout=10)
    return set(info["disco_info"]["features"])


async def test_the_phone_address_is_in_subject_and_description(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    async with make_bridge(prosody_avu) as bridge, chat_user(prosody_avu, "alice") as alice:
        await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await recorder.wait_for(lambda e: isinstance(e, RoomJoined))
        await alice.join(room_jid, "Alice")
        # the subject every client shows on joining
        await alice.wait_for(lambda: DIAL_IN in _subjects(alice, room_jid))
        info = await alice.roominfo(room_jid)
        assert info["muc#roominfo_description"] == DIAL_IN
        assert info["audio-video-uri"] == SIP_URI  # stays, for clients that read it
        # our own line is not the meeting's subject: not mirrored to the conference
        assert not [e for e in recorder.of(SubjectChanged) if e.subject == DIAL_IN]
        # unlinked: the line goes
        await bridge.rooms[room_jid].withdraw_sip_uri()
        await alice.wait_for(lambda: _subjects(alice, room_jid)[-1] == "")
        info = await alice.roominfo(room_jid)
        assert "Join by phone" not in str(info.get("muc#roominfo_description", ""))


async def test_a_subject_someone_set_is_kept(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    async with chat_user(prosody_avu, "alice") as alice:
        await alice.join(room_jid, "Alice")  # alice creates the room: owner
        alice.client.make_message(mto=JID(room_jid), mtype="groupchat",
                                  msubject="Release planning").send()  # fmt: skip
        await alice.wait_for(lambda: "Release planning" in _subjects(alice, room_jid))
        await alice.set_affiliation(room_jid, prosody_avu.component_domain, "owner")
        recorder = Recorder()
        async with make_bridge(prosody_avu) as bridge:
            await bridge.link_room(room_jid, SIP_URI, sink=recorder)
            await recorder.wait_for(lambda e: isinstance(e, RoomJoined))
            await alice.say(room_jid, "marker")
            await alice.next_message(lambda m: m.body == "marker")
            assert DIAL_IN not in _subjects(alice, room_jid)
            assert bridge.rooms[room_jid].subject == "Release planning"
            info = await alice.roominfo(room_jid)
            assert info["muc#roominfo_description"] == DIAL_IN  # the description still says it


async def test_linked_room_is_moderated_and_newcomers_keep_their_voice(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    async with make_bridge(prosody_avu) as bridge, chat_user(prosody_avu, "bob") as bob:
        room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await recorder.wait_for(lambda e: isinstance(e, RoomJoined))
        features = await _features(bob, room_jid)
        assert "muc_moderated" in features and "muc_unmoderated" not in features
        await bob.join(room_jid, "Bob")  # no affiliation: a visitor in a moderated room …
        assert bob.occupants(room_jid)["Bob"].role == "participant"  # … but not in ours
        await room.caller_joined(leg(display_name="Pat Phone"))
        await bob.wait_for(lambda: "Pat Phone" in bob.occupants(room_jid))
        assert bob.occupants(room_jid)["Pat Phone"].role == "participant"  # not muted
        await bob.say(room_jid, "guests can write")
        await recorder.wait_for(
            lambda e: isinstance(e, SendSipMessage) and "guests can write" in e.body
        )
        await bridge.unlink_room(room_jid)
        assert "muc_unmoderated" in await _features(bob, room_jid)  # given back as it was


async def test_stock_prosody_room_is_not_made_moderated(
    prosody: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    """Without our module a moderated Prosody room would make every caller a visitor."""
    room_jid = f"weekly@{prosody.muc_domain}"
    recorder = Recorder()
    async with make_bridge(prosody) as bridge, chat_user(prosody, "bob") as bob:
        await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await recorder.wait_for(lambda e: isinstance(e, RoomJoined))
        assert "muc_unmoderated" in await _features(bob, room_jid)
        info = await bob.roominfo(room_jid)
        assert info["muc#roominfo_description"] == DIAL_IN


def xep0115_ver(info: Any) -> str:
    """XEP-0115 §5.1, by hand: identities, features, then extended forms, SHA-1, base64."""
    identities = sorted(
        "/".join(part or "" for part in (category, kind, lang, name))
        for category, kind, lang, name in info["identities"]
    )
    text = "".join(f"{i}<" for i in identities)
    text += "".join(f"{f}<" for f in sorted(info["features"]))
    forms = []
    for form in info.xml.findall("{jabber:x:data}x"):
        fields = {
            f.get("var"): sorted(v.text or "" for v in f.findall("{jabber:x:data}value"))
            for f in form.findall("{jabber:x:data}field")
        }
        form_type = fields.pop("FORM_TYPE", [""])[0]
        forms.append((form_type, fields))
    for form_type, fields in sorted(forms, key=lambda f: f[0]):
        text += f"{form_type}<"
        for var in sorted(fields):
            text += f"{var}<" + "".join(f"{v}<" for v in fields[var])
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()


async def test_entity_capabilities_verify(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    caps: dict[str, tuple[str, str, str]] = {}

    def on_presence(presence: Any) -> None:
        if presence["caps"]["ver"]:
            c = presence["caps"]
            caps[presence["from"].resource] = (c["node"], c["ver"], c["hash"])

    async with make_bridge(prosody_avu) as bridge, chat_user(prosody_avu, "alice") as alice:
        # as the service does: ad-hoc commands are added after the component connected
        AdhocCommands(bridge, lambda *a: None).register()  # type: ignore[arg-type,return-value]
        await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await recorder.wait_for(lambda e: isinstance(e, RoomJoined))
        alice.client.add_event_handler("presence", on_presence)
        await alice.join(room_jid, "Alice")
        await alice.wait_for(lambda: "bridge" in caps)
        node, ver, algo = caps["bridge"]
        assert algo == "sha-1"
        disco = alice.client.plugin["xep_0030"]
        reply = await disco.get_info(jid=JID(f"{room_jid}/bridge"), node=f"{node}#{ver}",
                                     timeout=10)  # fmt: skip
        info = reply["disco_info"]
        assert "http://jabber.org/protocol/commands" in info["features"]
        assert xep0115_ver(info) == ver, "the caps hash must be that of the info we answer"


async def test_a_correction_reaches_phones_marked(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    async with make_bridge(prosody_avu) as bridge, chat_user(prosody_avu, "alice") as alice:
        room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await recorder.wait_for(lambda e: isinstance(e, RoomJoined))
        await alice.join(room_jid, "Alice")
        await room.caller_joined(leg(display_name="Pat Phone"))
        await alice.wait_for(lambda: "Pat Phone" in alice.occupants(room_jid))
        first = alice.client.make_message(mto=JID(room_jid), mbody="meet at 10", mtype="groupchat")
        first["id"] = "m1"
        first.send()
        fixed = alice.client.make_message(mto=JID(room_jid), mbody="meet at 11", mtype="groupchat")
        fixed.xml.append(fixed.xml.makeelement("{urn:xmpp:message-correct:0}replace", {"id": "m1"}))
        with capture_logs() as logs:
            fixed.send()
            sent = await recorder.wait_for(
                lambda e: isinstance(e, SendSipMessage) and "meet at 11" in e.body
            )
        assert sent.body == "Alice (correction): meet at 11"
        relayed = [e for e in logs if e["event"] == "relay.to_sip"]
        assert relayed and relayed[-1]["correction"] is True
        assert relayed[-1]["log_level"] == "info" and "text" not in relayed[-1]  # no words
        assert not any("meet at 11" in str(e) for e in logs if e["log_level"] != "debug")


async def test_speaking_shows_as_a_status_without_flooding(
    prosody_avu: ProsodyServer, make_bridge: BridgeFactory
) -> None:
    room_jid = f"weekly@{prosody_avu.muc_domain}"
    recorder = Recorder()
    statuses: list[str] = []

    def on_presence(presence: Any) -> None:
        if presence["from"].resource == "Pat Phone" and presence["type"] != "unavailable":
            statuses.append(str(presence["status"]))

    async with (
        make_bridge(prosody_avu, speaking_min_interval=1.0) as bridge,
        chat_user(prosody_avu, "alice") as alice,
    ):
        room = await bridge.link_room(room_jid, SIP_URI, sink=recorder)
        await recorder.wait_for(lambda e: isinstance(e, RoomJoined))
        alice.client.add_event_handler("presence", on_presence)
        await alice.join(room_jid, "Alice")
        await room.caller_joined(leg(display_name="Pat Phone"))
        await alice.wait_for(lambda: "Pat Phone" in alice.occupants(room_jid))
        assert statuses == [PUPPET_STATUS]
        room.set_speaking("leg-1", True)
        await alice.wait_for(lambda: statuses[-1] == SPEAKING_STATUS)
        assert alice.occupants(room_jid)["Pat Phone"].status == SPEAKING_STATUS
        # the mixer flips at every pause: 40 flips in 2 s …
        for i in range(40):
            room.set_speaking("leg-1", i % 2 == 1)
            await asyncio.sleep(0.05)
        room.set_speaking("leg-1", False)
        await alice.wait_for(lambda: statuses[-1] == PUPPET_STATUS, within=10)
        await asyncio.sleep(1.5)  # nothing more is on its way
        # … are pauses in one stretch of talk: the room saw "speaking", then its end, once
        assert statuses == [PUPPET_STATUS, SPEAKING_STATUS, PUPPET_STATUS]
