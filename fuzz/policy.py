"""bridge.core.policy.decide over random event sequences: never raises, call-side facts are
mirrored to the room and not back to the call (no loops; a joining caller does get the stored
truth: banned → hung up, muted → muted), legs stay keyed by their id."""

from __future__ import annotations

import _harness
import atheris

with atheris.instrument_imports():
    from bridge.core import mirror_events as me
    from bridge.core.events import HangupLeg, MuteLeg, PlayTone, SendSipMessage
    from bridge.core.policy import decide
    from bridge.core.records import LinkRecord, RoomState, put

ROOM = "standup"
LEGS = ["leg-a", "leg-b", "leg-c"]
JIDS = ["leg-a@bridge.localhost", "leg-b@bridge.localhost", "alice@localhost", "eve@evil"]
URIS = ["sip:+4912345678@pbx", "sip:bob@pbx", "sip:alice@pbx"]
SIP_ACTIONS = (MuteLeg, HangupLeg, PlayTone, SendSipMessage)


def _event(fdp: atheris.FuzzedDataProvider, n: int) -> me.MirrorEvent:
    pick = fdp.ConsumeIntInRange
    base = {"event_id": f"e{n}" if fdp.ConsumeBool() else "e0", "room": ROOM,
            "actor": "x", "at": float(n)}  # fmt: skip
    jid, leg = JIDS[pick(0, 3)], LEGS[pick(0, 2)]
    kind = pick(0, 11)
    if kind == 0:
        return me.CallerJoined(origin="sip", leg_id=leg, caller_uri=URIS[pick(0, 2)],
                               nick=fdp.ConsumeUnicodeNoSurrogates(10),
                               puppet_jid=f"{leg}@bridge.localhost",
                               bound_jid="alice@localhost" if fdp.ConsumeBool() else "",
                               verified_by="config", **base)  # fmt: skip
    if kind == 1:
        return me.CallerLeft(origin="sip", leg_id=leg, reason="bye", **base)
    if kind == 2:
        return me.OccupantVoiceChanged(origin="muc", occupant_jid=jid, voiced=fdp.ConsumeBool(),
                                       **base)  # fmt: skip
    if kind == 3:
        return me.OccupantKicked(origin="muc", occupant_jid=jid, **base)
    if kind == 4:
        return me.OccupantBanned(origin="muc", occupant_jid=jid, **base)
    if kind == 5:
        return me.OccupantUnbanned(origin="muc", occupant_jid=jid, **base)
    if kind == 6:
        privilege = ["owner", "moderator", "participant"][pick(0, 2)]
        return me.OccupantPrivilegeChanged(origin="muc", occupant_jid=jid,
                                           privilege=privilege, **base)  # type: ignore[arg-type]
    if kind == 7:
        return me.SubjectChanged(origin="muc", subject=fdp.ConsumeUnicodeNoSurrogates(30), **base)
    if kind == 8:
        command = ["self-mute", "mute-all", "unmute-all"][pick(0, 2)]
        return me.DtmfCommand(origin="sip", leg_id=leg, command=command, **base)  # type: ignore[arg-type]
    if kind == 9:
        return me.GroupchatReceived(origin="muc", sender_jid=jid, sender_nick="n",
                                    body=fdp.ConsumeUnicodeNoSurrogates(40), **base)  # fmt: skip
    if kind == 10:
        return me.SipMessageIn(origin="sip", leg_id=leg, body=fdp.ConsumeUnicodeNoSurrogates(40),
                               **base)  # fmt: skip
    return me.Restore(origin="restore", live_legs=frozenset(LEGS[: pick(0, 3)]), **base)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    state, _ = RoomState(ROOM).apply([put("link", LinkRecord(muc_jid=f"{ROOM}@muc"))])
    for n in range(fdp.ConsumeIntInRange(1, 25)):
        event = _event(fdp, n)
        decision = decide(event, state)
        if event.origin == "sip":  # facts from the call go to the room, never back
            # a DTMF request acts on its own call, and a joining caller gets the stored truth
            # (banned: hung up, muted: muted); any other call-side fact goes to the room only
            enforcing = isinstance(event, me.DtmfCommand | me.CallerJoined)
            assert enforcing or not any(isinstance(a, MuteLeg | HangupLeg)
                                        for a in decision.actions)  # fmt: skip
        state, _ = state.apply(decision.changes)
        for key, leg in state.legs.items():
            assert key == leg.leg_id
        assert state.version >= 0


if __name__ == "__main__":
    _harness.run(test_one_input)
