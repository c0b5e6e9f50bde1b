"""SIP behaviour of real pjsua2 workers, driven by a hand-written UDP user agent.

Admission answers (404/403/503/302 with their headers), MESSAGE in and out of dialog,
cleanup on BYE/CANCEL/media timeout, malformed SIP, worker crash and clean shutdown.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path

import pytest

from bridge.core.admission import RoomDirectory
from bridge.core.caller_gate import CallerPolicy
from bridge.core.caller_identity import TrustedPeers
from bridge.core.events import (
    HangupLeg,
    LegJoined,
    LegLeft,
    PlayTone,
    SendSipMessage,
    SipMessageReceived,
)
from mixer.node import MixerNode
from mixer.rings import LegAttachment
from tests.sip.conftest import PoolHarness
from tests.sip.fault_hooks import CollectNow, Done, EmptyConference, FillConference, ForgetCalls
from tests.sip.rawsip import SDP, RawUac


def _joined(room: str = "demo") -> Callable[[object], bool]:
    return lambda ev: isinstance(ev, LegJoined) and ev.room == room


def test_admission_answers(make_pool: Callable[..., PoolHarness]) -> None:
    # an unverified caller's From is only a hint, but a ban may name it (issue 18)
    directory = RoomDirectory.create(["demo", "locked"],
                                     bans={"demo": ["from:sip:banned@127.0.0.1"]},
                                     locked=["locked"])  # fmt: skip
    h = make_pool(pool_size=1, calls_per_worker=1, retry_after=17, directory=directory)
    uac = RawUac(h.port)
    try:
        r = uac.invite("nosuchroom")
        assert (r.status, r.first_line.split(" ", 2)[2]) == (404, "Conference not found")
        assert RawUac(h.port, user="banned").invite("demo").status == 403
        assert RawUac(h.port).invite("locked").status == 403

        first = RawUac(h.port, display="First")
        ok = first.invite("demo")
        assert ok.status == 200
        assert ok.get("Contact").endswith(";isfocus")
        h.wait_for(_joined(), label="first joined")

        full = RawUac(h.port).invite("demo")  # the only slot is taken: node full
        assert full.status == 503
        assert full.get("Retry-After") == "17"

        # the directory is the supervisor's: unlinking a room takes effect at once
        h.pool.set_directory(RoomDirectory.create(["other"]))
        h.drain(0.3)
        assert RawUac(h.port).invite("demo").status == 404
        assert first.bye().status == 200
        left = h.wait_for(lambda e: isinstance(e, LegLeft), label="left")
        assert isinstance(left, LegLeft) and left.reason == "bye"
    finally:
        uac.close()


def test_front_redirects_to_a_worker_with_a_slot(make_pool: Callable[..., PoolHarness]) -> None:
    h = make_pool(pool_size=2, calls_per_worker=1)  # the front serves 1, worker 1 serves 1
    here = RawUac(h.port)
    assert here.invite("demo").status == 200
    h.wait_for(_joined())
    moved = RawUac(h.port).invite("demo")
    assert moved.status == 302
    worker1 = h.pool.slots()[1]
    assert moved.get("Contact") == f"<sip:demo@127.0.0.1:{worker1.port}>"
    callee = RawUac(worker1.port)
    assert callee.invite("demo").status == 200
    joined = h.wait_for(_joined())
    assert isinstance(joined, LegJoined) and joined.worker == 1
    assert h.pool.free_slots() == 0


def test_messages_in_and_out_of_dialog(make_pool: Callable[..., PoolHarness]) -> None:
    # out of dialog only from a verified sender in the room (issue 18): here the PBX at
    # 127.0.0.2 asserts bob, whom the supervisor reported present
    directory = RoomDirectory.create(["demo"], present={"demo": ["sip:bob@pbx.example"]})
    h = make_pool(directory=directory,
                  callers=CallerPolicy(peers=TrustedPeers.parse(["127.0.0.2"])))  # fmt: skip
    stranger = RawUac(h.port, user="bob", from_host="pbx.example")
    stranger.room = "demo"
    stranger.request("MESSAGE", f"sip:demo@127.0.0.1:{h.port}", body="x", ctype="text/plain")
    assert stranger.final_response("MESSAGE").status == 403
    ood = RawUac(h.port, display="Bob", bind="127.0.0.2",
                 extra_headers=("P-Asserted-Identity: <sip:bob@pbx.example>",))  # fmt: skip
    ood.room = "demo"
    ood.request(
        "MESSAGE", f"sip:demo@127.0.0.1:{h.port}", body="hello room", ctype="text/plain",
        headers=("Subject: greetings", "Content-Language: fr"),
    )  # fmt: skip
    assert ood.final_response("MESSAGE").status == 200
    ev = h.wait_for(lambda e: isinstance(e, SipMessageReceived), label="ood message")
    assert isinstance(ev, SipMessageReceived)
    assert (ev.room, ev.body, ev.subject, ev.language, ev.leg_id) == (
        "demo", "hello room", "greetings", "fr", "")  # fmt: skip
    assert (ev.sender_uri, ev.sender_display, ev.call_id, ev.sender_key) == (
        f"sip:raw@127.0.0.2:{ood.port}", "Bob", ood.call_id, "sip:bob@pbx.example")  # fmt: skip

    for ctype, body in (("text/html", "<b>x</b>"), ("application/json", "{}")):
        other = RawUac(h.port)
        other.room = "demo"
        other.request("MESSAGE", f"sip:demo@127.0.0.1:{h.port}", body=body, ctype=ctype)
        refused = other.final_response("MESSAGE")
        assert refused.status == 415
        assert refused.get("Accept") == "text/plain"
    nowhere = RawUac(h.port)
    nowhere.room = "nowhere"
    nowhere.request("MESSAGE", f"sip:nowhere@127.0.0.1:{h.port}", body="x", ctype="text/plain")
    assert nowhere.final_response("MESSAGE").status == 404

    caller = RawUac(h.port, display="Carol")
    assert caller.invite("demo").status == 200
    joined = h.wait_for(_joined())
    assert isinstance(joined, LegJoined)
    r = caller.in_dialog("MESSAGE", body="in dialog", ctype="text/plain",
                         headers=("Subject: s1",))  # fmt: skip
    assert r.status == 200
    ev = h.wait_for(lambda e: isinstance(e, SipMessageReceived) and e.leg_id != "")
    assert isinstance(ev, SipMessageReceived)
    assert (ev.leg_id, ev.body, ev.subject, ev.sender_display) == (
        joined.leg_id, "in dialog", "s1", "Carol")  # fmt: skip
    r = caller.in_dialog("MESSAGE", body="<i>x</i>", ctype="text/html")
    assert r.status == 415

    h.pool.send(SendSipMessage(joined.leg_id, "hi from chat", subject="topic",
                               language="en", sender_display="alice"))  # fmt: skip
    msg = caller.wait_request("MESSAGE")
    assert msg.body == "alice: hi from chat"
    assert msg.get("Subject") == "topic" and msg.get("Content-Language") == "en"
    assert msg.get("Call-ID") == caller.call_id  # in-dialog
    h.pool.send(PlayTone(joined.leg_id, "muted"))  # audible cue; must not disturb the call
    h.pool.send(HangupLeg(joined.leg_id, "kicked"))
    bye = caller.wait_request("BYE")
    assert "kicked" in bye.get("Reason")
    left = h.wait_for(lambda e: isinstance(e, LegLeft))
    assert isinstance(left, LegLeft) and left.reason == "kicked"


class GatedMixer:
    """A real mixer whose add_leg waits for the test (to hold a call in 180 Ringing)."""

    def __init__(self, node: MixerNode) -> None:
        self.node = node
        self.gate = threading.Event()
        self.added: list[int] = []
        self.removed: list[int] = []

    def add_leg(
        self, conference: Hashable, rate: int, gain: float = 1.0, *, muted: bool = False
    ) -> LegAttachment:
        self.gate.wait(10)
        att = self.node.add_leg(conference, rate, gain, muted=muted)
        self.added.append(att.slot)
        return att

    def remove_leg(self, leg: int) -> None:
        self.removed.append(leg)
        self.node.remove_leg(leg)

    def set_mute(self, leg: int, muted: bool) -> None:
        self.node.set_mute(leg, muted)


def test_cancel_and_media_timeout_clean_up(make_pool: Callable[..., PoolHarness]) -> None:
    node = MixerNode(f"sipmuc-test-{os.getpid()}", capacity=16)
    node.start(realtime=False)
    mixer = GatedMixer(node)
    try:
        h = make_pool(media_timeout=1.5, mixer=mixer)
        # CANCEL while ringing: 487, no LegJoined, slot and mixer leg freed
        uac = RawUac(h.port)
        uac.room = "demo"
        invite = uac.request(
            "INVITE",
            f"sip:demo@127.0.0.1:{h.port}",
            body=SDP.format(port=uac.rtp_port),
            ctype="application/sdp",
        )
        ringing = uac.recv(5)
        while ringing is not None and ringing.status < 180:
            ringing = uac.recv(5)
        assert ringing is not None and ringing.status == 180
        via = invite.split("\r\n")[1][5:]
        uac.request("CANCEL", f"sip:demo@127.0.0.1:{h.port}", cseq=1, via=via)
        final = uac.final_response("INVITE")
        assert final.status == 487
        mixer.gate.set()
        h.until(lambda: h.pool.free_slots() == 4 and not h.pool.legs(), label="cancel cleanup")
        assert mixer.added == mixer.removed
        assert not any(isinstance(e, LegJoined) for _, e in h.seen)

        # a caller that sends no RTP is hung up after media_timeout
        silent = RawUac(h.port)
        assert silent.invite("demo").status == 200
        left = h.wait_for(lambda e: isinstance(e, LegLeft), timeout=15)
        assert isinstance(left, LegLeft) and left.reason == "timeout"
        silent.wait_request("BYE")
        h.until(lambda: not h.pool.legs() and h.pool.free_slots() == 4, label="timeout cleanup")
        assert sorted(mixer.added) == sorted(mixer.removed)
    finally:
        node.close()


MALFORMED = [
    # broken SDP
    ("application/sdp", "v=0\r\nthis is not sdp\r\nm=audio notaport RTP/AVP 0\r\n"),
    # SDP without an audio stream
    ("application/sdp", "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
     "t=0 0\r\nm=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"),
]  # fmt: skip


def test_malformed_sip_gets_errors_and_never_kills_a_worker(
    make_pool: Callable[..., PoolHarness],
) -> None:
    h = make_pool()
    pids = h.pool.worker_pids()
    for ctype, body in MALFORMED:
        r = RawUac(h.port).invite("demo", sdp=body, ctype=ctype)
        assert 400 <= r.status < 500, r.first_line
    huge = RawUac(h.port)
    huge.room = "demo"
    huge.request("INVITE", f"sip:demo@127.0.0.1:{h.port}",
                 headers=(f"X-Huge: {'a' * 3000}", *[f"X-Many-{i}: {i}" for i in range(300)]),
                 body=SDP.format(port=huge.rtp_port), ctype="application/sdp")  # fmt: skip
    reply = huge.recv(2)  # pjsip may drop an oversized datagram or answer 4xx/5xx
    assert reply is None or reply.status >= 400 or reply.status in (100, 180)
    garbage = RawUac(h.port)
    garbage.send("INVITE sip:demo@127.0.0.1 SIP/2.0\r\nVia: broken\r\n\r\n")
    garbage.send("\x00\xff" * 500)
    garbage.send("NOTAMETHOD\r\n\r\n")
    bad_from = RawUac(h.port)
    bad_from.send(
        f"INVITE sip:demo@127.0.0.1:{h.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{bad_from.port};branch=z9hG4bKbad\r\n"
        "From: <<<sip:x\r\nTo: nobody\r\nCall-ID: c1\r\nCSeq: x INVITE\r\n"
        "Content-Length: 99999\r\n\r\n"
    )
    # every worker is still the same process and still serves calls
    ok = RawUac(h.port)
    assert ok.invite("demo").status == 200
    assert ok.bye().status == 200
    assert h.pool.worker_pids() == pids
    assert all(p.alive for p in h.pool.slots())


def test_worker_crash_ends_its_calls_and_restarts(make_pool: Callable[..., PoolHarness]) -> None:
    h = make_pool(pool_size=2, calls_per_worker=2)
    a = RawUac(h.port)
    assert a.invite("demo").status == 200
    h.wait_for(_joined())
    worker1 = h.pool.slots()[1]
    b = RawUac(worker1.port)
    assert b.invite("demo").status == 200
    jb = h.wait_for(_joined())
    assert isinstance(jb, LegJoined) and jb.worker == 1
    old_pid = h.pool.worker_pids()[1]
    h.pool.kill_worker(1)
    left = h.wait_for(lambda e: isinstance(e, LegLeft), label="worker-died")
    assert isinstance(left, LegLeft) and (left.leg_id, left.reason) == (jb.leg_id, "worker-died")
    h.until(lambda: h.pool.slots()[1].alive and h.pool.worker_pids()[1] != old_pid,
            timeout=30, label="restart")  # fmt: skip
    # the front's call survived, the directory survived, the restarted worker serves again
    assert set(h.pool.legs()) == {
        e.leg_id for _, e in h.seen if isinstance(e, LegJoined) and e.worker == 0
    }
    c = RawUac(worker1.port)
    assert c.invite("demo").status == 200
    jc = h.wait_for(_joined())
    assert isinstance(jc, LegJoined) and jc.worker == 1 and jc.leg_id != jb.leg_id

    # clean shutdown: every caller gets a BYE, every leg leaves
    h.pool.stop()
    for uac in (a, c):
        uac.wait_request("BYE")
    reasons = {e.reason for _, e in h.seen if isinstance(e, LegLeft)} | {
        e.reason for e in h.drain(0.5) if isinstance(e, LegLeft)
    }
    assert "shutdown" in reasons


@pytest.fixture(autouse=True)
def _no_leaked_segments() -> None:
    before = set(os.listdir("/dev/shm")) if Path("/dev/shm").is_dir() else set()
    yield  # type: ignore[misc]
    after = set(os.listdir("/dev/shm")) if Path("/dev/shm").is_dir() else set()
    # only this process's pools: other test runs on the shared box create segments too
    ours = (f"sipmuc-{os.getpid()}-", f"sipmuc-test-{os.getpid()}")
    leaked = {n for n in after - before if n.startswith(ours)}
    assert not leaked, f"shared memory left behind: {leaked}"


def test_late_garbage_collection_never_hangs_up_a_new_call(
    make_pool: Callable[..., PoolHarness],
) -> None:
    """pjsua reuses call ids and pjsua2's ``~Call`` hangs up whatever call holds its id.

    A kicked caller's wrapper sat in a reference cycle (call → handler → leg → call); when
    a full collection freed it minutes later (soak, minute 8), it hung up the new caller
    that had its id — the caller was cut off and the worker kept a ghost leg that failed
    every MESSAGE with "INVITE session already terminated".
    """
    h = make_pool(extra_hooks=("tests.sip.fault_hooks:install_collect",))
    # every one of the front's call ids (round-robin) gets a kicked call behind it
    for _ in range(4):
        kicked = RawUac(h.port)
        assert kicked.invite("demo").status == 200
        joined = h.wait_for(_joined())
        assert isinstance(joined, LegJoined)
        h.pool.send(HangupLeg(joined.leg_id, "kicked"))
        kicked.wait_request("BYE")
        left = h.wait_for(lambda e: isinstance(e, LegLeft))
        assert isinstance(left, LegLeft) and left.leg_id == joined.leg_id
    callers = [RawUac(h.port, display=f"new{i}") for i in range(4)]
    legs = []
    for c in callers:
        assert c.invite("demo").status == 200
        ev = h.wait_for(_joined())
        assert isinstance(ev, LegJoined)
        legs.append(ev.leg_id)
    h.pool.send_extension(CollectNow())
    h.wait_for(lambda e: isinstance(getattr(e, "payload", None), Done), label="gc")
    for caller, leg in zip(callers, legs, strict=True):
        h.pool.send(SendSipMessage(leg, "still there?"))
        msg = caller.wait_request("MESSAGE")  # a BYE first would be answered and skipped
        assert msg.body == "still there?"
    assert not any(isinstance(e, LegLeft) for _, e in h.seen if getattr(e, "leg_id", "") in legs)


def test_a_call_ended_behind_the_workers_back_is_not_kept_as_a_ghost(
    make_pool: Callable[..., PoolHarness],
) -> None:
    """If pjsua ends a call whose wrapper no longer gets callbacks, the leg still ends."""
    h = make_pool(extra_hooks=("tests.sip.fault_hooks:install_forget",))
    caller = RawUac(h.port)
    assert caller.invite("demo").status == 200
    joined = h.wait_for(_joined())
    assert isinstance(joined, LegJoined)
    h.pool.send_extension(ForgetCalls())
    h.wait_for(lambda e: isinstance(getattr(e, "payload", None), Done), label="forget")
    assert caller.bye().status == 200
    left = h.wait_for(lambda e: isinstance(e, LegLeft) and e.leg_id == joined.leg_id)
    assert isinstance(left, LegLeft) and left.reason == "error-lost"
    h.until(lambda: not h.pool.legs() and h.pool.free_slots() == 4, label="slot freed")


def test_refusals_and_redirects_are_counted_by_reason(
    make_pool: Callable[..., PoolHarness],
) -> None:
    """Workers have no registry: each answer they give without serving the call reaches the
    pool, which counts it (sipmuc_calls_total{outcome}, sipmuc_calls_rejected_total{reason})."""
    from bridge import metrics

    def calls(outcome: str) -> float:
        return metrics.CALLS.labels(outcome=outcome)._value.get()  # type: ignore[no-any-return]

    def rejected(reason: str) -> float:
        return metrics.CALLS_REJECTED.labels(reason=reason)._value.get()  # type: ignore[no-any-return]

    banned_from = "from:sip:banned@127.0.0.1"  # an unverified caller's ban key (its From)
    directory = RoomDirectory.create(["demo", "locked"], bans={"demo": [banned_from]},
                                     locked=["locked"])  # fmt: skip
    h = make_pool(pool_size=2, calls_per_worker=1, directory=directory)
    before = {r: rejected(r) for r in metrics.REJECT_REASONS}
    busy, redirected = calls("busy"), calls("redirected")
    uacs = [RawUac(h.port) for _ in range(5)]
    banned = RawUac(h.port, user="banned")
    try:
        assert uacs[0].invite("nosuchroom").status == 404
        assert banned.invite("demo").status == 403
        assert uacs[1].invite("locked").status == 403
        assert uacs[2].invite("demo").status == 200  # the front's one slot
        moved = uacs[3].invite("demo")  # to worker 1 …
        assert moved.status == 302
        assert uacs[4].invite("demo").status == 503  # … whose slot the 302 holds: full
        expected = {"unknown_room": 1, "banned": 1, "locked": 1, "busy": 1}
        h.until(lambda: all(rejected(r) - before[r] == n for r, n in expected.items()),
                label="refusals counted")  # fmt: skip
        assert calls("busy") - busy == 1 and calls("redirected") - redirected == 1
        assert rejected("draining") == before["draining"]
    finally:
        for uac in [*uacs, banned]:
            uac.close()


def test_a_full_conference_bridge_refuses_the_call_and_the_worker_lives_on(
    make_pool: Callable[..., PoolHarness],
) -> None:
    """No free port in pjmedia's bridge (ports freed only at its next ticks pile up while
    calls churn during a stall): the INVITE gets 503 with Retry-After and the worker takes
    the next call once ports are free (before, the error escaped the pjsua2 callback after
    the leg was registered without a port, and the call ended as "error" with no
    Retry-After)."""
    h = make_pool(extra_hooks=("tests.sip.fault_hooks:install_fill",))
    h.pool.send_extension(FillConference())
    filled = h.wait_for(lambda e: isinstance(getattr(e, "payload", None), Done), label="fill")
    assert filled.payload.objects > 0  # type: ignore[attr-defined]
    refused = RawUac(h.port)
    final = refused.invite("demo")
    assert final.status == 503 and final.get("Retry-After"), final.first_line
    assert not h.pool.legs()
    h.pool.send_extension(EmptyConference())
    h.wait_for(lambda e: isinstance(getattr(e, "payload", None), Done), label="empty")
    # pjmedia frees a removed port at its next tick: a phone retries after Retry-After
    deadline = time.monotonic() + 5
    while (caller := RawUac(h.port)).invite("demo").status == 503:
        assert time.monotonic() < deadline, "ports never came back"
        time.sleep(0.1)
    assert isinstance(h.wait_for(_joined()), LegJoined)
    assert caller.bye().status == 200
