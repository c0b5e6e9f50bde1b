"""Dial-in PIN admission for the legs of a node (issue 8, ``!pin``).

The pool puts every new leg of a PIN room out of the mix from its first frame
(``RoomDirectory.held``: muted and deaf, prompts and beeps still play). The supervisor asks
:meth:`PinGate.hold` on ``LegJoined``: when the room has a PIN the leg waits here, its DTMF
goes to its :class:`~bridge.core.pin.PinEntry`, and only a right PIN releases it
(``HoldLeg(held=False)``) and hands it back to ``on_admitted`` — the normal join (mirror
policy, puppet in the room). Wrong PINs, too many of them across calls
(:class:`~bridge.core.pin.PinLimiter`, per conference and source address or verified
identity, plus one budget for the whole conference) or no PIN in time end the
call with 403. Legs the bridge dialled itself (``!dial``) are trusted and never asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from bridge.core.caller_identity import addr_key
from bridge.core.events import HangupLeg, HoldLeg, LegJoined, PlayTone, SendSipMessage
from bridge.core.identity import leg_identity
from bridge.core.pin import AdmitLeg, PinEntry, PinLimiter, PinStep
from bridge.logs import bound, get_logger

log = get_logger(__name__)

Send = Callable[[HangupLeg | HoldLeg | PlayTone | SendSipMessage], None]


#: the whole room may fail this many times more than one caller before everyone waits
ROOM_BUDGET_FACTOR = 5


def pin_key(leg: LegJoined) -> str:
    """Whose wrong-PIN budget a leg spends: a verified caller's identity, else the source
    address (issue 18: never From, which a guesser changes at every call)."""
    ident = leg_identity(leg)
    if ident.verified:
        return ident.key
    try:
        return addr_key(leg.source_host)
    except ValueError:
        return "addr:unknown"  # all callers we cannot place share one budget


class PinGate:
    """Legs waiting for their PIN, per node. Single-threaded (the supervisor's loop)."""

    def __init__(
        self,
        send: Send,
        on_admitted: Callable[[LegJoined], Awaitable[None]],
        *,
        max_attempts: int = 3,
        timeout: float = 60.0,
        limiter: Callable[[], PinLimiter] = PinLimiter,
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self.send = send
        self.on_refused = on_refused
        self.on_admitted = on_admitted
        self.max_attempts = max_attempts
        self.timeout = timeout
        self._new_limiter = limiter
        self.limiters: dict[str, PinLimiter] = {}  # conference → wrong-PIN budget per caller
        self.room_limiters: dict[str, PinLimiter] = {}  # conference → the whole room's budget
        self.waiting: dict[str, tuple[LegJoined, PinEntry]] = {}
        self.passed: set[str] = set()  # admitted or trusted legs: never asked (again)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def trust(self, leg_id: str) -> None:
        """A leg the bridge called itself: admit without a PIN."""
        self.passed.add(leg_id)

    def is_waiting(self, leg_id: str) -> bool:
        return leg_id in self.waiting

    def hold(self, leg: LegJoined, pin_hash: str, *, held_by_pool: bool) -> bool:
        """True: the leg waits for its PIN (do not announce it). False: go ahead (and the
        leg, if the pool held it because a PIN was set at the time, is released)."""
        if leg.leg_id in self.waiting:
            return True
        if not pin_hash or leg.leg_id in self.passed:
            if held_by_pool:
                self.send(HoldLeg(leg.leg_id, False))
            return False
        if not held_by_pool:  # PIN set after the pool admitted it: hold it now
            self.send(HoldLeg(leg.leg_id, True))
        conference = leg.room.lower()
        limiter = self.limiters.setdefault(conference, self._new_limiter())
        room_limiter = self.room_limiters.get(conference)
        if room_limiter is None:
            per_key = limiter.max_failures
            room_limiter = self.room_limiters[conference] = PinLimiter(
                max_failures=per_key * ROOM_BUDGET_FACTOR, window=limiter.window
            )
        entry = PinEntry(
            leg.leg_id, pin_key(leg), pin_hash, limiter, max_attempts=self.max_attempts,
            timeout=self.timeout, room_limiter=room_limiter, defer_check=True,
        )  # fmt: skip
        self.waiting[leg.leg_id] = (leg, entry)
        with bound(room=conference, participant=leg.leg_id):
            log.info("pin.requested", attempts=self.max_attempts)
        self._timers[leg.leg_id] = asyncio.get_running_loop().call_later(
            self.timeout + 0.05, self._expire, leg.leg_id
        )
        self._apply(leg.leg_id, entry.start(time.time()))
        return True

    async def feed(self, leg_id: str, digit: str) -> bool:
        """A DTMF key: True when it belonged to a PIN entry (not a conference key)."""
        waiting = self.waiting.get(leg_id)
        if waiting is None:
            return False
        entry = waiting[1]
        step = entry.feed(digit, time.time())
        if step.status == "checking":  # PBKDF2 (~10 ms) runs off the event loop
            matched = await asyncio.to_thread(entry.check, entry.pending)
            if self.waiting.get(leg_id) is not waiting:
                return True  # hung up (or timed out) meanwhile
            step = entry.resolve(matched, time.time())
        await self._step(leg_id, step)
        return True

    def forget(self, leg_id: str) -> None:
        """The leg is gone (hung up while entering the PIN, or ended later)."""
        self.waiting.pop(leg_id, None)
        self.passed.discard(leg_id)
        timer = self._timers.pop(leg_id, None)
        if timer is not None:
            timer.cancel()

    # ---- internals ------------------------------------------------------------------------

    def _expire(self, leg_id: str) -> None:
        waiting = self.waiting.get(leg_id)
        if waiting is not None:
            task = asyncio.get_running_loop().create_task(
                self._step(leg_id, waiting[1].tick(time.time()))
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _step(self, leg_id: str, step: PinStep) -> None:
        admitted = self._apply(leg_id, step)
        if admitted is not None:
            await self.on_admitted(admitted)

    def _apply(self, leg_id: str, step: PinStep) -> LegJoined | None:
        waiting = self.waiting.get(leg_id)
        admitted: LegJoined | None = None
        for action in step.actions:
            if isinstance(action, AdmitLeg):
                if waiting is not None:
                    admitted = waiting[0]
            else:
                self.send(action)
        if step.status == "collecting":
            return None
        with bound(room=waiting[0].room if waiting else "", participant=leg_id):
            if step.status == "admitted":
                log.info("pin.admitted")
            else:
                attempts = waiting[1].attempts_left if waiting else 0
                log.warning("pin.refused", attempts_left=attempts)
                self.on_refused()
        self.waiting.pop(leg_id, None)
        timer = self._timers.pop(leg_id, None)
        if timer is not None:
            timer.cancel()
        if admitted is not None:
            self.passed.add(leg_id)
            self.send(HoldLeg(leg_id, False))
        return admitted

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                task.cancel()


__all__ = ["PinGate"]
