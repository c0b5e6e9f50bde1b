"""Token buckets for everything an outsider can repeat: chat relay, private messages to a
puppet, room commands, ``*6`` self-mute toggles (DESIGN §3 "Trust model").

Pure: the clock is passed in, so the rules are unit-tested without waiting. The *key* of a
bucket is what makes a limit hold: a chat occupant is keyed on their real JID, never on a nick
they can change (:func:`occupant_key`); a caller on their participant.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    warned: bool = False


class RateLimiter:
    """``burst`` events at once, then ``per_minute`` sustained, per key.

    ``allow`` returns (allowed, warn): ``warn`` is True only for the first refusal of a run,
    so the sender is told once instead of once per dropped message. At most ``max_senders``
    buckets are kept: when full, buckets that have refilled (they carry no information) are
    dropped; if none has, the oldest is (a flood of fresh keys cannot grow memory).
    """

    def __init__(self, burst: int, per_minute: float, max_senders: int = 10_000) -> None:
        if burst < 1 or per_minute <= 0 or max_senders < 1:
            raise ValueError("burst and max_senders must be >= 1 and per_minute > 0")
        self.burst = burst
        self.rate = per_minute / 60.0
        self.max_senders = max_senders
        self._buckets: dict[str, _Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float, cost: float = 1.0) -> tuple[bool, bool]:
        """Take ``cost`` tokens from ``key``'s bucket if it has them."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_senders:
                self._make_room(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        elapsed = max(0.0, now - bucket.stamp)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
        bucket.stamp = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            bucket.warned = False
            return True, False
        warn = not bucket.warned
        bucket.warned = True
        return False, warn

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)

    def _make_room(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.stamp) * self.rate >= self.burst:
                del self._buckets[key]
        if len(self._buckets) >= self.max_senders:  # nobody refilled: drop the oldest
            del self._buckets[next(iter(self._buckets))]


def occupant_key(real_jid: str, occupant_id: str, nick: str) -> str:
    """The rate-limit key of a chat occupant, strongest identity first.

    1. the real bare JID (the bridge is a moderator or the room is non-anonymous): changing
       nick, or rejoining, keeps the budget;
    2. the XEP-0421 occupant id, stable per real JID and room, when the MUC service stamps
       it (Prosody 13+, ejabberd 23.10+; not Prosody 0.12): same guarantee, JID hidden;
    3. the nick, the only thing left in an anonymous room without occupant ids: a nick
       change then resets the budget (docs/security.md says so).
    """
    if real_jid:
        return "jid:" + real_jid.split("/", 1)[0].lower()
    if occupant_id:
        return "occupant-id:" + occupant_id
    return "nick:" + nick


__all__ = ["RateLimiter", "occupant_key"]
