"""The owner command table, parser, nick resolution, authorization and planner (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.commands import (
    COMMANDS,
    MAX_COMMAND_CHARS,
    CommandPlan,
    DialOut,
    Issuer,
    KickOccupant,
    LinkConference,
    NickError,
    ParsedCommand,
    ParseError,
    Participant,
    RoomView,
    SetLocked,
    SetPin,
    UnlinkConference,
    authorize,
    help_text,
    is_command,
    parse_command,
    parse_form,
    plan_command,
    resolve_nick,
)
from bridge.core.events import HangupLeg, SendSipMessage
from bridge.core.mirror_events import (
    OccupantKicked,
    OccupantVoiceChanged,
    RoomDestroyed,
    SetOccupantRole,
    ShowOccupantInCall,
)
from bridge.core.policy import decide
from bridge.core.records import LegRecord, LinkRecord, MuteRecord, RoomState, put

# ---- parsing ------------------------------------------------------------------------------


def parsed(text: str) -> ParsedCommand:
    result = parse_command(text)
    assert isinstance(result, ParsedCommand), result
    return result


def error(text: str) -> ParseError:
    result = parse_command(text)
    assert isinstance(result, ParseError), result
    return result


@pytest.mark.parametrize(
    ("text", "name", "args"),
    [
        ("!help", "help", {}),
        ("  !HELP   mute ", "help", {"command": "mute"}),
        ("!?", "help", {}),
        ("!ｍｕｔｅ bob", "mute", {"nick": "bob"}),  # full-width letters from a phone keyboard
        ("!status", "status", {}),
        ("!link", "link", {}),
        ("!link <SIP:conf@pbx.example>", "link", {"uri": "sip:conf@pbx.example"}),
        ("!mute all", "mute", {"nick": "all"}),
        ("!mute Bob Smith", "mute", {"nick": "Bob Smith"}),  # a lone nick may have spaces
        ('!mute "Bob Smith"', "mute", {"nick": "Bob Smith"}),
        ("!unmute “Zoë Ω”", "unmute", {"nick": "Zoë Ω"}),  # curly quotes count
        ("!kick O'Brien", "kick", {"nick": "O'Brien"}),  # a quote inside a word is a letter
        ("!kick bob don't \"shout", "kick", {"nick": "bob", "reason": "don't \"shout"}),
        ('!kick "Bob \\"B\\" Smith" spam\n\tand more', "kick",
         {"nick": 'Bob "B" Smith', "reason": "spam and more"}),
        ("!kick 'Bob Smith'   ' quoted reason '", "kick",
         {"nick": "Bob Smith", "reason": "quoted reason"}),
        ("!hangup +33 6•• •• •• 12", "hangup", {"nick": "+33 6•• •• •• 12"}),
        ("!bye bob", "hangup", {"nick": "bob"}),
        ("!dial sip:carol@pbx.example;transport=tcp", "dial",
         {"target": "sip:carol@pbx.example;transport=tcp"}),
        ("!dial +49(30)123-45", "dial", {"target": "+493012345"}),
        ("!lock", "lock", {}),
        ("!unlock", "unlock", {}),
        ("!pin 123456", "pin", {"pin": "123456"}),
        ("!pin OFF", "pin", {"pin": "off"}),
    ],
)  # fmt: skip
def test_parses(text: str, name: str, args: dict[str, str]) -> None:
    assert parsed(text) == ParsedCommand(name, args)


@pytest.mark.parametrize(
    "text", ["hello", "", "   ", "!", "!!!", "! mute bob", "!123", "wow !mute bob", "!\u200b"]
)
def test_ordinary_chat_is_not_a_command(text: str) -> None:
    assert error(text).code == "not-command"
    assert not is_command(text)


@pytest.mark.parametrize(
    ("text", "code", "needle"),
    [
        ("!mutte bob", "unknown", "Did you mean !mute?"),
        ("!important news", "unknown", "!help lists them"),
        ("!mute", "missing-arg", "!mute <nick|all>: nick is missing"),
        ('!mute ""', "missing-arg", "nick is missing"),
        ("!kick", "missing-arg", "!kick <nick> [reason]"),
        ('!kick "bob', "quoting", "Unclosed quote"),
        ("!kick «bob", "quoting", "Unclosed quote «"),
        ("!lock now", "extra-args", "Too many arguments for !lock"),
        ("!pin 12", "bad-arg", "4 to 12 digits"),
        ("!pin 12ab34", "bad-arg", "4 to 12 digits"),
        ("!pin 1234 5678", "extra-args", "Usage: !pin <digits|off>"),
        ("!dial bob", "bad-arg", "neither a sip: URI nor a telephone number"),
        ("!dial sip:", "bad-arg", "neither"),
        ("!link http://example.org", "bad-arg", "not a sip: or sips: URI"),
        ("!kick bob " + "x" * 400, "bad-arg", "reason is too long"),
        ("!mute " + "b" * 300, "bad-arg", "nick is too long"),
    ],
)
def test_errors_say_what_is_wrong(text: str, code: str, needle: str) -> None:
    result = error(text)
    assert result.code == code
    assert needle in result.message


def test_length_cap() -> None:
    result = error("!kick bob " + "x" * MAX_COMMAND_CHARS)
    assert result.code == "too-long"
    assert f"the limit is {MAX_COMMAND_CHARS}" in result.message
    assert len(result.message) < 200


def test_other_prefix() -> None:
    assert parse_command(".mute bob", prefix=".") == ParsedCommand("mute", {"nick": "bob"})
    assert parse_command("!mute bob", prefix=".") == ParseError("not-command", "")


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=2000), st.sampled_from(["!", ".", "!bridge "]))
def test_parser_never_raises(text: str, prefix: str) -> None:
    result = parse_command(text, prefix)
    assert isinstance(result, ParsedCommand | ParseError)
    if isinstance(result, ParseError):
        assert len(result.message) <= 400
    else:
        assert result.name in COMMANDS


_names = st.sampled_from([*sorted(COMMANDS), "?", "bye", "MUTE", "nope"])
_words = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_quoted = st.builds(lambda q, w: f"{q}{w}{q}", st.sampled_from(['"', "'", "“"]), _words)


@settings(max_examples=400, deadline=None)
@given(_names, st.lists(st.one_of(_words, _quoted), max_size=6), st.text(" \t\u3000\xa0"))
def test_parser_never_raises_on_command_like_lines(name: str, words: list[str], gap: str) -> None:
    text = "!" + name + (gap or " ") + (gap or " ").join(words)
    result = parse_command(text)
    assert isinstance(result, ParsedCommand | ParseError)
    if isinstance(result, ParsedCommand):
        # every parsed command is plannable, whatever the issuer and room
        plan = plan_command(result, OWNER, view(), now=2000.0, event_id="m1")
        assert isinstance(plan, CommandPlan)


_FORM_VARS = st.sampled_from(["nick", "reason", "pin", "uri", "target", "command", "room"])


@settings(max_examples=200, deadline=None)
@given(_names, st.dictionaries(_FORM_VARS, st.text(max_size=600)))
def test_form_parser_never_raises(name: str, values: dict[str, str]) -> None:
    assert isinstance(parse_form(name, values), ParsedCommand | ParseError)


def test_form_and_line_agree() -> None:
    assert parse_form("kick", {"nick": " Bob ", "reason": "a\nb"}) == parsed('!kick Bob "a b"')
    assert parse_form("pin", {"pin": "1234"}) == parsed("!pin 1234")
    assert parse_form("link", {}) == parsed("!link")
    missing = parse_form("mute", {"nick": "  "})
    assert isinstance(missing, ParseError) and missing.code == "missing-arg"
    bad = parse_form("dial", {"target": "not a number"})
    assert isinstance(bad, ParseError) and bad.code == "bad-arg"


# ---- help ---------------------------------------------------------------------------------


def test_help_is_generated_from_the_table() -> None:
    text = help_text()
    for spec in COMMANDS.values():
        assert spec.usage("!") in text
        assert spec.summary in text
    assert "[owner]" in text and "[moderator]" in text
    one = help_text("kick")
    assert one.startswith("!kick <nick> [reason]")
    assert "moderators" in one
    assert help_text("!bye").startswith("!hangup")
    assert help_text("nope").startswith("No command 'nope'.")


def test_form_fields_come_from_the_table() -> None:
    assert [(f.var, f.type, f.required) for f in COMMANDS["kick"].fields()] == [
        ("nick", "text-single", True),
        ("reason", "text-single", False),
    ]
    assert COMMANDS["pin"].fields()[0].type == "text-private"
    assert set(COMMANDS["help"].fields()[0].options) == set(COMMANDS)


# ---- nick resolution ----------------------------------------------------------------------

NICKS = ["Bob", "bob", "Bobby", "Zoë", "Zoe", "Ωmega", "+33 6•• •• •• 12", "Alice"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Bob", "Bob"),  # exact wins over case variants
        ("bob", "bob"),
        ("bobb", "Bobby"),  # unique prefix, any case
        ("ALI", "Alice"),
        ("zoë", "Zoë"),
        ("Zoe\u0308", "Zoë"),  # decomposed form of the same nick
        ("ωMEGA", "Ωmega"),
        ("+33", "+33 6•• •• •• 12"),
    ],
)
def test_resolves(query: str, expected: str) -> None:
    assert resolve_nick(query, NICKS) == expected


def test_ambiguous_lists_candidates() -> None:
    result = resolve_nick("BOB", NICKS)
    assert isinstance(result, NickError)
    assert result.candidates == ("Bob", "bob")
    assert "'Bob', 'bob'" in result.message
    prefix = resolve_nick("b", NICKS)
    assert isinstance(prefix, NickError) and prefix.candidates == ("Bob", "bob", "Bobby")
    many = resolve_nick("u", [f"u{i}" for i in range(20)])
    assert isinstance(many, NickError) and "and 12 more" in many.message


def test_unknown_nick() -> None:
    result = resolve_nick("carol", NICKS)
    assert isinstance(result, NickError) and "Nobody called 'carol'" in result.message
    assert isinstance(resolve_nick("", NICKS), NickError)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=50), st.lists(st.text(max_size=20), max_size=15))
def test_resolution_never_raises_and_never_guesses(query: str, nicks: list[str]) -> None:
    result = resolve_nick(query, nicks)
    if isinstance(result, str):
        assert result in nicks
    else:
        assert set(result.candidates) <= set(nicks)


# ---- authorization ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "affiliation", "role", "allowed"),
    [
        ("help", "outcast", "none", True),
        ("status", "none", "participant", True),
        ("status", "none", "none", False),  # a stranger outside the room
        ("status", "member", "none", True),
        ("mute", "none", "moderator", True),
        ("mute", "none", "participant", False),
        ("kick", "admin", "none", True),  # an admin via ad-hoc, not in the room
        ("kick", "member", "visitor", False),
        ("lock", "none", "moderator", False),
        ("lock", "admin", "moderator", True),
        ("pin", "owner", "none", True),
        ("dial", "member", "participant", False),
        ("link", "admin", "moderator", False),
        ("link", "owner", "none", True),
        ("unlink", "owner", "moderator", True),
        ("status", "outcast", "none", False),
        ("lock", "bogus", "bogus", False),
    ],
)
def test_authorize(command: str, affiliation: str, role: str, allowed: bool) -> None:
    assert (authorize(command, affiliation, role) is None) is allowed


def test_refusals_are_clear() -> None:
    refusal = authorize("kick", "none", "participant")
    assert refusal is not None
    assert refusal.message == (
        "Only moderators (role moderator, or admin/owner affiliation) may use kick; "
        "you are role participant, no affiliation."
    )
    banned = authorize("status", "outcast", "none")
    assert banned is not None and banned.message == "You are banned from this room."
    link = authorize("link", "admin", "moderator")
    assert link is not None and "Only room owners may use link" in link.message


# ---- planning -----------------------------------------------------------------------------

MUC = "standup@conference.localhost"
OWNER = Issuer("Alice", "alice@localhost", "owner", "moderator")
MOD = Issuer("Mo", "mo@localhost", "none", "moderator")
USER = Issuer("Uma", "uma@localhost", "none", "participant")

BOB = Participant("Bob", "sip-bob@bridge.localhost", puppet=True, leg_ids=("leg-bob",),
                  codec="PCMU/8000", since=1000.0, talking=True)  # fmt: skip
DAN = Participant("Dan", "sip-dan@bridge.localhost", puppet=True, leg_ids=("leg-dan",),
                  mute="moderator", role="visitor", since=1500.0)  # fmt: skip
EVE = Participant("Eve", "sip-eve@bridge.localhost", puppet=True, leg_ids=("leg-eve",),
                  mute="self", role="visitor", since=1600.0)  # fmt: skip
CAROL = Participant("Carol", "carol@localhost", affiliation="admin", role="moderator",
                    leg_ids=("leg-carol",), since=1700.0)  # fmt: skip
ALICE = Participant("Alice", "alice@localhost", affiliation="owner", role="moderator")
ZED = Participant("Zed", "zed@localhost")  # chat only


def view(**kw: object) -> RoomView:
    values: dict[str, object] = {
        "room_jid": MUC,
        "conference": "standup",
        "sip_uri": "sip:standup@sip.localhost",
        "control_nick": "bridge",
        "participants": (BOB, DAN, EVE, CAROL, ALICE, ZED),
    }
    values.update(kw)
    return RoomView(**values)  # type: ignore[arg-type]


def plan(text: str, issuer: Issuer = OWNER, room: RoomView | None = None) -> CommandPlan:
    return plan_command(parsed(text), issuer, room or view(), now=2000.0, event_id="m1")


def test_refused_plan_has_no_effects() -> None:
    result = plan("!kick Bob", USER)
    assert result.reply.status == "refused"
    assert result.events == () and result.actions == ()
    assert result.audit(USER)["result"] == "refused"


def test_unlinked_room() -> None:
    room = view(conference="", participants=())
    result = plan("!mute all", room=room)
    assert result.reply.status == "invalid" and "!link it" in result.reply.text
    assert "not linked" in plan("!status", room=room).reply.text


def test_mute_puppet_records_and_acts_in_the_room() -> None:
    result = plan("!mute bo")
    assert result.reply.text == "Muted Bob."
    assert result.events == (
        OccupantVoiceChanged(event_id="m1:0", room="standup", origin="muc",
                             actor="alice@localhost", at=2000.0,
                             occupant_jid="sip-bob@bridge.localhost", voiced=False),
    )  # fmt: skip
    assert result.actions == (SetOccupantRole("sip-bob@bridge.localhost", "visitor",
                                              "muted by Alice"),)  # fmt: skip


def test_mute_event_goes_through_the_mirror_policy() -> None:
    """The recorded event is one the policy knows: Redis gets a moderator mute by the issuer
    and the SIP side mutes the leg."""
    state, _ = RoomState("standup").apply([
        put("link", LinkRecord(muc_jid=MUC)),
        put("leg-bob", LegRecord(leg_id="leg-bob", caller_uri="sip:bob@pbx",
                                 participant="sip:bob@pbx", nick="Bob",
                                 puppet_jid="sip-bob@bridge.localhost")),
    ])  # fmt: skip
    (event,) = plan("!mute Bob").events
    decision = decide(event, state)
    new, changed = state.apply(decision.changes)
    assert changed and new.mutes["sip:bob@pbx"] == MuteRecord(
        kind="moderator", actor="alice@localhost", at=2000.0, origin="muc"
    )
    assert any(type(a).__name__ == "MuteLeg" for a in decision.actions)


def test_mute_bound_caller_shows_in_call_status_not_text_voice() -> None:
    result = plan("!mute carol")
    assert result.actions == (ShowOccupantInCall("carol@localhost", "leg-carol", True, True),)


def test_mute_all_and_unmute_all() -> None:
    muted = plan("!mute ALL")
    assert [e.occupant_jid for e in muted.events if isinstance(e, OccupantVoiceChanged)] == [
        "sip-bob@bridge.localhost"  # not Dan/Eve (already muted), not Carol (admin)
    ]
    unmuted = plan("!unmute all", MOD)
    targets = [e.occupant_jid for e in unmuted.events if isinstance(e, OccupantVoiceChanged)]
    assert targets == ["sip-dan@bridge.localhost"]  # Eve muted herself: left alone
    assert unmuted.actions == (SetOccupantRole("sip-dan@bridge.localhost", "participant",
                                               "unmuted by Mo"),)  # fmt: skip
    dee = Participant("Dee", "sip-dee@b", puppet=True, leg_ids=("l",))
    both = plan("!mute all", room=view(participants=(BOB, dee)))
    assert [e.event_id for e in both.events] == ["m1:0", "m1:1"]  # distinct, stable ids


def test_mute_refusals() -> None:
    assert plan("!unmute eve").reply.text == "Eve muted themself; only they can unmute (*6)."
    assert plan("!mute zed").reply.text == "Zed is in the chat only, not on the call."
    assert "already muted" in plan("!mute Dan").reply.text
    assert "is not muted" in plan("!unmute Bob").reply.text
    assert plan("!mute carol", MOD).reply.text == "You may not mute Carol: they are a room admin."
    assert "Nobody called" in plan("!mute nobody").reply.text


def test_kick_puppet_and_chat_user() -> None:
    result = plan('!kick bob "too loud"')
    assert result.events == (
        OccupantKicked(event_id="m1:0", room="standup", origin="muc", actor="alice@localhost",
                       at=2000.0, occupant_jid="sip-bob@bridge.localhost",
                       reason="kicked by Alice: too loud"),
    )  # fmt: skip
    assert result.actions == (KickOccupant(MUC, "Bob", "kicked by Alice: too loud"),)
    assert result.reply.text == "Kicked Bob (their call is hung up)."
    assert plan("!kick zed").reply.text == "Kicked Zed."
    assert plan("!kick Alice").reply.text == "You cannot kick yourself."
    assert "they are a room owner" in plan("!kick alice", MOD).reply.text
    assert plan("!kick bridge").reply.status == "invalid"


def test_hangup() -> None:
    result = plan("!hangup bob", MOD)
    assert result.events == ()
    assert result.actions == (SendSipMessage("leg-bob", "A moderator ended your call."),
                              HangupLeg("leg-bob", "hung up by Mo"))  # fmt: skip
    assert "chat only" in plan("!hangup zed").reply.text


def test_link_unlink() -> None:
    unlinked = view(conference="", sip_uri="", participants=(ALICE,))
    created = plan("!link", room=unlinked)
    assert created.actions == (LinkConference(MUC, "", "alice@localhost"),)
    external = plan("!link sips:weekly@pbx.example", room=unlinked)
    assert external.actions == (LinkConference(MUC, "sips:weekly@pbx.example", "alice@localhost"),)
    assert "already linked" in plan("!link").reply.text
    result = plan("!unlink")
    assert result.actions == (UnlinkConference(MUC, "standup", "alice@localhost"),)
    assert result.events == (RoomDestroyed(event_id="m1:0", room="standup", origin="muc",
                                           actor="alice@localhost", at=2000.0,
                                           reason="unlinked by Alice"),)  # fmt: skip
    assert "4 caller(s)" in result.reply.text


def test_lock_pin_dial() -> None:
    assert plan("!lock").actions == (SetLocked("standup", True, "alice@localhost"),)
    assert plan("!lock", room=view(locked=True)).actions == ()
    assert plan("!unlock", room=view(locked=True)).actions == (
        SetLocked("standup", False, "alice@localhost"),
    )
    pin = plan("!pin 4321")
    assert pin.actions == (SetPin("standup", "4321", "alice@localhost"),)
    assert "4321" not in pin.reply.text and "4321" not in repr(pin.actions)
    assert plan("!pin off").reply.text == "No PIN was set."
    assert plan("!pin off", room=view(pin_set=True)).actions == (
        SetPin("standup", None, "alice@localhost"),
    )
    assert plan("!dial +4930123").actions == (
        DialOut("standup", "+4930123", True, "alice@localhost", "Alice"),
    )
    assert plan("!dial sip:x@y").actions[0] == DialOut("standup", "sip:x@y", False,
                                                       "alice@localhost", "Alice")  # fmt: skip


def test_status() -> None:
    text = plan("!status", USER, view(locked=True, pin_set=True)).reply.text
    lines = text.splitlines()
    assert lines[0] == ("Conference standup (dial sip:standup@sip.localhost); locked; PIN on.")
    assert lines[1] == "On the call (4):"
    assert lines[2] == "  Bob: phone, talking, PCMU/8000, for 16 min"
    assert lines[3] == "  Dan: phone, muted by a moderator, for 8 min"
    assert lines[4] == "  Eve: phone, muted by themself, for 6 min"
    assert lines[5] == "  Carol: chat and phone, for 5 min"
    assert lines[6] == "In the chat only (2): Alice, Zed"
    empty = plan("!status", room=view(participants=())).reply.text
    assert "Nobody is on the call." in empty


def test_help_plan() -> None:
    assert plan("!help", USER).reply.text == help_text()
    assert plan("!help pin", USER).reply.text.startswith("!pin <digits|off>")


def test_audit_fields() -> None:
    result = plan("!lock")
    assert result.audit(OWNER) == {
        "command": "lock", "actor": "alice@localhost", "affiliation": "owner",
        "role": "moderator", "result": "ok",
        "detail": "Locked: new callers are refused.", "effects": 1,
    }  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(COMMANDS)),
    st.text(max_size=30),
    st.tuples(
        st.sampled_from(["owner", "admin", "member", "none", "outcast", ""]),
        st.sampled_from(["moderator", "participant", "visitor", "none", ""]),
    ),
    st.lists(st.text(max_size=12), max_size=6),
    st.booleans(),
)
def test_planner_never_raises(
    name: str, arg: str, issuer: tuple[str, str], nicks: list[str], linked: bool
) -> None:
    aff, role = issuer
    people = tuple(Participant(n, f"p{i}@b", puppet=bool(i % 2), leg_ids=(f"l{i}",) * (i % 3))
                   for i, n in enumerate(nicks))  # fmt: skip
    room = view(conference="standup" if linked else "", participants=people)
    spec = COMMANDS[name]
    args = {a.name: arg for a in spec.args}
    result = plan_command(ParsedCommand(name, args), Issuer("x", "x@y", aff, role), room,
                          now=0.0, event_id="e")  # fmt: skip
    if authorize(spec, aff, role) is not None:
        assert result.reply.status == "refused" and not result.events and not result.actions
    assert result.reply.text
