"""Hostile XMPP from real clients: to the room (oversize, odd payloads, broken commands) and
straight to the component and the puppets (forged MUC presences, unknown IQs, stray results).
Nothing may crash the component, hang up a caller, or reach the call side unchecked; IQs get
error replies; commands get a clear answer in the room."""

from __future__ import annotations

import asyncio

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError

from bridge.devstack.prosody import ProsodyServer
from bridge.node.supervisor import Node
from tests.e2e.conftest import NodeFactory
from tests.faults.conftest import MUC, ROOM, WAIT, dial, moderator
from tests.sip.rawsip import RawUac
from tests.xmpp.clients import ChatUser, chat_user

MUC_USER = "http://jabber.org/protocol/muc#user"


def puppet_of(node: Node, nick: str) -> str:
    state = node.engine.cached(ROOM)
    assert state is not None
    return next(leg.puppet_jid for leg in state.legs.values() if leg.nick == nick)


async def still_serving(node: Node, alice: ChatUser, carl: RawUac, tag: str) -> None:
    """The caller is still in the call and the room, and text still flows both ways."""
    assert node.rooms[ROOM].bridged.joined and node.pool.legs()
    assert "Carl Caller" in alice.occupants(MUC)
    await alice.say(MUC, f"check {tag}")
    while True:
        note = await asyncio.to_thread(carl.wait_request, "MESSAGE", WAIT)
        if f"check {tag}" in note.body:
            break


async def test_hostile_stanzas_to_room_component_and_puppets(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    # a burst of hostile commands: above the command rate limit (tested in tests/e2e)
    more_commands = {"xmpp": {"limits": {"command_burst": 20}}}
    async with make_node(**more_commands) as node, moderator(moderated_prosody) as alice, \
            chat_user(moderated_prosody, "bob") as bob:  # fmt: skip
        carl, status = await dial(node.pool.front_port, "carl", "Carl Caller")
        assert status == 200
        await alice.wait_for(lambda: "Carl Caller" in alice.occupants(MUC))
        component = node.component.boundjid.bare
        puppet = puppet_of(node, "Carl Caller")

        # ---- 1. forged moderation: bob (not even in the room) sends a "kicked" / "muted"
        # presence straight to the puppet and the control occupant. Only the room may.
        for to, code, role in ((puppet, "307", "none"), (puppet, "", "visitor"),
                               (f"{component}", "301", "none")):  # fmt: skip
            status_el = f"<status code='{code}'/>" if code else ""
            bob.client.send_raw(
                f"<presence to='{to}' type='unavailable'><x xmlns='{MUC_USER}'>"
                f"<item affiliation='outcast' role='{role}'/>{status_el}</x></presence>"
            )
        bob.client.send_raw(
            f"<message to='{node.component.control_jid}' type='groupchat'>"
            f"<body>!kick Carl Caller</body></message>"
        )
        bob.client.send_raw(f"<message to='{puppet}' type='groupchat'><body>fake</body></message>")

        # ---- 2. IQs the component does not serve get an error, never silence or a crash
        for payload in ("<query xmlns='urn:example:nothing'/>",
                        "<command xmlns='http://jabber.org/protocol/commands' node='" + "x" * 3000
                        + "' action='execute'/>",
                        "<query xmlns='http://jabber.org/protocol/disco#info' node='"
                        + "n" * 5000 + "'/>"):  # fmt: skip
            for target in (component, puppet):
                iq = bob.client.make_iq_get(ito=JID(target))
                iq.append(_xml(payload))
                with pytest.raises(IqError):
                    await iq.send(timeout=WAIT)
        # stray results and errors are ignored
        bob.client.send_raw(f"<iq type='result' id='stray1' to='{component}'/>")
        bob.client.send_raw(
            f"<iq type='error' id='stray2' to='{puppet}'><error type='cancel'>"
            "<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        # the component still answers (XEP-0199 ping, in order after everything above)
        await bob.client.plugin["xep_0199"].send_ping(JID(component), timeout=WAIT)
        await asyncio.sleep(0)
        assert not node.pool.legs()[next(iter(node.pool.legs()))].muted
        await still_serving(node, alice, carl, "after forged stanzas")

        # ---- 3. hostile messages in the room: nothing unchecked reaches the caller
        await alice.say(MUC, "y" * 20000)  # over xmpp.max_message_chars
        alice.client.send_raw(
            f"<message to='{MUC}' type='groupchat'><body>nested</body>"
            + "<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>"
            + "<span>" * 200 + "deep" + "</span>" * 200 + "</body></html></message>"
        )  # fmt: skip
        alice.client.send_raw(f"<message to='{MUC}' type='groupchat'><subject/><thread>"
                              + "t" * 2000 + "</thread></message>")  # fmt: skip
        alice.client.send_raw(
            f"<message to='{MUC}' type='groupchat'><active "
            "xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )
        await still_serving(node, alice, carl, "after hostile room messages")
        assert not [m for m in carl.received if "y" * 100 in m.body]

        # ---- 4. broken and hostile commands: a clear answer from the bridge, no effect
        hostile = ["!mute \"unterminated", "!kick " + "k" * 5000, "!link ../../../etc",
                   "!pin 1234; DROP TABLE", "!nosuchcommand", "!kick \u202enollaC lraC",
                   "!mute Carl Caller Carl Caller Carl Caller"]  # fmt: skip
        for text in hostile:
            mark = len(alice.messages)
            await alice.say(MUC, text)
            reply = await alice.next_message(lambda m: m.nick == "bridge", WAIT, start=mark)
            assert reply.body.strip(), text
        assert "Carl Caller" in alice.occupants(MUC)
        await still_serving(node, alice, carl, "after hostile commands")
        await asyncio.to_thread(carl.bye)
        carl.close()


def _xml(text: str) -> object:
    from xml.etree.ElementTree import fromstring

    return fromstring(text)

