"""Per-sender token buckets for the text relay (pure: the clock is passed in)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    warned: bool = False


class RateLimiter:
    """``burst`` messages at once, then ``per_minute`` sustained, per sender key.

    ``allow`` returns (allowed, warn): ``warn`` is True only for the first refusal of a run,
    so the sender is told once instead of once per dropped message.
    """

    def __init__(self, burst: int, per_minute: float, max_senders: int = 10_000) -> None:
        if burst < 1 or per_minute <= 0:
            raise ValueError("burst must be >= 1 and per_minute > 0")
        self.burst = burst
        self.rate = per_minute / 60.0
        self.max_senders = max_senders
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, key: str, now: float) -> tuple[bool, bool]:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_senders:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        elapsed = max(0.0, now - bucket.stamp)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.warned = False
            return True, False
        warn = not bucket.warned
        bucket.warned = True
        return False, warn

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: they carry no information any more."""
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.stamp) * self.rate >= self.burst:
                del self._buckets[key]
