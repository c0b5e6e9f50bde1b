"""Issue 18 end to end: every attack on "who is calling" performed against a whole node
(real Prosody, Redis, SIP workers) with real SIP peers (SIPp, a raw UDP UA), and the
legitimate flow next to it.

127.0.0.2 plays the operator's PBX (``identity.trusted_peers``): its P-Asserted-Identity
is believed. Everything from 127.0.0.1 is "the Internet". Alice has a SIP digest account
(SIPp 3.6 answers only MD5, hence ``digest_algorithms = ["MD5"]`` here) and a binding of
her SIP identity to her XMPP account.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from bridge.core.digest import ha1
from bridge.devstack.prosody import ProsodyServer
from bridge.node.supervisor import Node
from bridge.sip import devpeers as dp
from tests.e2e.conftest import ROOM, TRUSTED_PEER, NodeFactory
from tests.e2e.test_commands import BRIDGE_NICK, drain, info_dtmf, owner, private_command
from tests.e2e.test_mirroring import MUC, WAIT, caller, dial, moderator, next_request, until
from tests.sip.rawsip import RawUac

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="SIPp not installed")

REALM = "127.0.0.1"  # sip.domain of the test node
ALICE_KEY = "sip:alice@127.0.0.1"


def identity(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "trusted_peers": [TRUSTED_PEER],
        "accounts": {"alice": {"ha1_md5": ha1("alice", REALM, "wonderland", "MD5")}},
        "digest_algorithms": ["MD5"],
        "trusted_bindings": {ALICE_KEY: "alice@localhost", "sip:bob@pbx.example": "bob@localhost"},
    }
    base.update(extra)
    return base


async def sipp(node: Node, tmp: Path, scenario: str, *args: str, ip: str = "127.0.0.1") -> None:
    run = dp.Sipp(scenario, node.pool.front_port, tmp, timeout_s=30, extra_args=list(args),
                  local_ip=ip)  # fmt: skip
    result = await asyncio.to_thread(run.run)
    assert result.returncode == 0, result.errors or result.stderr


def legs(node: Node) -> list[Any]:
    state = node.engine.cached(ROOM)
    return list(state.legs.values()) if state is not None else []


async def test_forged_from_never_gets_the_account_holders_standing(
    make_node: NodeFactory, moderated_prosody: ProsodyServer, tmp_path: Path
) -> None:
    """Attack (issue 18): writing Alice's From made the forger Alice: bound to her JID,
    with her affiliation. Now a From naming an account is challenged (401), a From naming
    anyone else is an unverified per-call identity, and only the password holder is Alice."""
    async with make_node(identity=identity()) as node, moderator(moderated_prosody) as alice:
        forged = dp.sipp_identity_scenario(ROOM, from_user="alice", from_host=REALM, expect=401)
        await sipp(node, tmp_path / "forged", forged)
        assert not legs(node)
        # the forger writes a From the bridge cannot challenge: in the room, but unverified
        other = dp.sipp_identity_scenario(ROOM, from_user="alice", from_host="example.org",
                                          hold_ms=6000)  # fmt: skip
        run = asyncio.create_task(sipp(node, tmp_path / "other", other))
        await until(lambda: legs(node), "the forger's leg")
        (leg,) = legs(node)
        assert leg.participant.startswith("unverified:") and not leg.bound_jid
        await alice.wait_for(
            lambda: any("(unverified)" in n for n in alice.occupants(MUC)), WAIT
        )
        await run
        # Alice herself, with her password: authenticated and shown as her own occupant
        real = dp.sipp_identity_scenario(ROOM, from_user="alice", from_host=REALM,
                                         authenticate=True, hold_ms=4000)  # fmt: skip
        run = asyncio.create_task(sipp(node, tmp_path / "real", real, "-au", "alice", "-ap",
                                       "wonderland"))  # fmt: skip
        await until(lambda: any(leg.bound_jid for leg in legs(node)), "Alice bound")
        (leg,) = [leg for leg in legs(node) if leg.bound_jid]
        assert (leg.caller_uri, leg.bound_jid) == (ALICE_KEY, "alice@localhost")
        await run


async def test_asserted_identity_only_from_the_trusted_peer(
    make_node: NodeFactory, moderated_prosody: ProsodyServer, tmp_path: Path
) -> None:
    """Attack: P-Asserted-Identity written by the caller itself bound it to Bob's JID (and
    From was looked up first). Now the header counts only from a trusted peer."""
    async with make_node(identity=identity()) as node:
        pai = "P-Asserted-Identity: <sip:bob@pbx.example>"
        forged = dp.sipp_identity_scenario(ROOM, from_user="bob", from_host="pbx.example",
                                           extra_headers=pai, hold_ms=4000)  # fmt: skip
        run = asyncio.create_task(sipp(node, tmp_path / "forged", forged))
        await until(lambda: legs(node), "the forger's leg")
        (leg,) = legs(node)
        assert leg.participant.startswith("unverified:") and not leg.bound_jid
        await run
        await until(lambda: not legs(node), "forger gone")
        via_pbx = dp.sipp_identity_scenario(ROOM, from_user="bob", from_host="pbx.example",
                                            extra_headers=pai, hold_ms=4000)  # fmt: skip
        run = asyncio.create_task(sipp(node, tmp_path / "pbx", via_pbx, ip=TRUSTED_PEER))
        await until(lambda: any(leg.bound_jid for leg in legs(node)), "Bob bound")
        (leg,) = legs(node)
        assert (leg.caller_uri, leg.bound_jid) == ("sip:bob@pbx.example", "bob@localhost")
        await run


async def test_a_ban_on_an_unverified_caller_holds_when_it_changes_from(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    async with make_node(identity=identity()) as node, moderator(moderated_prosody) as alice:
        uac = RawUac(node.pool.front_port, user="mallory", display="Mallory")
        try:
            assert (await dial(uac)).status == 200
            nick = "Mallory (unverified)"
            await alice.wait_for(lambda: nick in alice.occupants(MUC), WAIT)
            puppet = node.rooms[ROOM].bridged.puppets
            (jid,) = [p.jid.bare for p in puppet.values()]
            await alice.set_affiliation(MUC, str(jid), "outcast")
            await next_request(uac, "BYE")
        finally:
            uac.close()
        state = node.engine.cached(ROOM)
        assert state is not None and "addr:127.0.0.1" in state.bans
        for user in ("someone-else", "anonymous"):
            again = RawUac(node.pool.front_port, user=user, display="Innocent")
            try:
                assert (await dial(again)).status == 403
            finally:
                again.close()
        # callers behind the PBX are not that address
        async with caller(node) as carl:
            assert (await dial(carl)).status == 200


async def test_star6_of_a_forger_does_not_mute_the_real_caller(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    """Attack: *6 sent with Carl's From left a self-mute on Carl that !unmute could not
    lift. Now the forger's mute is keyed on its own per-call identity."""
    async with make_node(identity=identity()) as node, moderator(moderated_prosody) as alice:
        forger = RawUac(node.pool.front_port, user="carl", display="Carl Caller",
                        from_host="pbx.example")  # fmt: skip
        try:
            assert (await dial(forger)).status == 200
            await alice.wait_for(lambda: "Carl Caller (unverified)" in alice.occupants(MUC), WAIT)
            await info_dtmf(forger, "*6")
            await until(lambda: node.engine.cached(ROOM).mutes, "forger self-muted")  # type: ignore[union-attr]
            mutes = node.engine.cached(ROOM).mutes  # type: ignore[union-attr]
            assert all(key.startswith("unverified:") for key in mutes), mutes
            await asyncio.to_thread(forger.bye)
        finally:
            forger.close()
        async with caller(node) as carl:  # the real Carl, through the PBX
            assert (await dial(carl)).status == 200
            await alice.wait_for(lambda: "Carl Caller" in alice.occupants(MUC), WAIT)
            assert alice.occupants(MUC)["Carl Caller"].role != "visitor"


async def test_anonymous_callers_are_separate_participants(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    async with make_node(identity=identity()) as node, moderator(moderated_prosody) as alice:
        a = RawUac(node.pool.front_port, user="anonymous", from_host="anonymous.invalid")
        b = RawUac(node.pool.front_port, user="anonymous", from_host="anonymous.invalid")
        try:
            assert (await dial(a)).status == 200
            assert (await dial(b)).status == 200
            await until(lambda: len(legs(node)) == 2, "two legs")
            assert len({leg.participant for leg in legs(node)}) == 2
            await info_dtmf(a, "*6")
            await until(lambda: len(node.engine.cached(ROOM).mutes) == 1, "one muted")  # type: ignore[union-attr]
            muted = [leg for leg in node.pool.legs().values() if leg.muted]
            assert len(muted) == 1
        finally:
            a.close()
            b.close()
        del alice


async def test_pin_guessing_is_counted_per_source_not_per_from(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    """Attack: the wrong-PIN budget was keyed on From: a new From per call = unlimited
    guesses. Now it is the source address (and the room as a whole)."""
    async with make_node(identity=identity()) as node, owner(moderated_prosody) as alice:
        assert "PIN set" in (await private_command(alice, "!pin 4711")).body
        refused_before_entry = False
        for n in range(6):  # 3 wrong PINs per call, 10 per source: the 5th call is refused
            uac = RawUac(node.pool.front_port, user=f"guess{n}", display=f"Guesser {n}")
            try:
                assert (await dial(uac)).status == 200
                prompt = await drain(uac, "MESSAGE")
                if "Too many" in prompt.body:
                    refused_before_entry = True
                    await drain(uac, "BYE")
                    break
                for guess in ("0000#", "1111#", "2222#"):
                    await info_dtmf(uac, guess)
                bye = await drain(uac, "BYE")
                assert "cause=403" in bye.get("Reason")
            finally:
                uac.close()
        assert refused_before_entry, "a new From per call bought fresh guesses"
        assert n == 4  # the 4th call was cut short at the 10th wrong PIN


async def test_pin_typed_in_the_room_is_refused_and_not_set(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    async with owner(moderated_prosody) as alice:
        start = len(alice.messages)
        await alice.say(MUC, "!pin 8642")
        reply = await alice.next_message(
            lambda m: m.nick == BRIDGE_NICK and "Not set" in m.body, WAIT, start
        )
        assert "private message" in reply.body
        await asyncio.sleep(0.5)
        assert not [m for m in alice.messages[start:] if m.nick == BRIDGE_NICK
                    and "8642" in m.body]  # fmt: skip
        state = node.engine.cached(ROOM)
        assert state is None or state.conference is None or not state.conference.pin_hash


async def test_verified_only_refuses_the_unverified(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    async with make_node(identity=identity(admit="verified-only")) as node:
        stranger = RawUac(node.pool.front_port, user="eve")
        try:
            refused = await dial(stranger)
            assert refused.status == 401  # accounts exist: prove who you are
        finally:
            stranger.close()
        async with caller(node) as carl:  # through the PBX: asserted
            assert (await dial(carl)).status == 200


async def test_a_caller_whose_puppet_cannot_join_is_hung_up(
    node: Node, moderated_prosody: ProsodyServer
) -> None:
    """Attack: in a members-only room the puppet's join failed and the caller stayed in the
    mix, listening without appearing. Now the call ends with a 403 Reason."""
    async with owner(moderated_prosody) as alice:
        await alice.configure(MUC, {"muc#roomconfig_membersonly": "1"})
        async with caller(node) as uac:
            assert (await dial(uac)).status == 200
            bye = await next_request(uac, "BYE")
            assert "cause=403" in bye.get("Reason"), bye.get("Reason")
        await until(lambda: not node.pool.legs(), "nobody left in the mix")
