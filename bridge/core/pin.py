"""Dial-in PIN (issue 8, ``!pin``): per-leg entry by DTMF and a brute-force limit per caller.

Pure: the clock is passed in, effects come back as worker commands
(:mod:`bridge.core.events`) plus :class:`AdmitLeg`. A leg under PIN entry is answered but kept
out of the mix (it neither hears nor is heard) until :class:`AdmitLeg`; only then does the
supervisor report it as joined to the mirror policy.

Keys: digits accumulate, ``#`` submits, ``*`` clears what was typed; a wrong PIN costs one of
``max_attempts``; the last wrong one (or too long without a ``#``) hangs up. Every wrong PIN
also counts against the caller's key in :class:`PinLimiter` (a sliding window across calls),
so redialling does not buy fresh attempts: past the limit the next call is refused before it
is answered (:meth:`PinLimiter.retry_after`) or hung up at once.

The comparison is constant-time over SHA-256 digests of both sides, so neither the digits nor
the PIN's length leak through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from bridge.core.events import HangupLeg, PlayTone, SendSipMessage

DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class AdmitLeg:
    """The PIN was right: connect the leg to the mix and report it joined."""

    leg_id: str


PinAction = AdmitLeg | HangupLeg | PlayTone | SendSipMessage
PinStatus = Literal["collecting", "checking", "admitted", "refused"]
ROOM_KEY = "*"


def _digest(pin: str) -> bytes:
    return hashlib.sha256(pin.encode("utf-8")).digest()


def pin_matches(entered: str, expected: str) -> bool:
    """Constant-time comparison (time independent of where, or whether, they differ)."""
    return hmac.compare_digest(_digest(entered), _digest(expected))


HASH_SCHEME = "pbkdf2-sha256"
HASH_ITERATIONS = 20_000  # ~10 ms here: cheap per attempt, slows an offline guesser


def hash_pin(pin: str, *, salt: bytes | None = None, iterations: int = HASH_ITERATIONS) -> str:
    """The stored form of a PIN (Redis never holds the digits): ``scheme$n$salt$digest``."""
    if not pin or not set(pin) <= DIGITS:
        raise ValueError("a PIN is one or more digits 0-9")
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return f"{HASH_SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def is_pin_hash(value: str) -> bool:
    return value.startswith(HASH_SCHEME + "$")


def pin_hash_matches(entered: str, stored: str) -> bool:
    """Does ``entered`` hash to ``stored``? A malformed ``stored`` matches nothing."""
    try:
        scheme, rounds, salt, digest = stored.split("$")
        iterations, salt_bytes, expected = int(rounds), bytes.fromhex(salt), bytes.fromhex(digest)
    except ValueError:
        return False
    if scheme != HASH_SCHEME or not 1 <= iterations <= 10_000_000:
        return False
    got = hashlib.pbkdf2_hmac("sha256", entered.encode(), salt_bytes, iterations)
    return hmac.compare_digest(got, expected)


class PinLimiter:
    """Wrong-PIN budget per key over a sliding window, shared by all calls of that key to
    one conference. Keys (issue 18): the source address of an unverified caller (never its
    From, which it rewrites at will), the identity of a verified one, and ``*`` for the
    whole room (a second, larger budget: many addresses cannot share out the guessing).

    Lockouts grow: the first time a key exhausts its budget it waits for the window to
    slide; every later time, for ``window × 2^n`` (at most ``max_lockout``).

    In memory on this node; a caller redirected to another replica starts a fresh budget
    there (bounded by the number of replicas).
    """

    def __init__(
        self,
        max_failures: int = 10,
        window: float = 900.0,
        max_keys: int = 10_000,
        max_lockout: float = 86_400.0,
    ) -> None:
        if max_failures < 1 or window <= 0 or max_keys < 1:
            raise ValueError("max_failures and max_keys must be >= 1 and window > 0")
        self.max_failures = max_failures
        self.window = window
        self.max_keys = max_keys
        self.max_lockout = max_lockout
        self._failures: dict[str, deque[float]] = {}
        self._strikes: dict[str, int] = {}  # times a key exhausted its budget
        self._locked_until: dict[str, float] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        stamps = self._failures.get(key)
        if stamps is None:
            return None
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
            return None
        return stamps

    def failures(self, key: str, now: float) -> int:
        stamps = self._recent(key, now)
        return len(stamps) if stamps is not None else 0

    def retry_after(self, key: str, now: float) -> float:
        """0 when the caller may try a PIN now; else seconds until it may (the oldest
        failure in the window expires, or a growing lockout ends)."""
        locked = max(0.0, self._locked_until.get(key, 0.0) - now)
        stamps = self._recent(key, now)
        if stamps is None or len(stamps) < self.max_failures:
            return locked
        return max(locked, stamps[len(stamps) - self.max_failures] + self.window - now)

    def record_failure(self, key: str, now: float) -> None:
        stamps = self._recent(key, now)
        if stamps is None:
            if len(self._failures) >= self.max_keys:
                self._evict(now)
            stamps = self._failures[key] = deque()
        stamps.append(now)
        while len(stamps) > self.max_failures:  # older ones no longer decide anything
            stamps.popleft()
        if len(stamps) >= self.max_failures:
            strike = self._strikes.get(key, 0)
            if strike:
                lock = min(self.max_lockout, self.window * 2**strike)
                self._locked_until[key] = now + lock
            if len(self._strikes) >= self.max_keys and key not in self._strikes:
                del self._strikes[next(iter(self._strikes))]  # bounded: the oldest goes
            self._strikes[key] = strike + 1
            for old in [k for k, t in self._locked_until.items() if t <= now]:
                del self._locked_until[old]

    def _evict(self, now: float) -> None:
        """Keep memory bounded under a flood of distinct keys: drop expired, then oldest."""
        for key in list(self._failures):
            self._recent(key, now)
        while len(self._failures) >= self.max_keys:
            oldest = min(self._failures, key=lambda k: self._failures[k][-1])
            del self._failures[oldest]


PROMPT = "This conference needs a PIN: type it on your keypad, then #."
WRONG = "Wrong PIN. Try again ({left} left), then #."
TOO_MANY = "Too many wrong PINs. Goodbye."
TIMED_OUT = "No PIN entered in time. Goodbye."


@dataclass(frozen=True, slots=True)
class PinStep:
    status: PinStatus
    actions: tuple[PinAction, ...] = ()


@dataclass
class PinEntry:
    """PIN entry state of one leg. Call :meth:`start` once, then :meth:`feed` per DTMF digit
    and :meth:`tick` now and then (entry deadline)."""

    leg_id: str
    caller: str  # limiter key
    pin: str = field(repr=False)  # the digits, or their stored form from hash_pin()
    limiter: PinLimiter
    max_attempts: int = 3
    timeout: float = 60.0  # seconds from start to a correct PIN
    max_digits: int = 16  # a longer entry is a wrong attempt (no unbounded buffer)
    accepts_messages: bool = True
    room_limiter: PinLimiter | None = None  # the whole room's budget (key ``*``)
    #: ``#`` returns status "checking" and the caller runs :meth:`check` (PBKDF2, ~10 ms)
    #: off its event loop, then :meth:`resolve`
    defer_check: bool = False
    pending: str = field(init=False, default="", repr=False)
    status: PinStatus = "collecting"
    attempts_left: int = field(init=False)
    deadline: float = field(init=False, default=0.0)
    _typed: list[str] = field(init=False, default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if not self.pin or not (set(self.pin) <= DIGITS or is_pin_hash(self.pin)):
            raise ValueError("a PIN is one or more digits 0-9 (or their hash_pin() form)")
        self.attempts_left = self.max_attempts

    def _tell(self, text: str) -> tuple[PinAction, ...]:
        return (SendSipMessage(self.leg_id, text),) if self.accepts_messages else ()

    def _refuse(self, text: str, reason: str) -> PinStep:
        self.status = "refused"
        self._typed.clear()
        return PinStep(
            "refused", (*self._tell(text), HangupLeg(self.leg_id, reason, status_code=403))
        )

    def _locked(self, now: float) -> bool:
        if self.limiter.retry_after(self.caller, now) > 0:
            return True
        room = self.room_limiter
        return room is not None and room.retry_after(ROOM_KEY, now) > 0

    def start(self, now: float) -> PinStep:
        self.deadline = now + self.timeout
        if self._locked(now):
            return self._refuse(TOO_MANY, "too many wrong PINs")
        return PinStep("collecting", self._tell(PROMPT))

    def tick(self, now: float) -> PinStep:
        if self.status == "collecting" and self.deadline and now >= self.deadline:
            return self._refuse(TIMED_OUT, "no PIN entered")
        return PinStep(self.status)

    def feed(self, digit: str, now: float) -> PinStep:
        """One DTMF key. Keys after the outcome, and A-D, change nothing."""
        if self.status != "collecting":
            return PinStep(self.status)
        if self.pending:  # a check is running: keys typed meanwhile are dropped
            return PinStep("collecting")
        if self.deadline and now >= self.deadline:
            return self._refuse(TIMED_OUT, "no PIN entered")
        if digit == "*":
            self._typed.clear()
            return PinStep("collecting")
        if digit in DIGITS:
            self._typed.append(digit)
            if len(self._typed) <= self.max_digits:
                return PinStep("collecting")
            return self._wrong(now)  # overlong: counts as a wrong PIN
        if digit != "#":
            return PinStep("collecting")
        if not self._typed:
            return PinStep("collecting", self._tell(PROMPT))
        entered = "".join(self._typed)
        self._typed.clear()
        if self.defer_check:
            self.pending = entered
            return PinStep("checking")
        return self.resolve(self.check(entered), now)

    def check(self, entered: str) -> bool:
        """Does ``entered`` match? Pure but slow for a stored hash (PBKDF2)."""
        if is_pin_hash(self.pin):
            return pin_hash_matches(entered, self.pin)
        return pin_matches(entered, self.pin)

    def resolve(self, matched: bool, now: float) -> PinStep:
        """The outcome of :meth:`check` on the submitted entry."""
        self.pending = ""
        if self.status != "collecting":
            return PinStep(self.status)
        if matched:
            self.status = "admitted"
            return PinStep("admitted", (AdmitLeg(self.leg_id),))
        return self._wrong(now)

    def _wrong(self, now: float) -> PinStep:
        self._typed.clear()
        self.limiter.record_failure(self.caller, now)
        if self.room_limiter is not None:
            self.room_limiter.record_failure(ROOM_KEY, now)
        self.attempts_left -= 1
        if self.attempts_left <= 0 or self._locked(now):
            return self._refuse(TOO_MANY, "wrong PIN")
        beep: tuple[PinAction, ...] = (PlayTone(self.leg_id, "beep"),)
        return PinStep("collecting", beep + self._tell(WRONG.format(left=self.attempts_left)))


__all__ = [
    "AdmitLeg",
    "PinAction",
    "PinEntry",
    "PinLimiter",
    "PinStep",
    "hash_pin",
    "is_pin_hash",
    "pin_hash_matches",
    "pin_matches",
]
