"""Dial-out inside a SIP worker (issue 8, ``!dial``): the bridge calls someone into a room.

Runs on the worker's pjsua2 thread (the worker dispatches :class:`DialOutCall` and the
dialled leg's ``AttachLeg`` here). The call becomes an ordinary leg of the worker, so
everything else (media port, mute, BYE, DTMF, MESSAGE, ``LegLeft``) is shared with callers:

``DialOutCall`` → INVITE (``Call.makeCall``) + ``DialProgress(trying)`` + ``LegOffered``
(a mixer slot) → ``AttachLeg`` connects the port (no answer: we are the caller) → 180/183
``DialProgress(ringing)`` → 200 ``DialProgress(answered)``, then ``LegConfirmed`` (the
supervisor sees ``LegJoined``) — or, before an answer, ``DialProgress(failed, "486 Busy
Here")`` and ``LegEnded`` (the pool frees the slot; no ``LegLeft`` for a leg never joined).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Protocol

from bridge.core.admission import normalize_caller, strip_uri_params
from bridge.core.caller_identity import CallerIdentity, IdentityLevel
from bridge.core.dialplan import LOOP_HEADER, outcome_of
from bridge.core.events import DialOutCall, DialProgress
from bridge.logs import get_logger
from bridge.sip import pj as pjw
from bridge.sip.leg import Leg
from bridge.sip.protocol import AttachLeg, LegOffered, WorkerSpec
from bridge.sip.sipmsg import CallerInfo
from mixer.rings import LegPort, StaleAttachmentError

log = get_logger(__name__)

DIAL_KEY = "dial"  # Leg.extra key marking a leg the bridge dialled
NO_ANSWER = "no-answer"  # hang-up reason of a dialled call that rang too long


def ring_expired(worker: DialHost, leg: Leg, now: float) -> bool:
    """Cancel a dialled call still unanswered after ``sip.dialout.ring_timeout``."""
    if DIAL_KEY not in leg.extra or leg.confirmed or leg.ended:
        return False
    if now - leg.created <= worker.spec.sip.dialout.ring_timeout:
        return False
    worker.hangup(leg, NO_ANSWER)
    return True


class DialHost(Protocol):
    """What dial-out needs from its worker (:class:`bridge.sip.worker.Worker`), named here so
    that this module does not import the worker that imports it."""

    spec: WorkerSpec
    account: Any
    legs: dict[str, Leg]
    graveyard: list[Any]
    dead_calls: list[Any]

    @property
    def stopping(self) -> bool: ...
    def send(self, message: object) -> None: ...
    def new_leg_id(self) -> str: ...
    def report_busy(self) -> None: ...
    def hangup(self, leg: Leg, reason: str, status: int = 200) -> None: ...
    def leg_state(self, leg: Leg, call: Any) -> None: ...
    def leg_media(self, leg: Leg, call: Any) -> None: ...
    def leg_dtmf(self, leg: Leg, digit: str, method: int) -> None: ...
    def leg_message(self, leg: Leg, prm: Any) -> None: ...
    def watch_dialog(self, leg: Leg) -> None: ...


def start(worker: DialHost, cmd: DialOutCall) -> None:
    """Place the call (pjsua2 thread)."""

    def failed(why: str) -> None:  # the room hears "refused"; the log says why
        log.info("sip.dial.refused", room=cmd.room, target=cmd.target_uri, why=why)
        worker.send(DialProgress(cmd.request_id, cmd.room, "failed", "refused"))

    if not cmd.internal and not worker.spec.sip.dialout.enabled:  # the node checks the plan
        failed("dial-out is disabled")
        return
    if worker.stopping or len(worker.legs) >= worker.spec.calls:
        failed("no free call slot on this worker")
        return
    spec = worker.spec
    leg_id = worker.new_leg_id()
    try:
        port = pjw.FramePort(leg_id, spec.bridge_rate)
    except pjw.pj.Error as exc:  # the conference bridge is full (ports still being freed)
        failed(f"no media port: {pjw.error_text(exc)[:160]}")
        return
    call = pjw.BridgeCall(worker.account, pjw.pj.PJSUA_INVALID_ID, None)
    target = strip_uri_params(cmd.target_uri)
    identity = CallerIdentity(  # the bridge chose whom to call: it asserts who that is
        IdentityLevel.ASSERTED, normalize_caller(target), cmd.display_name, "", "", "dial-out"
    )
    caller = CallerInfo(target, cmd.display_name, "", (), (), "", identity=identity)
    leg = Leg(leg_id, cmd.room, call, caller, time.monotonic())
    leg.answered = True  # a hang-up before the answer is a CANCEL, never a final response
    leg.extra[DIAL_KEY] = cmd
    call.handler = _DialHandler(worker, leg, cmd)
    leg.port = port
    worker.legs[leg_id] = leg
    try:
        headers = {} if cmd.internal else {LOOP_HEADER: "1"}
        call.makeCall(cmd.target_uri, pjw.call_op(0, "", headers))
    except Exception as exc:
        worker.legs.pop(leg_id, None)
        worker.graveyard.append(leg.port)
        worker.dead_calls.append(call)
        failed(pjw.error_text(exc)[:200])
        return
    if leg.ended:  # failed inside makeCall: LegEnded went out already
        return
    try:
        call_id = str(call.getInfo().callIdString)
    except Exception:
        call_id = ""
    leg.caller = replace(caller, call_id=call_id)
    worker.watch_dialog(leg)  # our ACK to the answer shows the dialog a BYE would need
    log.info("sip.dial.started", leg=leg_id, room=cmd.room, target=cmd.target_uri)
    worker.send(DialProgress(cmd.request_id, cmd.room, "trying", leg_id=leg_id))
    # we offer (opus first) and learn the answer only later: the leg runs at the bridge rate
    worker.send(LegOffered(leg_id, spec.index, cmd.room, leg.caller, leg.port.rate))
    worker.report_busy()


def attached(worker: DialHost, msg: AttachLeg) -> bool:
    """The mixer slot of a dialled leg: connect it (no answer). False: not a dialled leg."""
    leg = worker.legs.get(msg.leg_id)
    if leg is None or DIAL_KEY not in leg.extra:
        return False
    if leg.ended:
        return True
    if msg.attachment is None:
        worker.hangup(leg, "error", 503)
        return True
    try:
        leg.port.leg_port = LegPort(
            msg.attachment,
            reserve=worker.spec.ring_reserve,
            hold_ticks=worker.spec.cushion_hold_ticks,
        )
    except (StaleAttachmentError, FileNotFoundError, OSError) as exc:
        log.warning("sip.leg.attach_failed", leg=leg.leg_id, error=str(exc))
        worker.hangup(leg, "error", 503)
        return True
    leg.attached = True
    return True


class _DialHandler:
    """Callbacks of a dialled call: progress to the supervisor, then the usual leg logic."""

    def __init__(self, worker: DialHost, leg: Leg, cmd: DialOutCall) -> None:
        self.worker = worker
        self.leg = leg
        self.cmd = cmd
        self.rang = False

    def _progress(self, status: str, reason: str = "") -> None:
        self.worker.send(
            DialProgress(self.cmd.request_id, self.cmd.room, status, reason, self.leg.leg_id)
        )

    def on_call_state(self, call: Any) -> None:
        leg = self.leg
        if not (leg.confirmed or leg.ended):
            info = call.getInfo()
            code = int(info.lastStatusCode)
            if info.state == pjw.STATE_EARLY and not self.rang and code in (180, 183):
                self.rang = True
                self._progress("ringing")
            elif info.state == pjw.STATE_CONFIRMED:
                self._progress("answered")  # before LegConfirmed: the supervisor trusts it
            elif info.state == pjw.STATE_DISCONNECTED:
                # the remote status and reason text stay in our log: never in the room
                log.info("sip.dial.ended", leg=leg.leg_id, room=self.cmd.room, status=code,
                         reason=str(info.lastReason)[:200], local=leg.hangup_reason)  # fmt: skip
                self._progress("failed", outcome_of(code, timed_out=leg.hangup_reason ==
                                                    NO_ANSWER))  # fmt: skip
        self.worker.leg_state(leg, call)

    def on_media_state(self, call: Any) -> None:
        self.worker.leg_media(self.leg, call)

    def on_dtmf(self, call: Any, digit: str, method: int) -> None:
        self.worker.leg_dtmf(self.leg, digit, method)

    def on_dialog_message(self, call: Any, prm: Any) -> None:
        self.worker.leg_message(self.leg, prm)


__all__ = ["DIAL_KEY", "NO_ANSWER", "DialHost", "attached", "ring_expired", "start"]
