"""Pure parts of bridge.xmpp: config planning, rate limiting, MUC parsing, puppet JIDs."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from bridge.xmpp import muc
from bridge.xmpp.forms import (
    AUDIO_VIDEO_URI,
    MEMBERS_BY_DEFAULT,
    MODERATED,
    ROOM_DESCRIPTION,
    Advertised,
    AdvertisePolicy,
    merge_description,
    plan_room_config,
    strip_description,
)
from bridge.xmpp.jids import caller_identity, puppet_jid

URI = "sip:weekly@sip.example"


def test_plan_with_module_also_writes_the_description() -> None:
    plan = plan_room_config({AUDIO_VIDEO_URI: "", ROOM_DESCRIPTION: "Team"}, URI)
    assert plan.advertised is Advertised.AUDIO_VIDEO_URI
    # most clients show no extra room-info field: the description says it too
    assert plan.changes == {AUDIO_VIDEO_URI: URI, ROOM_DESCRIPTION: f"Team · Join by phone: {URI}"}
    # already set: nothing to submit; a line in an earlier version's words is updated
    plan = plan_room_config(
        {AUDIO_VIDEO_URI: URI, ROOM_DESCRIPTION: f"Team · Join the call: {URI}"}, URI
    )
    assert plan.changes == {ROOM_DESCRIPTION: f"Team · Join by phone: {URI}"}
    quiet = AdvertisePolicy(in_description=False)
    plan = plan_room_config(
        {AUDIO_VIDEO_URI: URI, ROOM_DESCRIPTION: f"Team · Join by phone: {URI}"}, URI, policy=quiet
    )
    assert plan.changes == {ROOM_DESCRIPTION: "Team"}


def test_plan_fallback_and_unlink() -> None:
    plan = plan_room_config({ROOM_DESCRIPTION: "Team"}, URI)
    assert plan.advertised is Advertised.DESCRIPTION
    assert plan.changes == {ROOM_DESCRIPTION: f"Team · Join by phone: {URI}"}
    # without the module the description is the only place: used even when "not wanted"
    plan = plan_room_config(
        {ROOM_DESCRIPTION: ""}, URI, policy=AdvertisePolicy(in_description=False)
    )
    assert plan.changes == {ROOM_DESCRIPTION: f"Join by phone: {URI}"}
    assert plan_room_config({}, URI).advertised is Advertised.NONE
    unlink = plan_room_config({ROOM_DESCRIPTION: f"Team · Join the call: {URI}"}, "")
    assert unlink.changes == {ROOM_DESCRIPTION: "Team"}
    own = AdvertisePolicy(label="Dial in: ")
    plan = plan_room_config({ROOM_DESCRIPTION: "Team"}, URI, policy=own)
    assert plan.changes == {ROOM_DESCRIPTION: f"Team · Dial in: {URI}"}


def test_linked_rooms_are_moderated_where_newcomers_keep_their_voice() -> None:
    prosody_with_module = {AUDIO_VIDEO_URI: "", MODERATED: "0"}
    plan = plan_room_config(prosody_with_module, URI)
    assert plan.changes[MODERATED] == "1" and plan.moderated is True
    # unlinking gives the room back as it was before the bridge came
    plan = plan_room_config({AUDIO_VIDEO_URI: URI, MODERATED: "1"}, "")
    assert plan.changes == {AUDIO_VIDEO_URI: "", MODERATED: "0"}
    # ejabberd: moderated, and newcomers are participants by default
    plan = plan_room_config({MODERATED: "0", MEMBERS_BY_DEFAULT: "0", ROOM_DESCRIPTION: ""}, URI)
    assert plan.changes[MODERATED] == "1" and plan.changes[MEMBERS_BY_DEFAULT] == "1"
    # stock Prosody: a moderated room would make every caller a visitor (muted): left alone
    plan = plan_room_config({MODERATED: "0", ROOM_DESCRIPTION: ""}, URI)
    assert MODERATED not in plan.changes and plan.moderated is None
    off = plan_room_config(prosody_with_module, URI, policy=AdvertisePolicy(moderated=False))
    assert MODERATED not in off.changes


def test_description_merge_keeps_owner_text() -> None:
    assert merge_description("", URI) == f"Join by phone: {URI}"
    assert merge_description(f"Call {URI} at 9", URI) == f"Call {URI} at 9"  # owner wrote it
    old = "Team · Join by phone: sip:old@x"
    assert merge_description(old, URI) == f"Team · Join by phone: {URI}"
    multi = merge_description("Line one\nLine two", URI, multiline=True)
    assert multi == f"Line one\nLine two\nJoin by phone: {URI}"
    assert strip_description(multi, multiline=True) == "Line one\nLine two"


@given(st.text(max_size=60).filter(lambda t: "Join" not in t))
def test_merge_then_strip_round_trips(owner: str) -> None:
    merged = merge_description(owner, URI)
    assert merge_description(merged, URI) == merged  # idempotent
    if URI not in owner:
        assert strip_description(merged) == owner.rstrip()


def _presence(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def test_parse_muc_presence_kick() -> None:
    element = _presence(
        "<presence xmlns='jabber:component:accept' type='unavailable'>"
        "<x xmlns='http://jabber.org/protocol/muc#user'>"
        "<item affiliation='none' role='none' jid='a@b/c'><actor nick='Mod'/>"
        "<reason>spam</reason></item><status code='307'/><status code='110'/></x></presence>"
    )
    info = muc.parse_muc_presence(element, "Ann")
    assert not info.available and info.is_self
    assert info.status_codes == {307, 110}
    assert (info.actor, info.reason, info.jid) == ("Mod", "spam", "a@b/c")


def test_parse_join_error_without_muc_child() -> None:
    """Prosody's join error (DESIGN §5): no muc <x/>, error in the component namespace."""
    element = _presence(
        "<presence xmlns='jabber:component:accept' type='error'>"
        "<error type='cancel' by='room@muc'><conflict "
        "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
    )
    error = muc.parse_error(element)
    assert (error.condition, error.type) == ("conflict", "cancel")
    assert "taken" in muc.join_error_hint("conflict")


def test_puppet_jids_are_stable_private_and_distinct() -> None:
    key = b"k" * 32
    a1 = puppet_jid(key, "bridge.example", "sip:+33612345612@pbx;user=phone", "leg-1")
    a2 = puppet_jid(key, "bridge.example", "<sip:+33612345612@PBX>", "leg-2")
    assert a1.split("/")[0] == a2.split("/")[0]  # same caller: same bare JID (bans stick)
    assert a1 != a2  # two calls: two occupants
    assert "612345612" not in a1
    anon1 = puppet_jid(key, "bridge.example", "sip:anonymous@anonymous.invalid", "leg-3")
    anon2 = puppet_jid(key, "bridge.example", "sip:anonymous@anonymous.invalid", "leg-4")
    assert anon1.split("/")[0] != anon2.split("/")[0]
    other_key = puppet_jid(b"x" * 32, "bridge.example", "sip:+33612345612@pbx", "leg-1")
    assert other_key != a1
    assert caller_identity("tel:+33612345612") == "+33612345612"


def test_puppet_key_is_its_own_setting_and_survives_a_secret_rotation() -> None:
    from bridge.config import XmppSettings
    from bridge.xmpp.component import _puppet_key
    from bridge.xmpp.jids import puppet_jid

    def jid(secret: str, key: str = "") -> str:
        settings = XmppSettings(secret=secret, puppet_key=key)  # type: ignore[arg-type]
        return puppet_jid(_puppet_key(settings), "bridge.example", "sip:alice@pbx", "w1.0.1")

    assert jid("old-secret", "stable-key") == jid("new-secret", "stable-key")
    assert jid("old-secret") != jid("new-secret")  # derived from the secret when unset
    assert jid("old-secret", "stable-key") != jid("old-secret")
