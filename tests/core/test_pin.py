"""Dial-in PIN entry by DTMF and the brute-force limit per caller (pure; the clock is passed)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.events import HangupLeg, PlayTone, SendSipMessage
from bridge.core.pin import AdmitLeg, PinEntry, PinLimiter, PinStep, pin_matches

CALLER = "sip:bob@pbx.example"


def entry(limiter: PinLimiter | None = None, **kw: object) -> PinEntry:
    values: dict[str, object] = {"leg_id": "leg-1", "caller": CALLER, "pin": "4711",
                                 "limiter": limiter or PinLimiter()}  # fmt: skip
    values.update(kw)
    e = PinEntry(**values)  # type: ignore[arg-type]
    e.start(now=0.0)
    return e


def keys(e: PinEntry, digits: str, now: float = 1.0) -> list[PinStep]:
    return [e.feed(d, now) for d in digits]


def test_prompt_on_start() -> None:
    e = PinEntry("leg-1", CALLER, "4711", PinLimiter())
    assert e.start(0.0) == PinStep("collecting", (SendSipMessage("leg-1", e_prompt()),))


def e_prompt() -> str:
    from bridge.core.pin import PROMPT

    return PROMPT


def test_right_pin_admits() -> None:
    e = entry()
    steps = keys(e, "4711#")
    assert [s.status for s in steps] == ["collecting"] * 4 + ["admitted"]
    assert steps[-1].actions == (AdmitLeg("leg-1"),)
    assert e.feed("1", 2.0) == PinStep("admitted")  # keys afterwards change nothing


def test_star_clears_and_letters_are_ignored() -> None:
    e = entry()
    keys(e, "99*47A1B1")
    assert e.feed("#", 1.0).status == "admitted"


def test_empty_hash_reprompts_without_costing_an_attempt() -> None:
    e = entry(max_attempts=1)
    step = e.feed("#", 1.0)
    assert step.status == "collecting" and isinstance(step.actions[0], SendSipMessage)
    assert e.attempts_left == 1


def test_wrong_pins_then_hangup() -> None:
    e = entry(max_attempts=3)
    first = keys(e, "1234#")[-1]
    assert first.status == "collecting"
    wrong = SendSipMessage("leg-1", "Wrong PIN. Try again (2 left), then #.")
    assert first.actions == (PlayTone("leg-1", "beep"), wrong)
    keys(e, "0000#")
    last = keys(e, "9999#")[-1]
    assert last.status == "refused"
    assert last.actions[-1] == HangupLeg("leg-1", "wrong PIN", status_code=403)
    assert e.feed("4", 2.0) == PinStep("refused")
    assert keys(e, "4711#")[-1].status == "refused"  # too late


def test_no_message_to_a_leg_that_does_not_take_them() -> None:
    e = entry(max_attempts=1, accepts_messages=False)
    assert keys(e, "1#")[-1].actions == (HangupLeg("leg-1", "wrong PIN", status_code=403),)


def test_overlong_entry_is_a_wrong_attempt() -> None:
    e = entry(max_digits=6, max_attempts=2)
    steps = keys(e, "1234567")
    assert steps[-1].status == "collecting" and e.attempts_left == 1
    assert keys(e, "4711#")[-1].status == "admitted"  # the buffer was cleared


def test_entry_deadline() -> None:
    e = entry(timeout=30.0)
    assert e.tick(29.9) == PinStep("collecting")
    step = e.tick(30.0)
    assert step.status == "refused" and step.actions[-1] == HangupLeg(
        "leg-1", "no PIN entered", status_code=403
    )
    late = entry(timeout=30.0)
    assert late.feed("4", 31.0).status == "refused"


def test_limit_across_calls_with_sliding_window() -> None:
    limiter = PinLimiter(max_failures=5, window=100.0)
    for call in range(2):  # two calls, three wrong PINs... then two
        e = entry(limiter, leg_id=f"leg-{call}", max_attempts=3)
        for _ in range(3 if call == 0 else 2):
            keys(e, "0000#", now=10.0 + call)
    assert limiter.failures(CALLER, 11.0) == 5
    assert limiter.retry_after(CALLER, 11.0) == pytest.approx(99.0)  # oldest at t=10 expires
    blocked = PinEntry("leg-9", CALLER, "4711", limiter)
    step = blocked.start(now=50.0)
    assert step.status == "refused" and isinstance(step.actions[-1], HangupLeg)
    assert PinEntry("leg-x", "sip:other@pbx", "4711", limiter).start(50.0).status == "collecting"
    # the window slides: the three t=10 failures expire at t=110, the two at t=11 later
    assert limiter.retry_after(CALLER, 109.5) == pytest.approx(0.5)
    assert limiter.retry_after(CALLER, 110.0) == 0.0
    assert limiter.failures(CALLER, 110.0) == 2
    assert limiter.failures(CALLER, 111.0) == 0
    fresh = entry(limiter, max_attempts=3, timeout=1000.0)
    assert keys(fresh, "4711#", now=112.0)[-1].status == "admitted"


def test_limit_cuts_a_call_short() -> None:
    """The per-call attempts do not outlast the caller's budget."""
    limiter = PinLimiter(max_failures=2, window=100.0)
    e = entry(limiter, max_attempts=5)
    keys(e, "1#")
    assert keys(e, "2#")[-1].status == "refused"


def test_limiter_memory_is_bounded() -> None:
    limiter = PinLimiter(max_failures=3, window=100.0, max_keys=50)
    for i in range(1000):
        limiter.record_failure(f"sip:{i}@x", float(i) / 1000)
    assert len(limiter._failures) <= 50
    assert limiter.failures("sip:999@x", 1.0) == 1


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        PinLimiter(max_failures=0)
    with pytest.raises(ValueError):
        PinEntry("l", CALLER, "12a4", PinLimiter())
    with pytest.raises(ValueError):
        PinEntry("l", CALLER, "1234", PinLimiter(), max_attempts=0)
    assert "4711" not in repr(entry())


def test_compare() -> None:
    assert pin_matches("4711", "4711")
    assert not pin_matches("471", "4711")
    assert not pin_matches("47110", "4711")
    assert not pin_matches("", "4711")


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="0123456789*#ABCD", max_size=80), st.from_regex(r"[0-9]{4,8}", fullmatch=True)
)
def test_any_key_sequence(sequence: str, pin: str) -> None:
    """Never raises; admitted only if the PIN was typed; never more failures than attempts."""
    limiter = PinLimiter(max_failures=100)
    e = entry(limiter, pin=pin, max_attempts=3)
    hangups = 0
    for step in keys(e, sequence):
        hangups += sum(isinstance(a, HangupLeg) for a in step.actions)
        if e.status == "admitted":
            assert step.actions == (AdmitLeg("leg-1"),) or step.actions == ()
    assert hangups <= 1
    if e.status == "admitted":
        assert pin + "#" in sequence
    assert limiter.failures(CALLER, 1.0) <= 3


def test_lockouts_grow_each_time_the_budget_is_spent() -> None:
    limiter = PinLimiter(max_failures=2, window=100.0)
    for t in (0.0, 1.0):
        limiter.record_failure("addr:192.0.2.1", t)
    first = limiter.retry_after("addr:192.0.2.1", 1.0)
    assert first == pytest.approx(99.0)  # the first time: the window slides
    for t in (200.0, 201.0):
        limiter.record_failure("addr:192.0.2.1", t)
    assert limiter.retry_after("addr:192.0.2.1", 201.0) == pytest.approx(200.0)  # 2 x window
    for t in (500.0, 501.0):
        limiter.record_failure("addr:192.0.2.1", t)
    assert limiter.retry_after("addr:192.0.2.1", 501.0) == pytest.approx(400.0)  # 4 x window


def test_the_room_budget_stops_guessing_from_many_addresses() -> None:
    room = PinLimiter(max_failures=3, window=100.0)
    step = None
    for n in range(3):  # three "different callers", one wrong PIN each
        e = PinEntry(f"leg-{n}", f"addr:192.0.2.{n}", "4711", PinLimiter(), room_limiter=room)
        e.start(0.0)
        step = keys(e, "0000#", now=1.0)[-1]
    assert step is not None and step.status == "refused"
    fresh = PinEntry("leg-9", "addr:198.51.100.9", "4711", PinLimiter(), room_limiter=room)
    assert fresh.start(2.0).status == "refused"


def test_deferred_check_runs_outside_the_entry() -> None:
    e = entry(defer_check=True)
    step = keys(e, "4711#")[-1]
    assert step.status == "checking" and e.pending == "4711"
    assert e.feed("9", 0.0).status == "collecting" and e.pending == "4711"  # ignored meanwhile
    assert e.resolve(e.check(e.pending), 0.0).status == "admitted"
