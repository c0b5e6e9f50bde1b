"""One declarative scenario per DESIGN §4 row, both directions (biboumi style):
given this stored room, this event arrives → exactly these actions, and this is recorded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bridge.core.events import HangupLeg, MuteLeg, PlayTone, SendSipMessage
from bridge.core.mirror_events import (
    BanJid,
    CallerBanned,
    CallerJoined,
    CallerLeft,
    CallerPrivilegeChanged,
    ConferenceEnded,
    ConferenceSubjectChanged,
    DtmfCommand,
    GroupchatReceived,
    JoinPuppet,
    LeavePuppet,
    MirrorEvent,
    OccupantBanned,
    OccupantKicked,
    OccupantPrivilegeChanged,
    OccupantUnbanned,
    OccupantVoiceChanged,
    Restore,
    RoomDestroyed,
    SendGroupchat,
    SetConferenceMediaStatus,
    SetConferenceRoles,
    SetConferenceSubject,
    SetOccupantRole,
    SetRoomSubject,
    ShowOccupantInCall,
    SipMessageIn,
    SubjectChanged,
    side_of,
)
from bridge.core.policy import MODERATOR_HELP, admit_invite, decide
from bridge.core.records import RoomState
from tests.core.mirror_fixtures import (
    ALICE_JID,
    ALICE_URI,
    BOB_PUPPET,
    BOB_URI,
    CAROL_JID,
    MUC,
    alice_joins,
    bob_joins,
    ev,
    full_room,
    linked,
    run,
)

BOB = "sip:+4912345@pbx.example"
ALICE = "xmpp:" + ALICE_JID


def _muted(state: RoomState, who: str, kind: str = "moderator", origin: str = "") -> bool:
    m = state.mutes.get(who)
    return m is not None and m.kind == kind and (not origin or m.origin == origin)


def _mod(state: RoomState) -> RoomState:
    event = ev(OccupantPrivilegeChanged, "muc", occupant_jid=ALICE_JID, privilege="moderator")
    return run(state, event)


def _bob_muted(state: RoomState) -> RoomState:
    return run(state, ev(OccupantVoiceChanged, "muc", occupant_jid=BOB_PUPPET, voiced=False))


def _bob_banned(state: RoomState) -> RoomState:
    return run(state, ev(OccupantBanned, "muc", occupant_jid=BOB_PUPPET, reason="spam"))


@dataclass
class Row:
    name: str
    given: Callable[[], RoomState]
    event: MirrorEvent
    actions: list[Any]
    recorded: Callable[[RoomState], bool] = lambda _s: True
    then: Callable[[RoomState], bool] = field(default=lambda _s: True)


MUTED_NOTE = "A moderator muted you from the chat room."
ROWS = [
    # ---- room → call ----------------------------------------------------------------------
    Row("muc voice revoked on puppet → leg muted, muted-via-focus, tone + MESSAGE",
        full_room,
        ev(OccupantVoiceChanged, "muc", occupant_jid=BOB_PUPPET + "/x", voiced=False,
           actor="carol"),
        [MuteLeg("leg-bob", True), SetConferenceMediaStatus("leg-bob", True),
         PlayTone("leg-bob", "muted"), SendSipMessage("leg-bob", MUTED_NOTE)],
        recorded=lambda s: _muted(s, BOB, origin="muc") and s.mutes[BOB].actor == "carol"),
    Row("muc voice granted on puppet → leg unmuted",
        lambda: _bob_muted(full_room()),
        ev(OccupantVoiceChanged, "muc", occupant_jid=BOB_PUPPET, voiced=True),
        [MuteLeg("leg-bob", False), SetConferenceMediaStatus("leg-bob", False),
         PlayTone("leg-bob", "unmuted"),
         SendSipMessage("leg-bob", "A moderator unmuted you from the chat room.")],
        recorded=lambda s: BOB not in s.mutes),
    Row("muc voice revoked on a bound occupant → her phone leg is muted too",
        full_room,
        ev(OccupantVoiceChanged, "muc", occupant_jid=ALICE_JID + "/laptop", voiced=False),
        [MuteLeg("leg-alice", True), SetConferenceMediaStatus("leg-alice", True),
         PlayTone("leg-alice", "muted"), SendSipMessage("leg-alice", MUTED_NOTE)],
        recorded=lambda s: _muted(s, ALICE)),
    Row("muc kick (307) of a puppet → BYE",
        full_room,
        ev(OccupantKicked, "muc", occupant_jid=BOB_PUPPET, reason="noise"),
        [SendSipMessage("leg-bob", "You were removed from the conference "
                                   "(kicked from the chat room: noise)."),
         HangupLeg("leg-bob", "kicked from the chat room: noise")],
        recorded=lambda s: "leg-bob" not in s.legs),
    Row("muc ban (301) of a puppet → BYE, and the caller's next INVITE gets 403",
        full_room,
        ev(OccupantBanned, "muc", occupant_jid=BOB_PUPPET, reason="spam"),
        [SendSipMessage("leg-bob", "You were banned from the conference "
                                   "(banned from the chat room: spam)."),
         HangupLeg("leg-bob", "banned from the chat room: spam")],
        recorded=lambda s: BOB in s.bans and s.bans[BOB].origin == "muc"
        and s.bans[BOB].puppet_jids == (BOB_PUPPET,),
        then=lambda s: admit_invite(s, "<sips:+4912345@PBX.example;transport=tls>").status == 403),
    Row("muc ban of a bound JID → her leg BYE, her phone's next INVITE 403",
        full_room,
        ev(OccupantBanned, "muc", occupant_jid=ALICE_JID),
        [SendSipMessage("leg-alice", "You were banned from the conference "
                                     "(banned from the chat room)."),
         HangupLeg("leg-alice", "banned from the chat room")],
        recorded=lambda s: ALICE in s.bans,
        then=lambda s: admit_invite(s, ALICE_URI).status == 403
        and ALICE_URI in s.banned_callers()),
    Row("muc unban (outcast lifted on the puppet JID) → INVITEs admitted again",
        lambda: _bob_banned(full_room()),
        ev(OccupantUnbanned, "muc", occupant_jid=BOB_PUPPET),
        [],
        recorded=lambda s: BOB not in s.bans,
        then=lambda s: admit_invite(s, BOB_URI).status == 200),
    Row("muc occupant made moderator → conference-info roles, DTMF moderator keys",
        full_room,
        ev(OccupantPrivilegeChanged, "muc", occupant_jid=ALICE_JID, privilege="moderator"),
        [SetConferenceRoles("leg-alice", ("moderator",)),
         SendSipMessage("leg-alice", MODERATOR_HELP)],
        recorded=lambda s: s.privilege(ALICE) == "moderator",
        then=lambda s: bool(decide(ev(DtmfCommand, "sip", leg_id="leg-alice",
                                      command="mute-all"), s).changes)),
    Row("muc puppet made owner → roles owner+moderator",
        full_room,
        ev(OccupantPrivilegeChanged, "muc", occupant_jid=BOB_PUPPET, privilege="owner"),
        [SetConferenceRoles("leg-bob", ("owner", "moderator")),
         SendSipMessage("leg-bob", MODERATOR_HELP)],
        recorded=lambda s: s.privilege(BOB) == "owner"),
    Row("muc moderator revoked → roles back to participant",
        lambda: _mod(full_room()),
        ev(OccupantPrivilegeChanged, "muc", occupant_jid=ALICE_JID, privilege="participant"),
        [SetConferenceRoles("leg-alice", ("participant",))],
        recorded=lambda s: ALICE not in s.roles),
    Row("muc groupchat → MESSAGE to each SIP leg",
        full_room,
        ev(GroupchatReceived, "muc", sender_jid=CAROL_JID, sender_nick="carol", body="hi",
           thread="t1", language="en"),
        [SendSipMessage("leg-bob", "hi", thread="t1", language="en", sender_display="carol"),
         SendSipMessage("leg-alice", "hi", thread="t1", language="en",
                        sender_display="carol")]),
    Row("muc groupchat from a bound occupant is not sent to her own phone",
        full_room,
        ev(GroupchatReceived, "muc", sender_jid=ALICE_JID + "/x", sender_nick="alice",
           body="yo"),
        [SendSipMessage("leg-bob", "yo", sender_display="alice")]),
    Row("muc groupchat from our puppet is never echoed back to SIP",
        full_room,
        ev(GroupchatReceived, "muc", sender_jid=BOB_PUPPET, sender_nick="Bob", body="x"),
        []),
    Row("muc subject → conference-info subject",
        full_room,
        ev(SubjectChanged, "muc", subject="Daily standup"),
        [SetConferenceSubject("Daily standup")],
        recorded=lambda s: s.subject is not None and s.subject.text == "Daily standup"),
    Row("muc room destroyed → conference ends politely",
        full_room,
        ev(RoomDestroyed, "muc", reason="gone"),
        [SendSipMessage("leg-bob", "The conference has ended (the chat room was closed: "
                                   "gone). Goodbye."),
         HangupLeg("leg-bob", "conference ended: the chat room was closed: gone"),
         SendSipMessage("leg-alice", "The conference has ended (the chat room was closed: "
                                     "gone). Goodbye."),
         HangupLeg("leg-alice", "conference ended: the chat room was closed: gone")],
        recorded=lambda s: s.link is None and not s.legs),
    # ---- call → room ----------------------------------------------------------------------
    Row("sip caller joins → puppet joins with a readable nick",
        linked,
        ev(CallerJoined, "sip", leg_id="leg-bob", caller_uri=BOB_URI, nick="Bob",
           puppet_jid=BOB_PUPPET),
        [JoinPuppet("leg-bob", BOB_PUPPET, "Bob", "participant")],
        recorded=lambda s: s.legs["leg-bob"].participant == BOB),
    Row("sip bound caller joins → no second occupant, her occupant shows audio",
        linked,
        ev(CallerJoined, "sip", leg_id="leg-alice", caller_uri=ALICE_URI, nick="alice",
           puppet_jid="leg-alice@bridge.localhost", bound_jid=ALICE_JID, verified_by="config"),
        [ShowOccupantInCall(ALICE_JID, "leg-alice", True, False)],
        recorded=lambda s: s.legs["leg-alice"].participant == ALICE
        and s.bindings["sip:alice@pbx.example"].jid == ALICE_JID),
    Row("sip caller leaves → puppet leaves",
        full_room,
        ev(CallerLeft, "sip", leg_id="leg-bob", reason="bye"),
        [LeavePuppet("leg-bob", BOB_PUPPET, "bye")],
        recorded=lambda s: "leg-bob" not in s.legs),
    Row("sip bound caller leaves → her occupant no longer shows audio",
        full_room,
        ev(CallerLeft, "sip", leg_id="leg-alice"),
        [ShowOccupantInCall(ALICE_JID, "leg-alice", False)]),
    Row("sip *6 self-mute → puppet visitor (and the mixer mutes, with a tone)",
        full_room,
        ev(DtmfCommand, "sip", leg_id="leg-bob", command="self-mute"),
        [MuteLeg("leg-bob", True), SetConferenceMediaStatus("leg-bob", True),
         PlayTone("leg-bob", "muted"), SetOccupantRole(BOB_PUPPET, "visitor")],
        recorded=lambda s: _muted(s, BOB, kind="self", origin="sip")),
    Row("sip *6 again → self-unmute, puppet voiced",
        lambda: run(full_room(), ev(DtmfCommand, "sip", leg_id="leg-bob", command="self-mute")),
        ev(DtmfCommand, "sip", leg_id="leg-bob", command="self-mute"),
        [MuteLeg("leg-bob", False), SetConferenceMediaStatus("leg-bob", False),
         PlayTone("leg-bob", "unmuted"), SetOccupantRole(BOB_PUPPET, "participant")],
        recorded=lambda s: BOB not in s.mutes),
    Row("sip *6 cannot lift a moderator's mute",
        lambda: _bob_muted(full_room()),
        ev(DtmfCommand, "sip", leg_id="leg-bob", command="self-mute"),
        [PlayTone("leg-bob", "beep"), SendSipMessage("leg-bob", "A moderator muted you.")],
        recorded=lambda s: _muted(s, BOB)),
    Row("sip *6 by a bound caller → status on her own occupant",
        full_room,
        ev(DtmfCommand, "sip", leg_id="leg-alice", command="self-mute"),
        [MuteLeg("leg-alice", True), SetConferenceMediaStatus("leg-alice", True),
         PlayTone("leg-alice", "muted"), ShowOccupantInCall(ALICE_JID, "leg-alice", True, True)]),
    Row("sip moderator *7 mutes the others → their puppets become visitors",
        lambda: _mod(full_room()),
        ev(DtmfCommand, "sip", leg_id="leg-alice", command="mute-all"),
        [MuteLeg("leg-bob", True), SetConferenceMediaStatus("leg-bob", True),
         PlayTone("leg-bob", "muted"), SendSipMessage("leg-bob", "A moderator muted everyone."),
         SetOccupantRole(BOB_PUPPET, "visitor"), PlayTone("leg-alice", "beep")],
        recorded=lambda s: _muted(s, BOB, origin="sip") and ALICE not in s.mutes),
    Row("sip *7 by a non-moderator is denied",
        full_room,
        ev(DtmfCommand, "sip", leg_id="leg-bob", command="mute-all"),
        [PlayTone("leg-bob", "beep"), SendSipMessage("leg-bob", "Only moderators may use *7/*8.")],
        recorded=lambda s: not s.mutes),
    Row("sip moderator *8 unmutes the moderator-muted",
        lambda: _bob_muted(_mod(full_room())),
        ev(DtmfCommand, "sip", leg_id="leg-alice", command="unmute-all"),
        [MuteLeg("leg-bob", False), SetConferenceMediaStatus("leg-bob", False),
         PlayTone("leg-bob", "unmuted"), SendSipMessage("leg-bob", "A moderator unmuted you."),
         SetOccupantRole(BOB_PUPPET, "participant"), PlayTone("leg-alice", "beep")],
        recorded=lambda s: not s.mutes),
    Row("sip MESSAGE → groupchat from the caller's puppet",
        full_room,
        ev(SipMessageIn, "sip", leg_id="leg-bob", body="hello", thread="c1"),
        [SendGroupchat(BOB_PUPPET, "Bob", "hello", thread="c1")]),
    Row("sip MESSAGE from a bound caller → groupchat by the control occupant on her behalf",
        full_room,
        ev(SipMessageIn, "sip", leg_id="leg-alice", body="hello"),
        [SendGroupchat("", "alice", "hello")]),
    Row("sip moderator grant (PIN) → puppet moderator in the room",
        full_room,
        ev(CallerPrivilegeChanged, "sip", leg_id="leg-bob", privilege="moderator"),
        [SetConferenceRoles("leg-bob", ("moderator",)), SendSipMessage("leg-bob", MODERATOR_HELP),
         SetOccupantRole(BOB_PUPPET, "moderator")],
        recorded=lambda s: s.privilege(BOB) == "moderator"),
    Row("sip-side ban → BYE and outcast in the room",
        full_room,
        ev(CallerBanned, "sip", leg_id="leg-bob", reason="abuse"),
        [SendSipMessage("leg-bob", "You were banned from the conference (banned: abuse)."),
         HangupLeg("leg-bob", "banned: abuse"), BanJid(BOB_PUPPET, "banned: abuse")],
        recorded=lambda s: BOB in s.bans and "leg-bob" not in s.legs,
        then=lambda s: admit_invite(s, BOB_URI).status == 403),
    Row("sip conference subject → room subject",
        full_room,
        ev(ConferenceSubjectChanged, "sip", subject="Q3"),
        [SetRoomSubject("Q3"), SetConferenceSubject("Q3")]),
    Row("sip conference ends → puppets leave (control occupant stays)",
        full_room,
        ev(ConferenceEnded, "sip"),
        [LeavePuppet("leg-bob", BOB_PUPPET, ""), ShowOccupantInCall(ALICE_JID, "leg-alice", False)],
        recorded=lambda s: not s.legs and s.link is not None),
    # ---- restart-proof ----------------------------------------------------------------------
    Row("a muted caller who calls again is muted (and a visitor again)",
        lambda: run(_bob_muted(full_room()), ev(CallerLeft, "sip", leg_id="leg-bob")),
        ev(CallerJoined, "sip", leg_id="leg-bob2", caller_uri=BOB_URI, nick="Bob",
           puppet_jid="leg-bob2@bridge.localhost"),
        [JoinPuppet("leg-bob2", "leg-bob2@bridge.localhost", "Bob", "visitor"),
         MuteLeg("leg-bob2", True), SetConferenceMediaStatus("leg-bob2", True),
         PlayTone("leg-bob2", "muted"),
         SendSipMessage("leg-bob2", "You are muted (by a moderator).")]),
    Row("a banned caller who gets through admission is hung up with 403",
        lambda: _bob_banned(full_room()),
        ev(CallerJoined, "sip", leg_id="leg-bob2", caller_uri=BOB_URI, nick="Bob",
           puppet_jid="leg-bob2@bridge.localhost"),
        [HangupLeg("leg-bob2", "banned from this conference", 403)],
        recorded=lambda s: "leg-bob2" not in s.legs),
    Row("restore re-applies mutes, roles, bans and subject to both sides; ghosts leave",
        lambda: run(_bob_muted(_mod(full_room())), ev(OccupantBanned, "muc",
                                                      occupant_jid="mallory@localhost")),
        ev(Restore, "restore", live_legs=frozenset({"leg-bob"})),
        [BanJid("mallory@localhost", ""),
         ShowOccupantInCall(ALICE_JID, "leg-alice", False),
         JoinPuppet("leg-bob", BOB_PUPPET, "Bob", "visitor"),
         SetOccupantRole(BOB_PUPPET, "visitor"),
         MuteLeg("leg-bob", True), SetConferenceMediaStatus("leg-bob", True),
         SetConferenceRoles("leg-bob", ("participant",))],
        recorded=lambda s: set(s.legs) == {"leg-bob"}),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_mirror_row(row: Row) -> None:
    state = row.given()
    decision = decide(row.event, state)
    assert Counter(map(repr, decision.actions)) == Counter(map(repr, row.actions))
    after, _ = state.apply(decision.changes)
    assert row.recorded(after)
    assert row.then(after)
    if row.event.origin == "muc":  # a fact from the room goes to the call only
        assert all(side_of(a) == "sip" for a in decision.actions)


def test_every_event_type_has_a_row() -> None:
    from bridge.core import policy

    covered = {type(r.event) for r in ROWS}
    assert covered == set(policy._HANDLERS)


def test_second_bound_leg_is_still_one_participant() -> None:
    state = alice_joins(alice_joins(bob_joins(linked())), "leg-alice-2")
    assert {leg.participant for leg in state.legs.values()} == {BOB, ALICE}
    decision = decide(ev(OccupantVoiceChanged, "muc", occupant_jid=ALICE_JID, voiced=False), state)
    muted = {a.leg_id for a in decision.actions if isinstance(a, MuteLeg)}
    assert muted == {"leg-alice", "leg-alice-2"}


def test_admit_invite_unlinked_room_is_404() -> None:
    assert admit_invite(RoomState("nowhere"), BOB_URI).status == 404


def test_admit_reports_stored_mute_and_privilege() -> None:
    state = _mod(_bob_muted(full_room()))
    assert admit_invite(state, BOB_URI).muted
    verdict = admit_invite(state, ALICE_URI, ALICE_JID)
    assert (verdict.status, verdict.muted, verdict.privilege) == (200, False, "moderator")


def test_muc_link_fixture() -> None:
    assert linked().link is not None and linked().link.muc_jid == MUC  # type: ignore[union-attr]
