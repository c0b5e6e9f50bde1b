"""bridge/prosody/mod_muc_audio_video_uri.lua loaded into the test Prosody."""

from __future__ import annotations

import asyncio

import pytest
from slixmpp.exceptions import IqError

from bridge.devstack.prosody import ProsodyServer
from tests.xmpp.clients import chat_user

FIELD = "audio-video-uri"


async def test_owner_form_field_validation_and_persistence(prosody_avu: ProsodyServer) -> None:
    room_jid = f"standup@{prosody_avu.muc_domain}"
    async with chat_user(prosody_avu, "alice") as alice:
        await alice.join(room_jid, "Alice")
        form = await alice.client.plugin["xep_0045"].get_room_config(room_jid)
        field = form.get_fields()[FIELD]
        assert field["type"] == "text-single" and field["value"] == ""

        # not advertised until set
        assert FIELD not in await alice.roominfo(room_jid)

        # junk is refused (kept out of disco), a SIP URI is published
        await alice.configure(room_jid, {FIELD: "javascript:alert(1)"})
        assert FIELD not in await alice.roominfo(room_jid)
        await alice.configure(room_jid, {FIELD: "sips:standup@example.org"})
        assert (await alice.roominfo(room_jid))[FIELD] == "sips:standup@example.org"

        # the value lives in room._data: a persistent room keeps it over a restart
        await alice.configure(room_jid, {"muc#roomconfig_persistentroom": "1"})
    await asyncio.to_thread(prosody_avu.restart)
    async with chat_user(prosody_avu, "bob") as bob:
        assert (await bob.roominfo(room_jid))[FIELD] == "sips:standup@example.org"
        # only owners may change it
        await bob.join(room_jid, "Bob")
        with pytest.raises(IqError):
            await bob.configure(room_jid, {FIELD: "sip:evil@example.org"})
    log = prosody_avu.log_text()
    assert "\terror\t" not in log
    assert "ignoring invalid audio-video-uri" in log


async def test_stock_prosody_ignores_the_field(prosody: ProsodyServer) -> None:
    """Without the module the field is unknown: not offered, not published (DESIGN §5)."""
    room_jid = f"standup@{prosody.muc_domain}"
    async with chat_user(prosody, "alice") as alice:
        await alice.join(room_jid, "Alice")
        form = await alice.client.plugin["xep_0045"].get_room_config(room_jid)
        assert FIELD not in form.get_fields()
        await alice.configure(room_jid, {FIELD: "sip:standup@example.org"})
        assert FIELD not in await alice.roominfo(room_jid)
