"""Issue 8 end to end: room owners drive the bridge with ``!commands`` and XEP-0050.

A whole node against real Prosody and Redis, a raw SIP UA as the caller and a SIPp UAS as
the dial-out target. Alice owns the room (affiliation set in the MUC, so the bridge's
check against the MUC's own lists finds her), Bob is a plain participant. Every command's
reply comes from the control occupant ("bridge"); tests wait for it, then check the effect
on the other side.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError

from bridge.devstack.ports import free_port, free_udp_tcp_port
from bridge.devstack.prosody import ProsodyServer
from bridge.node.supervisor import Node
from tests.e2e.conftest import ROOM, NodeFactory
from tests.e2e.test_mirroring import MUC, WAIT, caller, caller_in_room, dial, next_request, until
from tests.sip.rawsip import Message, RawUac
from tests.xmpp.clients import ChatUser, Received, chat_user

BRIDGE_NICK = "bridge"


@asynccontextmanager
async def owner(prosody: ProsodyServer) -> AsyncIterator[ChatUser]:
    """Alice in the room, recorded as an owner in the room's affiliation list."""
    async with chat_user(prosody, "alice") as alice:
        await alice.join(MUC, "Alice")
        await alice.set_affiliation(MUC, prosody.jid("alice"), "owner")
        yield alice


@asynccontextmanager
async def participant(prosody: ProsodyServer) -> AsyncIterator[ChatUser]:
    async with chat_user(prosody, "bob") as bob:
        await bob.join(MUC, "Bob")
        yield bob


async def command(user: ChatUser, text: str) -> Received:
    """Type ``text`` in the room; the bridge's reply addressed to this user: in the room
    (``Nick: …``) or privately (help, status, refusals and errors)."""
    nick = user.rooms[MUC].self_nick
    start = len(user.messages)
    await user.say(MUC, text)
    return await user.next_message(
        lambda m: m.nick == BRIDGE_NICK and (m.type == "chat" or m.body.startswith(f"{nick}: ")),
        WAIT,
        start,
    )


async def room_says(user: ChatUser, fragment: str, start: int = 0) -> Received:
    return await user.next_message(
        lambda m: m.nick == BRIDGE_NICK and fragment in m.body, WAIT, start
    )


async def info_dtmf(uac: RawUac, keys: str) -> None:
    for key in keys:
        await asyncio.to_thread(
            uac.in_dialog, "INFO", body=f"Signal={key}\r\nDuration=160",
            ctype="application/dtmf-relay",
        )  # fmt: skip


def requests(uac: RawUac, method: str) -> list[Message]:
    return [m for m in uac.received if m.method == method]


async def drain(uac: RawUac, method: str, fragment: str = "") -> Message:
    """The first ``method`` request from the bridge containing ``fragment``, seen already
    (answered while the UA waited for another response) or still to come."""
    while True:
        seen = [m for m in requests(uac, method) if fragment in m.body]
        if seen:
            return seen[0]
        await next_request(uac, method)


# ---- !commands ------------------------------------------------------------------------------


async def test_help_status_and_a_participant_is_refused(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    async with (
        owner(moderated_prosody) as alice,
        participant(moderated_prosody) as bob,
        caller(node) as uac,
    ):
        leg = await caller_in_room(node, alice, uac, "Carl Caller")

        refused = await command(bob, "!mute Carl")
        assert "Only moderators" in refused.body and "role participant" in refused.body
        assert not node.pool.legs()[leg].muted

        helped = await command(bob, "!help")
        for name in ("!status", "!mute <nick|all>", "!kick <nick> [reason]", "!pin <digits|off>"):
            assert name in helped.body
        unknown = await command(bob, "!mutt Carl")
        assert "Did you mean !mute?" in unknown.body

        status = await command(alice, "!status")
        assert f"sip:{ROOM}@127.0.0.1" in status.body
        assert "Carl Caller: phone" in status.body and "PCMU" in status.body
        assert "Bob" in status.body  # in the chat only

        await alice.say(MUC, "plain chat still reaches the phone")
        relayed = await next_request(uac, "MESSAGE")
        assert "plain chat" in relayed.body
        assert not [m for m in requests(uac, "MESSAGE") if "!" in m.body.split(":", 1)[-1][:2]]


async def test_mute_unmute_and_kick_by_command(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    async with owner(moderated_prosody) as alice, caller(node) as uac:
        leg = await caller_in_room(node, alice, uac, "Carl Caller")

        muted = await command(alice, "!mute carl")
        assert muted.body == "Alice: Muted Carl Caller."
        await until(lambda: node.pool.legs()[leg].muted, "leg muted in the mixer")
        await alice.wait_for(lambda: alice.occupants(MUC)["Carl Caller"].role == "visitor", WAIT)
        state = node.engine.cached(ROOM)
        assert state is not None and [m.kind for m in state.mutes.values()] == ["moderator"]
        status = await command(alice, "!status")
        assert "muted by a moderator" in status.body

        await command(alice, "!unmute Carl Caller")
        await until(lambda: not node.pool.legs()[leg].muted, "leg unmuted")

        kicked = await command(alice, '!kick "Carl Caller" too noisy')
        assert "Kicked Carl Caller" in kicked.body
        await drain(uac, "BYE")
        await until(lambda: leg not in node.pool.legs(), "leg gone from the pool")
        await alice.wait_for(lambda: "Carl Caller" not in alice.occupants(MUC), WAIT)


async def dial_until_refused(node: Node) -> Message:
    """The workers get a new admission snapshot asynchronously (a pipe away): a caller
    racing the command's reply may still get in, the next one must not."""
    for _ in range(5):
        async with caller(node) as uac:
            final = await dial(uac)
            if final.status != 200:
                return final
            await asyncio.to_thread(uac.bye)
    raise AssertionError("callers still admitted after the command")


async def test_lock_refuses_new_callers_even_after_a_restart(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    async with make_node() as node, owner(moderated_prosody) as alice:
        reply = await command(alice, "!lock")
        assert "Locked" in reply.body
        refused = await dial_until_refused(node)
        assert refused.status == 403 and "locked" in refused.first_line.lower()
    async with make_node() as node, owner(moderated_prosody) as alice:
        async with caller(node) as uac:
            refused = await dial(uac)
        assert refused.status == 403, refused.first_line
        status = await command(alice, "!status")
        assert "locked" in status.body
        await command(alice, "!unlock")
        async with caller(node) as uac:
            await caller_in_room(node, alice, uac, "Carl Caller")


async def test_pin_admits_the_right_digits_and_hangs_up_on_three_wrong_ones(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    async with owner(moderated_prosody) as alice:
        reply = await command(alice, "!pin 1234")
        assert "PIN set (4 digits)" in reply.body
        state = node.engine.cached(ROOM)
        assert state is not None and state.conference is not None
        assert "1234" not in state.conference.to_json()  # only a salted hash is stored

        async with caller(node) as uac:
            answered = await dial(uac)
            assert answered.status == 200
            prompt = await drain(uac, "MESSAGE")
            assert "needs a PIN" in prompt.body
            await until(lambda: len(node.pins.waiting) == 1, "leg waiting for its PIN")
            (leg,) = node.pins.waiting
            assert node.pool.legs()[leg].held
            assert "Carl Caller" not in alice.occupants(MUC)
            await info_dtmf(uac, "1234#")
            await alice.wait_for(lambda: "Carl Caller" in alice.occupants(MUC), WAIT)
            assert not node.pool.legs()[leg].held

            async with caller(node, user="mallory", display="Mallory") as intruder:
                assert (await dial(intruder)).status == 200
                await info_dtmf(intruder, "9999#")
                await drain(intruder, "MESSAGE", "Wrong PIN. Try again (2 left)")
                await info_dtmf(intruder, "1111#")
                await drain(intruder, "MESSAGE", "Wrong PIN. Try again (1 left)")
                await info_dtmf(intruder, "4321#")
                bye = await drain(intruder, "BYE")
                assert "cause=403" in bye.get("Reason")
                assert "Too many wrong PINs" in (await drain(intruder, "MESSAGE", "Too")).body
            assert "Mallory" not in alice.occupants(MUC)


_ANSWER = """
SIP/2.0 {status}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
"""
SDP = """Content-Type: application/sdp
Content-Length: [len]

v=0
o=uas 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""
NO_BODY = "Content-Length: 0\n\n"
# SIPp's built-in ``-sn uas`` aborts on the MESSAGE the bridge sends before a moderator's
# BYE; this one is the same answering UAS that also accepts in-dialog MESSAGEs.
UAS_SCENARIO = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer, accept MESSAGEs, wait for BYE">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[{_ANSWER.format(status="180 Ringing")}{NO_BODY}]]></send>
  <send retrans="500"><![CDATA[{_ANSWER.format(status="200 OK")}{SDP}]]></send>
  <recv request="ACK"/>
  <label id="1"/>
  <recv request="MESSAGE" optional="true" next="2"/>
  <recv request="BYE" next="3"/>
  <label id="2"/>
  <send next="1"><![CDATA[{_ANSWER.format(status="200 OK")}{NO_BODY}]]></send>
  <label id="3"/>
  <send><![CDATA[{_ANSWER.format(status="200 OK")}{NO_BODY}]]></send>
</scenario>
"""


async def test_dial_out_to_a_sipp_uas(
    node: Node, moderated_prosody: ProsodyServer, tmp_path: Path
) -> None:
    sipp = shutil.which("sipp")
    if sipp is None:
        pytest.skip("SIPp is not installed (apt-get install sip-tester)")
    port = free_udp_tcp_port()
    (tmp_path / "uas.xml").write_text(UAS_SCENARIO)
    uas = subprocess.Popen(
        [sipp, "-sf", str(tmp_path / "uas.xml"), "-i", "127.0.0.1", "-p", str(port),
         "-mi", "127.0.0.1", "-mp", str(free_port(2)), "-m", "1", "-nostdin", "-trace_err",
         "-error_file", str(tmp_path / "sipp-errors.log")],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        async with owner(moderated_prosody) as alice:
            occupants = set(alice.occupants(MUC))
            start = len(alice.messages)
            reply = await command(alice, f"!dial sip:service@127.0.0.1:{port}")
            assert "Dialling sip:service@127.0.0.1" in reply.body
            await room_says(alice, "answered and joined the call", start)
            await alice.wait_for(lambda: len(set(alice.occupants(MUC)) - occupants) == 1, WAIT)
            (nick,) = set(alice.occupants(MUC)) - occupants
            state = node.engine.cached(ROOM)
            assert state is not None and len(state.legs) == 1

            hung = await command(alice, f"!hangup {nick}")
            assert f"Hanging up {nick}" in hung.body
            await asyncio.to_thread(uas.wait, WAIT)
            assert uas.returncode == 0, uas.stderr.read() if uas.stderr else ""

            start = len(alice.messages)
            closed = f"sip:nobody@127.0.0.1:{free_port()};transport=tcp"  # nobody listens
            await command(alice, f"!dial {closed}")
            failed = await room_says(alice, f"Could not reach {closed}: 503", start)
            assert failed.body.startswith("Alice: ")
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait()


async def test_unlink_then_link_again(node: Node, moderated_prosody: ProsodyServer) -> None:
    async with owner(moderated_prosody) as alice, caller(node) as uac:
        await caller_in_room(node, alice, uac, "Carl Caller")
        reply = await command(alice, "!unlink")
        assert "Unlinked from standup" in reply.body
        await drain(uac, "BYE")
        await alice.wait_for(lambda: "Carl Caller" not in alice.occupants(MUC), WAIT)
        assert (await alice.roominfo(MUC)).get("audio-video-uri") in (None, "", [])
        async with caller(node) as late:
            assert (await dial(late)).status == 404
        assert "not linked" in (await command(alice, "!mute Carl")).body

        linked = await command(alice, "!link")
        assert linked.body == f"Alice: Linked: callers dial sip:{ROOM}@127.0.0.1."
        assert (await alice.roominfo(MUC)).get("audio-video-uri") == f"sip:{ROOM}@127.0.0.1"
        async with caller(node) as again:
            await caller_in_room(node, alice, again, "Carl Caller")


# ---- the same through XEP-0050 ----------------------------------------------------------------


def adhoc(user: ChatUser) -> Any:
    if "xep_0050" not in user.client.plugin:
        user.client.register_plugin("xep_0050")
    return user.client.plugin["xep_0050"]


async def run(user: ChatUser, to: str, name: str, **values: str) -> Any:
    form = user.client.plugin["xep_0004"].make_form(ftype="submit")
    for var, value in {"room": MUC, **values}.items():
        form.add_field(var=var, value=value)
    return await adhoc(user).send_command(JID(to), name, payload=form, timeout=WAIT)


async def test_adhoc_mute_and_lock_share_the_executor(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    component = node.component.boundjid.bare
    async with (
        owner(moderated_prosody) as alice,
        participant(moderated_prosody) as bob,
        caller(node) as uac,
    ):
        leg = await caller_in_room(node, alice, uac, "Carl Caller")
        with pytest.raises(IqError) as refused:
            await run(bob, component, "mute", nick="Carl")
        assert refused.value.iq["error"]["condition"] == "forbidden"
        assert "Only moderators" in refused.value.iq["error"]["text"]

        done = await run(alice, component, "mute", nick="Carl")
        assert done["command"]["notes"] == [("info", "Muted Carl Caller.")]
        await until(lambda: node.pool.legs()[leg].muted, "leg muted by the ad-hoc command")

        # the control occupant's room JID: the MUC relays the IQ from alice's occupant JID
        locked = await run(alice, f"{MUC}/{BRIDGE_NICK}", "lock")
        assert locked["command"]["notes"] == [("info", "Locked: new callers are refused.")]
        assert (await dial_until_refused(node)).status == 403
