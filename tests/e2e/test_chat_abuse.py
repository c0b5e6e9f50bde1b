"""Issue 19, chat side: what one occupant or caller can repeat is bounded by who they are.

Each test performs the abuse against a whole node (real Prosody, Redis, SIP worker) and fails
without the limit: a nick change that used to buy a fresh relay or command budget, a
private message to a puppet that became hundreds of SIP MESSAGEs, ``*6`` pressed as fast as a
phone can send it, ``!help`` answered to the whole room, XEP-0050 sessions piling up.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.devstack.prosody import ProsodyServer
from bridge.node.supervisor import Node
from tests.e2e.conftest import NodeFactory
from tests.e2e.test_commands import (
    BRIDGE_NICK,
    command,
    drain,
    info_dtmf,
    owner,
    participant,
    requests,
    run,
)
from tests.e2e.test_mirroring import MUC, WAIT, caller, caller_in_room, dial, until
from tests.sip.rawsip import RawUac
from tests.xmpp.clients import ChatUser, Received

SLOW = 0.5  # tokens per minute: nothing refills during a test


def slow_relay(**limits: Any) -> dict[str, Any]:
    return {"xmpp": {"rate_limit_burst": 2, "rate_limit_per_minute": SLOW, "limits": limits}}


async def private_from_bridge(user: ChatUser, fragment: str, start: int = 0) -> Received:
    return await user.next_message(
        lambda m: m.nick == BRIDGE_NICK and m.type == "chat" and fragment in m.body, WAIT, start
    )


async def marker_reaches(uac: RawUac, alice: ChatUser, text: str) -> None:
    """Alice (her own budget) says ``text``; wait until the caller has it: anything the
    room sent the caller before it has arrived too (one path, in order)."""
    await alice.say(MUC, text)
    await drain(uac, "MESSAGE", text)


async def test_changing_nick_does_not_reset_the_chat_to_phone_limit(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    async with (
        make_node(**slow_relay()) as node,
        owner(moderated_prosody) as alice,
        participant(moderated_prosody) as bob,
        caller(node) as uac,
    ):
        await caller_in_room(node, alice, uac, "Carl Caller")
        await bob.say(MUC, "one")
        await bob.say(MUC, "two")
        await bob.change_nick(MUC, "Bobby")
        start = len(bob.messages)
        await bob.say(MUC, "three from a new nick")
        await private_from_bridge(bob, "faster than phone callers", start)
        await marker_reaches(uac, alice, "marker after three")
        bodies = [m.body for m in requests(uac, "MESSAGE")]
        assert any("two" in b for b in bodies)
        assert not any("three from a new nick" in b for b in bodies)


async def test_private_message_to_a_puppet_is_capped_in_length_and_rate(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    async with (
        make_node(**slow_relay()) as node,
        owner(moderated_prosody) as alice,
        participant(moderated_prosody) as bob,
        caller(node) as uac,
    ):
        await caller_in_room(node, alice, uac, "Carl Caller")
        start = len(bob.messages)
        await bob.whisper(MUC, "Carl Caller", "x" * 200_000)
        told = await private_from_bridge(bob, "was not delivered", start)
        assert "200000 characters, the limit is 2000" in told.body
        await bob.whisper(MUC, "Carl Caller", "first whisper")
        first = await drain(uac, "MESSAGE", "first whisper")
        assert "Bob (private)" in first.get("From") + first.body
        await bob.whisper(MUC, "Carl Caller", "second whisper")
        await drain(uac, "MESSAGE", "second whisper")
        await bob.change_nick(MUC, "Bobby")
        start = len(bob.messages)
        await bob.whisper(MUC, "Carl Caller", "third whisper")
        await private_from_bridge(bob, "faster than a phone can take them", start)
        await marker_reaches(uac, alice, "marker after whispers")
        bodies = [m.body for m in requests(uac, "MESSAGE")]
        assert not any("xxxxxxxxxx" in b for b in bodies)  # not one part of the long one
        assert not any("third whisper" in b for b in bodies)


async def test_commands_are_rate_limited_per_real_jid_and_answered_privately(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    overrides = {"xmpp": {"limits": {"command_burst": 2, "command_per_minute": SLOW}}}
    async with (
        make_node(**overrides),
        owner(moderated_prosody) as alice,
        participant(moderated_prosody) as bob,
    ):
        helped = await command(bob, "!help")
        assert helped.type == "chat" and "!status" in helped.body  # to Bob alone
        refused = await command(bob, "!mute Alice")
        assert refused.type == "chat" and "Only moderators" in refused.body
        await bob.change_nick(MUC, "Bobby")
        start = len(bob.messages)
        await bob.say(MUC, "!help")
        slowed = await private_from_bridge(bob, "too fast", start)
        assert "!status" not in slowed.body
        # nobody else saw any of it: the room got no help text, no refusal
        assert not [
            m for m in alice.messages
            if m.nick == BRIDGE_NICK and ("!status" in m.body or "Only moderators" in m.body)
        ]  # fmt: skip
        # Alice has her own budget
        status = await command(alice, "!status")
        assert status.type == "chat"


async def test_self_mute_toggles_are_rate_limited_per_caller(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    overrides = {"xmpp": {"limits": {"dtmf_command_burst": 2, "dtmf_command_per_minute": SLOW}}}
    async with (
        make_node(**overrides) as node,
        owner(moderated_prosody) as alice,
        caller(node) as uac,
    ):
        leg = await caller_in_room(node, alice, uac, "Carl Caller")
        await info_dtmf(uac, "*6")
        await until(lambda: node.pool.legs()[leg].muted, "muted by *6")
        await info_dtmf(uac, "*6")
        await until(lambda: not node.pool.legs()[leg].muted, "unmuted by *6")
        await info_dtmf(uac, "*6*6*6")
        await drain(uac, "MESSAGE", "keypad commands too fast")
        await asyncio.sleep(0.5)  # anything that would have toggled has had its chance
        assert not node.pool.legs()[leg].muted
        state = node.engine.cached("standup")
        assert state is not None and not state.mutes


async def test_commands_of_one_room_do_not_wait_for_another_room(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    async with make_node(rooms=["standup", "other"]) as node, owner(moderated_prosody) as alice:
        executor = node.command_hook.__self__  # the CommandExecutor app.py wired in
        other = f"other@{moderated_prosody.muc_domain}"
        async with executor.room_lock(other):  # a slow command holds the other room
            status = await asyncio.wait_for(command(alice, "!status"), WAIT)
        assert "sip:standup@" in status.body
        assert executor.room_locks_held == 0  # freed: ad-hoc room names cannot grow memory


async def test_adhoc_sessions_are_freed(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    overrides = {"xmpp": {"limits": {"adhoc_session_ttl": 1.0, "command_burst": 50}}}
    async with make_node(**overrides) as node, owner(moderated_prosody) as alice:
        component = node.component.boundjid.bare
        sessions = node.component.plugin["xep_0050"].sessions
        for _ in range(20):
            await run(alice, component, "help")
        assert len(sessions) == 0  # finished sessions are not kept
        # a command started but never completed: kept for the TTL, then dropped
        from tests.e2e.test_commands import adhoc

        started = await adhoc(alice).send_command(component, "status", timeout=WAIT)
        assert started["command"]["status"] == "executing"
        assert len(sessions) == 1
        await until(lambda: len(sessions) == 0, "unfinished session expired")


async def test_a_caller_cannot_take_a_look_alike_of_the_bridge_or_an_occupant(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    async with owner(moderated_prosody) as alice:
        async with caller(node, user="mallory", display="bridgе") as uac:  # Cyrillic е
            await dial(uac)
            await alice.wait_for(lambda: "bridgе (2)" in alice.occupants(MUC), WAIT)
            assert "bridgе" not in alice.occupants(MUC)
        async with caller(node, user="eve", display="АLICE") as uac:  # Cyrillic А
            await dial(uac)
            await alice.wait_for(lambda: "АLICE (2)" in alice.occupants(MUC), WAIT)


async def test_a_kick_reason_cannot_inject_sip_headers(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    evil = 'get out "now" \\ \r\nX-Injected: yes\r\n\r\nBYE sip:x SIP/2.0 ' + "z" * 2000
    async with owner(moderated_prosody) as alice, caller(node) as uac:
        await caller_in_room(node, alice, uac, "Carl Caller")
        await alice.kick(MUC, "Carl Caller", evil)
        bye = await drain(uac, "BYE")
        assert not bye.get("X-Injected")
        reason = bye.get("Reason")
        assert reason.startswith('SIP;cause=200;text="kicked from the chat room: get out \\"now')
        assert "\\\\ X-Injected: yes BYE sip:x" in reason  # one line, quotes and \\ escaped
        assert len(reason) < 200  # cut, not 2 kB


async def test_linking_by_command_is_off_unless_the_operator_allows_the_room(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    import pytest
    from slixmpp.exceptions import IqError

    side = f"side@{moderated_prosody.muc_domain}"
    team = f"team-a@{moderated_prosody.muc_domain}"

    async def own_with_bridge(alice: ChatUser, node: Node, room: str) -> None:
        """Alice's room, where the bridge may read the affiliation lists (as it must)."""
        await alice.join(room, "Alice")
        await alice.set_affiliation(room, moderated_prosody.jid("alice"), "owner")
        await alice.set_affiliation(room, str(node.component.control_jid.bare), "owner")

    async with make_node() as node, owner(moderated_prosody) as alice:
        await own_with_bridge(alice, node, side)
        component = node.component.boundjid.bare
        with pytest.raises(IqError) as refused:
            await run(alice, component, "link", room=side)
        assert "turned off" in refused.value.iq["error"]["text"]
        assert "side" not in node.rooms
    linking = {"self_service": True, "allowed_rooms": ["team-*@conference.localhost"],
               "max_rooms": 2}  # fmt: skip
    async with make_node(xmpp={"linking": linking}) as node, owner(moderated_prosody) as alice:
        await own_with_bridge(alice, node, side)
        await own_with_bridge(alice, node, team)
        component = node.component.boundjid.bare
        with pytest.raises(IqError) as refused:
            await run(alice, component, "link", room=side)
        assert "not on its allow-list" in refused.value.iq["error"]["text"]
        done = await run(alice, component, "link", room=team)
        assert "Linked" in done["command"]["notes"][0][1]
        other = f"team-b@{moderated_prosody.muc_domain}"
        await own_with_bridge(alice, node, other)
        with pytest.raises(IqError) as refused:
            await run(alice, component, "link", room=other)
        assert "maximum of 2" in refused.value.iq["error"]["text"]
