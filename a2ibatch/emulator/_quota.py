"""Rate quotas: one token bucket per operation, like the service's per-API TPS limits.

A bucket holds at most ``burst`` tokens and refills at ``quota`` tokens per second; a call
that finds no whole token is throttled and has no other effect.  Over a long run the
accepted calls per second converge on ``quota`` (plus the initial burst).
"""

from __future__ import annotations


class TokenBucket:
    """A token bucket refilled lazily from the clock passed in."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: int, now: float) -> None:
        self.rate = rate
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.capacity:
            tokens = self.capacity
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False

    def reshape(self, rate: float, capacity: int, now: float) -> None:
        """Change rate and capacity, keeping the tokens earned so far (up to the capacity)."""
        self.take_nothing(now)
        self.rate = rate
        self.capacity = float(capacity)
        self.tokens = min(self.tokens, self.capacity)

    def take_nothing(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now


class Quotas:
    """The buckets of every operation, all with the same rate and capacity."""

    __slots__ = ("_buckets", "burst", "rate")

    def __init__(self, rate: float | None, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def configure(self, rate: float | None, burst: int, now: float) -> None:
        """Apply a new quota to every bucket (a benchmark may halve it mid-run)."""
        if rate == self.rate and burst == self.burst:
            return
        self.rate, self.burst = rate, burst
        if rate is None:
            self._buckets.clear()
            return
        for bucket in self._buckets.values():
            bucket.reshape(rate, burst, now)

    def allow(self, operation: str, now: float) -> bool:
        """Whether a call of `operation` arriving now is within the quota."""
        rate = self.rate
        if rate is None:
            return True
        bucket = self._buckets.get(operation)
        if bucket is None:
            bucket = self._buckets[operation] = TokenBucket(rate, self.burst, now)
        return bucket.take(now)
