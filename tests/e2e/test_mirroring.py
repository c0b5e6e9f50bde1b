"""DESIGN §4 end to end: a real caller, a real moderator in the room, one truth in Redis.

Each test is one row of the mirroring table, driven on one side and observed on the other.
The caller is a hand-written UDP user agent (``tests/sip/rawsip.py``) so that the test sees
exactly which BYE, MESSAGE or error response the bridge sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from bridge.devstack.prosody import ProsodyServer
from bridge.metrics import REGISTRY
from bridge.node.supervisor import Node
from tests.e2e.conftest import ROOM, NodeFactory
from tests.sip.rawsip import Message, RawUac
from tests.xmpp.clients import ChatUser, chat_user

MUC = f"{ROOM}@conference.localhost"


def mirrored(kind: str, direction: str) -> float:
    value = REGISTRY.get_sample_value(
        "sipmuc_mirrored_actions_total", {"kind": kind, "direction": direction}
    )
    return value or 0.0


WAIT = 15.0


async def until(predicate: Callable[[], object], what: str, within: float = WAIT) -> None:
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.05)
    assert predicate(), what


@asynccontextmanager
async def caller(
    node: Node, user: str = "carl", display: str = "Carl Caller"
) -> AsyncIterator[RawUac]:
    uac = RawUac(node.pool.front_port, user=user, display=display)
    try:
        yield uac
    finally:
        uac.close()


async def dial(uac: RawUac) -> Message:
    return await asyncio.to_thread(uac.invite, ROOM)


async def next_request(uac: RawUac, method: str) -> Message:
    return await asyncio.to_thread(uac.wait_request, method, WAIT)


def leg_of(node: Node, nick: str) -> str:
    for leg_id, puppet_nick in node.rooms[ROOM].bridged.present_puppets.items():
        if puppet_nick == nick:
            return leg_id
    raise KeyError(nick)


@asynccontextmanager
async def moderator(prosody: ProsodyServer) -> AsyncIterator[ChatUser]:
    async with chat_user(prosody, "alice") as alice:
        await alice.join(MUC, "Alice")
        yield alice


async def caller_in_room(node: Node, alice: ChatUser, uac: RawUac, nick: str) -> str:
    final = await dial(uac)
    assert final.status == 200, final.first_line
    await alice.wait_for(lambda: nick in alice.occupants(MUC), WAIT)
    bridged = node.rooms[ROOM].bridged
    await until(lambda: nick in bridged.present_puppets.values(), "puppet seen by the bridge")
    return leg_of(node, nick)


async def test_room_advertises_the_conference(node: Node, moderated_prosody: ProsodyServer) -> None:
    async with moderator(moderated_prosody) as alice:
        info = await alice.roominfo(MUC)
    assert info.get("audio-video-uri") == f"sip:{ROOM}@127.0.0.1"


async def test_voice_revoked_mutes_the_leg_and_tells_the_caller(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    async with moderator(moderated_prosody) as alice, caller(node) as uac:
        leg = await caller_in_room(node, alice, uac, "Carl Caller")
        assert not node.pool.legs()[leg].muted

        mutes_before = mirrored("mute", "muc_to_sip")
        assert REGISTRY.get_sample_value("sipmuc_legs_active") == 1
        await alice.set_role(MUC, "Carl Caller", "visitor", "too noisy")
        note = await next_request(uac, "MESSAGE")
        assert "muted" in note.body.lower()
        await until(lambda: node.pool.legs()[leg].muted, "leg muted in the mixer")
        state = node.engine.cached(ROOM)
        assert state is not None and any(m.kind == "moderator" for m in state.mutes.values())

        await alice.set_role(MUC, "Carl Caller", "participant")
        await until(lambda: not node.pool.legs()[leg].muted, "leg unmuted")
        assert mirrored("mute", "muc_to_sip") == mutes_before + 1  # /metrics counts it


async def test_kick_in_the_room_hangs_up_the_call(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    async with moderator(moderated_prosody) as alice, caller(node) as uac:
        leg = await caller_in_room(node, alice, uac, "Carl Caller")
        await alice.kick(MUC, "Carl Caller", "bye now")
        await next_request(uac, "BYE")
        await until(lambda: leg not in node.pool.legs(), "leg gone from the pool")


async def test_ban_in_the_room_refuses_the_caller_until_unbanned_even_after_restart(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    async with make_node() as node, moderator(moderated_prosody) as alice:
        async with caller(node) as uac:
            await caller_in_room(node, alice, uac, "Carl Caller")
            puppet = node.rooms[ROOM].bridged.puppets[leg_of(node, "Carl Caller")].jid.bare
            await alice.set_affiliation(MUC, str(puppet), "outcast")
            await next_request(uac, "BYE")
        async with caller(node) as again:
            refused = await dial(again)
            assert refused.status == 403, refused.first_line
    # a new node process on the same Redis: the ban holds
    async with make_node(xmpp=quick_bans(node)) as node, caller(node) as uac:
        refused = await dial(uac)
        assert refused.status == 403, refused.first_line
        async with moderator(moderated_prosody) as alice:
            await alice.set_affiliation(MUC, str(puppet), "none")
            # an unban of an absent puppet sends no presence: the outcast list is polled
            await until(
                lambda: not node.engine.cached(ROOM).bans,  # type: ignore[union-attr]
                "ban lifted in Redis",
                within=WAIT + 6,
            )
        # the workers get the new admission snapshot asynchronously: allow them a moment
        for _ in range(20):
            async with caller(node) as welcome:
                if (await dial(welcome)).status == 200:
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("caller still refused after the ban was lifted")


def quick_bans(node: Node) -> dict[str, object]:
    xmpp = node.settings.xmpp.model_dump()
    xmpp["secret"] = node.settings.xmpp.secret.get_secret_value()
    xmpp["affiliation_sync_interval"] = 0.5
    return xmpp


async def test_caller_self_mute_shows_as_visitor_in_the_room(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    async with moderator(moderated_prosody) as alice, caller(node) as uac:
        leg = await caller_in_room(node, alice, uac, "Carl Caller")
        for digit in "*6":
            await asyncio.to_thread(
                uac.in_dialog, "INFO", body=f"Signal={digit}\r\nDuration=160",
                ctype="application/dtmf-relay",
            )  # fmt: skip
        await alice.wait_for(lambda: alice.occupants(MUC)["Carl Caller"].role == "visitor", WAIT)
        await until(lambda: node.pool.legs()[leg].muted, "leg muted after *6")


async def test_a_muted_caller_who_calls_again_is_muted(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    async with moderator(moderated_prosody) as alice:
        async with caller(node) as uac:
            await caller_in_room(node, alice, uac, "Carl Caller")
            await alice.set_role(MUC, "Carl Caller", "visitor")
            await next_request(uac, "MESSAGE")
            await asyncio.to_thread(uac.bye)
        await alice.wait_for(lambda: "Carl Caller" not in alice.occupants(MUC), WAIT)
        async with caller(node) as again:
            leg = await caller_in_room(node, alice, again, "Carl Caller")
            await until(lambda: node.pool.legs()[leg].muted, "muted again on the new call")
            await alice.wait_for(
                lambda: alice.occupants(MUC)["Carl Caller"].role == "visitor", WAIT
            )


async def test_text_relay_both_ways_exactly_once(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    async with moderator(moderated_prosody) as alice, caller(node) as uac:
        await caller_in_room(node, alice, uac, "Carl Caller")
        await alice.say(MUC, "hello phone")
        message = await next_request(uac, "MESSAGE")
        assert "hello phone" in message.body and "Alice" in message.body
        await asyncio.to_thread(uac.in_dialog, "MESSAGE", body="hello chat", ctype="text/plain")
        await alice.wait_for(lambda: any(m.body == "hello chat" for m in alice.messages), WAIT)
        await asyncio.sleep(0.5)  # anything duplicated would have arrived by now
        assert [m.nick for m in alice.messages if m.body == "hello chat"] == ["Carl Caller"]
        assert not [m for m in uac.received if m.method == "MESSAGE" and "hello chat" in m.body]


async def test_chat_a_phone_sends_outside_its_call_is_relayed_as_that_caller(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    """Linphone and others send chat as a MESSAGE outside the call's dialog: it is the
    caller's when it names the same caller and comes from the call's host; a stranger's
    MESSAGE naming nobody in the room is not relayed."""
    async with moderator(moderated_prosody) as alice, caller(node) as uac:
        await caller_in_room(node, alice, uac, "Carl Caller")
        uri = f"sip:{ROOM}@127.0.0.1:{node.pool.front_port}"
        for user, text in (("mallory", "spoofed?"), ("carl", "typed outside the call")):
            other = RawUac(node.pool.front_port, user=user, display="Whoever")
            other.room = ROOM
            try:
                other.request("MESSAGE", uri, body=text, ctype="text/plain")
                final = await asyncio.to_thread(other.final_response, "MESSAGE")
                assert final.status == 200
            finally:
                other.close()
        await alice.wait_for(
            lambda: any(m.body == "typed outside the call" for m in alice.messages), WAIT
        )
        await asyncio.sleep(0.5)
        texts = ("spoofed?", "typed outside the call")
        said = [(m.nick, m.body) for m in alice.messages if m.body in texts]
        assert said == [("Carl Caller", "typed outside the call")]


async def test_caller_leaving_removes_the_puppet(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    async with moderator(moderated_prosody) as alice, caller(node) as uac:
        leg = await caller_in_room(node, alice, uac, "Carl Caller")
        await asyncio.to_thread(uac.bye)
        await alice.wait_for(lambda: "Carl Caller" not in alice.occupants(MUC), WAIT)
        await until(lambda: leg not in node.engine.cached(ROOM).legs, "leg removed in Redis")  # type: ignore[union-attr]


async def test_the_room_is_told_when_a_caller_is_unencrypted(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    """RFC 7081 §7: the chat side must know when the phone side can be overheard."""
    async with moderator(moderated_prosody) as alice, caller(node) as uac:
        await caller_in_room(node, alice, uac, "Carl Caller")  # plain UDP, RTP/AVP
        notice = await alice.next_message(
            lambda m: m.nick == "bridge" and "unencrypted" in m.body, WAIT
        )
        assert notice.body.startswith("Carl Caller is on the call")
        assert "UDP" in notice.body
