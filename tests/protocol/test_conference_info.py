"""RFC 4575 conference-info: every generated document is checked against the RFC's schema."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bridge.protocol.conference_info import (
    CONTENT_TYPE,
    NS,
    AudioLeg,
    ChatPresence,
    ConferenceInfo,
    ConferenceInfoError,
    ConferenceInfoStream,
    DocState,
    EndpointStatus,
    MediaStatus,
    Participant,
    RoomView,
    User,
    apply_partial,
    conference_from_room,
    diff,
    parse,
    render,
    xmpp_uri,
)

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).parent / "schemas/conference-info.xsd")))
Q = "{" + NS + "}"


def valid(doc: bytes) -> etree._Element:
    """Parse ``doc`` and assert it is valid RFC 4575 conference-info."""
    root = etree.fromstring(doc)
    SCHEMA.assertValid(root)
    return root


def alice(muted: bool = False) -> Participant:
    return Participant("Alice", audio=AudioLeg("sip:alice@example.com", muted_by_focus=muted),
                       entity="sip:alice@example.com", roles=("moderator",))


BOB_CHAT = Participant("Bob", chat=ChatPresence("bob the builder", "bob@example.com/laptop"))
CAROL_BOTH = Participant("Carol", audio=AudioLeg("sip:+15551234@example.com"),
                         chat=ChatPresence("carol"), entity="sip:+15551234@example.com")


def room(*people: Participant, **kw: object) -> RoomView:
    return RoomView(focus_uri="sip:standup@bridge.example", room_jid="standup@muc.example",
                    participants=people, subject="Daily", **kw)  # type: ignore[arg-type]


def unordered(conf: ConferenceInfo) -> ConferenceInfo:
    """Users in entity order: RFC 4575 gives the order of <user> elements no meaning."""
    return replace(conf, users=tuple(sorted(conf.users or (), key=lambda u: u.entity)))


def by_entity(root: etree._Element) -> dict[str, etree._Element]:
    return {u.get("entity"): u for u in root.iter(Q + "user")}


# ---- full documents ------------------------------------------------------------------------


def test_full_document_carries_room_and_dial_in_and_validates() -> None:
    root = valid(ConferenceInfoStream().full(conference_from_room(room(alice()))))
    assert root.get("entity") == "sip:standup@bridge.example"
    assert root.get("state") == "full"
    assert root.get("version") == "1"
    assert root.findtext(f"{Q}conference-description/{Q}subject") == "Daily"
    conf = root.find(f"{Q}conference-description/{Q}conf-uris/{Q}entry")
    assert conf is not None and conf.findtext(Q + "uri") == "sip:standup@bridge.example"
    svc = root.find(f"{Q}conference-description/{Q}service-uris/{Q}entry")
    assert svc is not None
    assert svc.findtext(Q + "uri") == "xmpp:standup@muc.example?join"
    assert svc.findtext(Q + "purpose") == "grouptextchat"
    assert root.findtext(f"{Q}conference-state/{Q}user-count") == "1"
    assert CONTENT_TYPE == "application/conference-info+xml"


def test_involvement_text_only_audio_only_and_both_are_distinguishable() -> None:
    root = valid(render(conference_from_room(room(alice(), BOB_CHAT, CAROL_BOTH))))
    users = by_entity(root)
    assert len(users) == 3

    def media_kinds(user: etree._Element) -> list[bool]:
        return [ep.find(Q + "media") is not None for ep in user.iter(Q + "endpoint")]

    assert media_kinds(users["sip:alice@example.com"]) == [True]  # audio only
    bob = users["xmpp:standup@muc.example/bob%20the%20builder"]  # text only
    assert media_kinds(bob) == [False]
    carol = users["sip:+15551234@example.com"]  # both: one user, two endpoints
    assert media_kinds(carol) == [True, False]
    assert [ep.get("entity") for ep in carol.iter(Q + "endpoint")] == [
        "sip:+15551234@example.com", "xmpp:standup@muc.example/carol"]
    assert users["sip:alice@example.com"].findtext(f"{Q}roles/{Q}entry") == "moderator"


def test_real_jids_only_when_the_room_allows() -> None:
    hidden = by_entity(valid(render(conference_from_room(room(BOB_CHAT)))))
    assert list(hidden) == ["xmpp:standup@muc.example/bob%20the%20builder"]
    assert b"laptop" not in render(conference_from_room(room(BOB_CHAT)))
    shown = by_entity(valid(render(conference_from_room(room(BOB_CHAT, show_real_jids=True)))))
    assert list(shown) == ["xmpp:bob@example.com"]  # bare JID: the resource stays private


def test_moderation_mute_shows_muted_via_focus_and_recvonly() -> None:
    root = valid(render(conference_from_room(room(alice(muted=True)))))
    ep = root.find(f".//{Q}endpoint")
    assert ep is not None
    assert ep.findtext(Q + "status") == "muted-via-focus"
    assert ep.findtext(f"{Q}media/{Q}status") == "recvonly"
    assert ep.findtext(f"{Q}media/{Q}type") == "audio"
    unmuted = valid(render(conference_from_room(room(alice()))))
    assert unmuted.findtext(f".//{Q}endpoint/{Q}status") == "connected"
    assert unmuted.findtext(f".//{Q}media/{Q}status") == "sendrecv"


def test_bad_model_values_raise_clear_errors() -> None:
    with pytest.raises(ConferenceInfoError, match="neither"):
        conference_from_room(room(Participant("ghost")))
    with pytest.raises(ConferenceInfoError, match="explicit entity"):
        conference_from_room(room(Participant("x", audio=AudioLeg("sip:x@h"))))
    with pytest.raises(ConferenceInfoError, match="URI"):
        User(entity="sip:has space@h")
    with pytest.raises(ConferenceInfoError, match="JID"):
        xmpp_uri("room@")


def test_unrepresentable_characters_are_replaced_not_fatal() -> None:
    odd = Participant("A\x00B\x1b\ud800", chat=ChatPresence("n\x07ck"))
    doc = render(conference_from_room(room(odd)))
    root = valid(doc)
    assert root.findtext(f".//{Q}user/{Q}display-text") == "A\ufffdB\ufffd\ufffd"


def test_schema_really_rejects_invalid_documents() -> None:
    """Guard against a schema that accepts anything."""
    bad = render(conference_from_room(room(alice()))).replace(b"sendrecv", b"loud")
    with pytest.raises(etree.DocumentInvalid):
        valid(bad)


# ---- partial documents and versions --------------------------------------------------------


def test_partial_contains_only_changed_added_and_deleted_users() -> None:
    stream = ConferenceInfoStream()
    first = conference_from_room(room(alice(), BOB_CHAT))
    valid(stream.full(first))
    second = conference_from_room(room(alice(muted=True), CAROL_BOTH))
    root = valid(stream.update(second) or b"")
    assert root.get("state") == "partial"
    assert root.get("version") == "2"
    assert root.find(Q + "conference-description") is None  # unchanged: left out
    users = by_entity(root)
    assert set(users) == {"sip:alice@example.com", "sip:+15551234@example.com",
                          "xmpp:standup@muc.example/bob%20the%20builder"}
    assert users["xmpp:standup@muc.example/bob%20the%20builder"].get("state") == "deleted"
    assert len(users["xmpp:standup@muc.example/bob%20the%20builder"]) == 0
    assert users["sip:alice@example.com"].findtext(f".//{Q}endpoint/{Q}status") == (
        "muted-via-focus")
    assert root.find(Q + "conference-state") is None  # still two users
    assert stream.update(second) is None  # nothing changed: nothing to send
    assert stream.version == 2
    third = valid(stream.update(conference_from_room(room(CAROL_BOTH))) or b"")
    assert third.findtext(f"{Q}conference-state/{Q}user-count") == "1"
    assert third.get("version") == "3"


def test_subject_change_sends_description_only() -> None:
    stream = ConferenceInfoStream()
    stream.full(conference_from_room(room(alice())))
    renamed = replace(room(alice()), subject="Retro")
    root = valid(stream.update(conference_from_room(renamed)) or b"")
    assert root.findtext(f"{Q}conference-description/{Q}subject") == "Retro"
    assert root.find(Q + "users") is None


def test_versions_are_per_stream() -> None:
    one, other = ConferenceInfoStream(), ConferenceInfoStream()
    conf = conference_from_room(room(alice()))
    one.full(conf)
    one.full(conf)
    assert one.version == 2
    assert b'version="1"' in other.update(conf)  # type: ignore[operator]
    assert other.version == 1


# ---- parsing received documents ------------------------------------------------------------


def test_parse_round_trip_and_apply() -> None:
    old = conference_from_room(room(alice(), BOB_CHAT))
    new = conference_from_room(room(alice(muted=True), CAROL_BOTH))
    partial = diff(old, new)
    assert partial is not None
    got = apply_partial(parse(render(old)), parse(render(partial)))
    assert unordered(got) == unordered(new)


@pytest.mark.parametrize("doc, match", [
    (b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;'>]>"
     b"<conference-info xmlns='" + NS.encode() + b"' entity='sip:a@b'>&b;</conference-info>",
     "refused"),
    (b"<!DOCTYPE x SYSTEM 'http://127.0.0.1:1/x.dtd'><x/>", "refused"),
    (b"<conference-info xmlns='urn:other' entity='sip:a@b'/>", "root element"),
    (b"<conference-info xmlns='" + NS.encode() + b"'/>", "without entity"),
    (b"<conference-info xmlns='" + NS.encode() + b"' entity='sip:a@b' version='-1'/>",
     "version"),
    (b"<conference-info", "well-formed"),
    (b"\xff\xfe\x00", "well-formed"),
])
def test_parse_refuses_bad_documents(doc: bytes, match: str) -> None:
    with pytest.raises(ConferenceInfoError, match=match):
        parse(doc)


def test_parse_size_limit() -> None:
    doc = render(conference_from_room(room(alice())))
    with pytest.raises(ConferenceInfoError, match="exceeds"):
        parse(doc, max_bytes=len(doc) - 1)
    assert parse(doc, max_bytes=len(doc)).entity == "sip:standup@bridge.example"


# ---- properties ----------------------------------------------------------------------------

# Characters XML can carry, minus CR (XML normalises a literal CR on parsing).
xml_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\ufffe\uffff",
                          min_codepoint=0x20) | st.sampled_from("\t\n")
any_text = st.text(max_size=12)
nick = st.text(xml_chars, min_size=1, max_size=10)
token = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)


@st.composite
def participants(draw: st.DrawFn, text: st.SearchStrategy[str]) -> tuple[Participant, ...]:
    out = []
    for i in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["audio", "chat", "both"]))
        audio = chat = None
        if kind in ("audio", "both"):
            audio = AudioLeg(f"sip:{draw(token)}-{i}@example.com",
                             muted_by_focus=draw(st.booleans()), on_hold=draw(st.booleans()),
                             src_id=draw(st.none() | token))
        if kind in ("chat", "both"):
            chat = ChatPresence(f"{draw(nick)}#{i}",
                                draw(st.none() | st.just(f"{draw(token)}@example.org/r")))
        entity = f"sip:user-{i}@example.com" if audio is not None else None
        roles = tuple(draw(st.lists(st.sampled_from(["participant", "moderator", "visitor",
                                                     "owner", "admin"]), max_size=2)))
        out.append(Participant(draw(text), audio=audio, chat=chat, entity=entity, roles=roles))
    return tuple(out)


@st.composite
def rooms(draw: st.DrawFn, text: st.SearchStrategy[str] = any_text) -> RoomView:
    return RoomView(
        focus_uri=f"sip:{draw(token)}@bridge.example",
        room_jid=f"{draw(token)}@muc.example",
        participants=draw(participants(text)),
        subject=draw(text),
        display_text=draw(st.none() | text),
        show_real_jids=draw(st.booleans()),
        locked=draw(st.booleans()),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rooms())
def test_any_model_renders_valid_xml(view: RoomView) -> None:
    conference = conference_from_room(view)
    root = valid(ConferenceInfoStream().full(conference))
    entities = [user.entity for user in conference.users]
    assert len(by_entity(root)) == len(set(entities)) == len(entities)
    endpoints = {e.entity for user in conference.users for e in user.endpoints}
    for person in view.participants:  # nobody is lost when two sessions merge
        if person.audio is not None:
            assert person.audio.endpoint_uri in endpoints


def test_one_person_in_the_chat_twice_is_one_user_with_two_endpoints() -> None:
    laptop = Participant("Bob", chat=ChatPresence("bob", "bob@example.com/laptop"))
    phone = Participant("Bob", chat=ChatPresence("bob-phone", "bob@example.com/phone"))
    view = RoomView("sip:room@bridge.example", "room@muc.example", (laptop, phone),
                    show_real_jids=True)
    (user,) = conference_from_room(view).users
    assert user.entity == "xmpp:bob@example.com"
    assert len(user.endpoints) == 2
    assert len(conference_from_room(room(alice(), alice())).users) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rooms(text=st.text(xml_chars, max_size=12)))
def test_parse_inverts_render(view: RoomView) -> None:
    conf = conference_from_room(view)
    assert parse(render(conf)) == conf


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rooms(), st.data())
def test_partial_applied_to_old_equals_new(view: RoomView, data: st.DataObject) -> None:
    """Old and new share focus/room so that users persist, change, come and go."""
    new_view = replace(view, participants=data.draw(participants(any_text)),
                       subject=data.draw(st.sampled_from([view.subject, "changed"])))
    old, new = conference_from_room(view), conference_from_room(new_view)
    stream = ConferenceInfoStream()
    full = stream.full(old)
    partial = stream.update(new)
    if partial is None:
        assert old == new
        return
    valid(partial)
    assert parse(partial).state is DocState.PARTIAL
    merged = apply_partial(parse(full), parse(partial))
    assert merged.version == 2
    # Through XML (which replaces unrepresentable characters) and straight on the model.
    assert unordered(replace(merged, version=None)) == unordered(parse(render(new)))
    patch = diff(old, new)
    assert patch is not None
    assert unordered(apply_partial(old, patch)) == unordered(new)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_parser_fuzz_only_raises_its_own_error(blob: bytes) -> None:
    try:
        result = parse(blob)
    except ConferenceInfoError:
        return
    assert isinstance(result, ConferenceInfo)


def test_statuses_cover_rfc_values() -> None:
    assert EndpointStatus.MUTED_VIA_FOCUS.value == "muted-via-focus"
    assert {m.value for m in MediaStatus} == {"recvonly", "sendonly", "sendrecv", "inactive"}
