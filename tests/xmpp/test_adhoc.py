"""XEP-0050 owner commands against the real Prosody: a real client runs them on the component.

Alice creates the room (owner) and makes the bridge component an owner too (as an operator
would); Carol is a member; Bob has no affiliation. The executor written here is the shape the
supervisor's will have: ask the MUC service for the issuer's affiliation, authorize, then act
(here: record the call).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError

from bridge.core.commands import COMMANDS, CommandReply, ParsedCommand, authorize
from bridge.devstack.prosody import ProsodyServer
from bridge.xmpp.adhoc import (
    AdhocCommands,
    AffiliationUnavailable,
    check_issuer,
    muc_affiliation,
)
from bridge.xmpp.component import BridgeComponent
from tests.xmpp.clients import WAIT, ChatUser, chat_user
from tests.xmpp.conftest import bridge_settings

ROOM = "standup"


@dataclass
class Calls:
    """An executor that authorizes against the MUC service and records what it accepted."""

    component: BridgeComponent
    accepted: list[tuple[str, str, ParsedCommand]] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)

    async def __call__(self, room: str, issuer: str, parsed: ParsedCommand) -> CommandReply:
        affiliation, refusal = await check_issuer(
            self.component, room, issuer, parsed.name, ifrom=self.component.boundjid.bare
        )
        if refusal is not None:
            self.refused.append((room, issuer, affiliation))
            return CommandReply("refused", refusal.message)
        self.accepted.append((room, issuer, parsed))
        if parsed.name == "dial":
            return CommandReply("failed", "no SIP worker in this test")
        return CommandReply("ok", f"{parsed.name} done by {affiliation}")


@asynccontextmanager
async def bridge_with_commands(
    prosody: ProsodyServer,
) -> AsyncIterator[tuple[BridgeComponent, Calls]]:
    component = BridgeComponent(bridge_settings(prosody))
    calls = Calls(component)
    commands = AdhocCommands(component, calls, muc_service=prosody.muc_domain)
    await component.connect_and_wait()
    commands.register()
    try:
        yield component, calls
    finally:
        component.disconnect()
        await component.disconnected


async def owned_room(prosody: ProsodyServer, alice: ChatUser) -> str:
    """Alice creates the room and grants the bridge component and Carol their affiliations."""
    room = f"{ROOM}@{prosody.muc_domain}"
    await alice.join(room, "Alice")
    await alice.set_affiliation(room, prosody.component_domain, "owner")
    await alice.set_affiliation(room, prosody.jid("carol"), "member")
    return room


def adhoc(user: ChatUser) -> Any:
    if "xep_0050" not in user.client.plugin:
        user.client.register_plugin("xep_0050")
    return user.client.plugin["xep_0050"]


def submit(user: ChatUser, **values: str) -> Any:
    form = user.client.plugin["xep_0004"].make_form(ftype="submit")
    for var, value in values.items():
        form.add_field(var=var, value=value)
    return form


async def run(user: ChatUser, component: str, node: str, **values: str) -> Any:
    """One-step execution: the execute IQ carries the submitted form."""
    return await adhoc(user).send_command(
        JID(component), node, payload=submit(user, **values), timeout=WAIT
    )


async def test_affiliation_comes_from_the_muc_service(prosody: ProsodyServer) -> None:
    async with (
        bridge_with_commands(prosody) as (component, _),
        chat_user(prosody, "alice") as alice,
    ):
        room = await owned_room(prosody, alice)
        me = component.boundjid.bare
        got = {
            user: await muc_affiliation(component, room, f"{prosody.jid(user)}/phone", ifrom=me)
            for user in ("alice", "bob", "carol")
        }
        assert got == {"alice": "owner", "bob": "none", "carol": "member"}
        await alice.set_affiliation(room, prosody.jid("bob"), "outcast")
        assert await muc_affiliation(component, room, prosody.jid("bob"), ifrom=me) == "outcast"
        with pytest.raises(AffiliationUnavailable) as missing:
            await muc_affiliation(
                component, f"nowhere@{prosody.muc_domain}", prosody.jid("alice"), ifrom=me
            )
        assert missing.value.condition == "item-not-found"


async def test_no_affiliation_lists_means_refusal_not_permission(prosody: ProsodyServer) -> None:
    """A room where the bridge is not an owner: the lists are unreadable and the executor's
    check refuses (it never falls back to trusting the issuer)."""
    async with (
        bridge_with_commands(prosody) as (component, _),
        chat_user(prosody, "alice") as alice,
    ):
        room = f"private@{prosody.muc_domain}"
        await alice.join(room, "Alice")  # alice owns it; the bridge has no affiliation
        affiliation, refusal = await check_issuer(
            component, room, prosody.jid("alice"), "lock", ifrom=component.boundjid.bare
        )
        assert refusal is not None and "Cannot check your privileges" in refusal.message
        assert affiliation == "none"


async def test_nodes_are_listed_from_the_table(prosody: ProsodyServer) -> None:
    async with bridge_with_commands(prosody) as (component, _), chat_user(prosody, "bob") as bob:
        items = await adhoc(bob).get_commands(JID(component.boundjid.bare), timeout=WAIT)
        nodes = {item[1] for item in items["disco_items"]["items"]}
        assert nodes == {spec.node for spec in COMMANDS.values()}


async def test_owner_succeeds_and_stranger_is_refused(prosody: ProsodyServer) -> None:
    async with (
        bridge_with_commands(prosody) as (component, calls),
        chat_user(prosody, "alice") as alice,
        chat_user(prosody, "bob") as bob,
    ):
        room = await owned_room(prosody, alice)
        where = component.boundjid.bare

        with pytest.raises(IqError) as refused:
            await run(bob, where, "lock", room=room)
        assert refused.value.iq["error"]["condition"] == "forbidden"
        assert "room admins and owners" in refused.value.iq["error"]["text"]
        assert calls.accepted == []
        assert calls.refused == [(room, str(bob.jid), "none")]

        result = await run(alice, where, "lock", room=room)
        assert result["command"]["status"] == "completed"
        assert result["command"]["notes"] == [("info", "lock done by owner")]
        assert calls.accepted == [(room, str(alice.jid), ParsedCommand("lock", {}))]


async def test_two_step_form_built_from_the_table(prosody: ProsodyServer) -> None:
    async with (
        bridge_with_commands(prosody) as (component, calls),
        chat_user(prosody, "alice") as alice,
    ):
        room = await owned_room(prosody, alice)
        where = JID(component.boundjid.bare)
        first = await adhoc(alice).send_command(where, "kick", timeout=WAIT)
        assert first["command"]["status"] == "executing"
        form = first["command"]["form"]
        fields = form.get_fields()
        assert list(fields) == ["room", "nick", "reason"]
        assert fields["room"]["type"] == "jid-single" and fields["room"]["required"]
        assert fields["nick"]["required"] and not fields["reason"]["required"]

        done = await adhoc(alice).send_command(
            where,
            "kick",
            action="complete",
            sessionid=first["command"]["sessionid"],
            payload=submit(alice, room=room, nick="Zoë “the caller”", reason="  too   loud "),
            timeout=WAIT,
        )
        assert done["command"]["status"] == "completed"
        assert calls.accepted == [
            (room, str(alice.jid),
             ParsedCommand("kick", {"nick": "Zoë “the caller”", "reason": "too loud"}))
        ]  # fmt: skip


async def test_pin_field_is_private_and_validated(prosody: ProsodyServer) -> None:
    async with (
        bridge_with_commands(prosody) as (component, calls),
        chat_user(prosody, "alice") as alice,
    ):
        room = await owned_room(prosody, alice)
        where = component.boundjid.bare
        first = await adhoc(alice).send_command(JID(where), "pin", timeout=WAIT)
        assert first["command"]["form"].get_fields()["pin"]["type"] == "text-private"

        with pytest.raises(IqError) as bad:
            await run(alice, where, "pin", room=room, pin="12")
        assert bad.value.iq["error"]["condition"] == "bad-request"
        assert "4 to 12 digits" in bad.value.iq["error"]["text"]

        with pytest.raises(IqError) as wrong_room:
            await run(alice, where, "pin", room="standup@elsewhere.example", pin="1234")
        assert wrong_room.value.iq["error"]["condition"] == "bad-request"
        assert calls.accepted == []

        await run(alice, where, "pin", room=room, pin="123456")
        assert calls.accepted[-1][2] == ParsedCommand("pin", {"pin": "123456"})


async def test_failure_is_a_completed_command_with_an_error_note(prosody: ProsodyServer) -> None:
    async with (
        bridge_with_commands(prosody) as (component, _),
        chat_user(prosody, "alice") as alice,
    ):
        room = await owned_room(prosody, alice)
        result = await run(alice, component.boundjid.bare, "dial", room=room, target="+49 30 1234")
        assert result["command"]["status"] == "completed"
        assert result["command"]["notes"] == [("error", "no SIP worker in this test")]


async def test_member_may_ask_status_but_not_mute(prosody: ProsodyServer) -> None:
    async with (
        bridge_with_commands(prosody) as (component, calls),
        chat_user(prosody, "alice") as alice,
        chat_user(prosody, "carol") as carol,
    ):
        room = await owned_room(prosody, alice)
        where = component.boundjid.bare
        await run(carol, where, "status", room=room)
        with pytest.raises(IqError) as refused:
            await run(carol, where, "mute", room=room, nick="all")
        assert refused.value.iq["error"]["condition"] == "forbidden"
        assert "moderators" in refused.value.iq["error"]["text"]
        assert [c[2].name for c in calls.accepted] == ["status"]
        # the same decision the pure table makes for a member outside the room
        assert authorize("mute", "member", "none") is not None


async def test_help_needs_no_room(prosody: ProsodyServer) -> None:
    async with (
        bridge_with_commands(prosody) as (component, calls),
        chat_user(prosody, "bob") as bob,
    ):
        result = await adhoc(bob).send_command(JID(component.boundjid.bare), "help", timeout=WAIT)
        assert result["command"]["status"] == "completed"
        ((kind, text),) = result["command"]["notes"]
        assert kind == "info" and "!pin <digits|off>" in text
        assert calls.accepted == []
