"""The node's PIN gate (issue 8): who is held, what the caller is told, when it lets go."""

from __future__ import annotations

from bridge.core.events import HangupLeg, HoldLeg, LegJoined, SendSipMessage
from bridge.core.pin import PinLimiter, hash_pin, is_pin_hash, pin_hash_matches
from bridge.node.pin_gate import PinGate


def leg(leg_id: str = "w0.0.1", caller: str = "sip:carl@127.0.0.1:5070") -> LegJoined:
    return LegJoined(leg_id, "standup", "call-1", 0, caller)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[object] = []
        self.admitted: list[LegJoined] = []

    def send(self, command: object) -> None:
        self.sent.append(command)

    async def admit(self, joined: LegJoined) -> None:
        self.admitted.append(joined)


def gate(rec: Recorder, **kw: object) -> PinGate:
    return PinGate(rec.send, rec.admit, **kw)  # type: ignore[arg-type]


def test_the_stored_form_is_salted_and_checks_digits() -> None:
    one, two = hash_pin("1234"), hash_pin("1234")
    assert one != two and is_pin_hash(one) and "1234" not in one
    assert pin_hash_matches("1234", one) and not pin_hash_matches("4321", one)
    assert not pin_hash_matches("1234", "pbkdf2-sha256$x$zz$yy")


async def test_no_pin_releases_a_leg_the_pool_held() -> None:
    rec = Recorder()
    assert not gate(rec).hold(leg(), "", held_by_pool=True)
    assert rec.sent == [HoldLeg("w0.0.1", False)]


async def test_right_pin_admits_once() -> None:
    rec = Recorder()
    g = gate(rec)
    assert g.hold(leg(), hash_pin("1234"), held_by_pool=True)
    assert any(isinstance(c, SendSipMessage) and "PIN" in c.body for c in rec.sent)
    for key in "1234#":
        assert await g.feed("w0.0.1", key)
    assert rec.admitted == [leg()] and rec.sent[-1] == HoldLeg("w0.0.1", False)
    assert not await g.feed("w0.0.1", "*")  # later keys are conference keys again
    assert not g.hold(leg(), hash_pin("1234"), held_by_pool=False)  # the admitted re-entry


async def test_three_wrong_pins_hang_up_with_403_and_the_limiter_remembers() -> None:
    rec = Recorder()
    limiter = PinLimiter(max_failures=3)
    g = gate(rec, limiter=lambda: limiter)
    g.hold(leg(), hash_pin("1234"), held_by_pool=False)
    assert rec.sent[0] == HoldLeg("w0.0.1", True)  # PIN set after the pool admitted it
    for key in "1#2#3#":
        await g.feed("w0.0.1", key)
    hangups = [c for c in rec.sent if isinstance(c, HangupLeg)]
    assert [h.status_code for h in hangups] == [403] and not rec.admitted
    assert not g.is_waiting("w0.0.1")
    # the same caller calling again is refused at once
    g.hold(leg("w0.0.2"), hash_pin("1234"), held_by_pool=True)
    assert [c.leg_id for c in rec.sent if isinstance(c, HangupLeg)] == ["w0.0.1", "w0.0.2"]


async def test_dialled_legs_are_trusted() -> None:
    rec = Recorder()
    g = gate(rec)
    g.trust("w0.0.9")
    assert not g.hold(leg("w0.0.9"), hash_pin("1234"), held_by_pool=True)
