"""Rate quotas: one token bucket per region and operation, like the services' per-API TPS limits.

A bucket holds at most ``burst`` tokens and refills at its operation's quota (tokens per
second); a call that finds no whole token is throttled and has no other effect.  The quota
of an operation is ``EmulatorConfig.quota_for(operation)``: the ``quotas`` override, else the
shared ``quota``; None means unlimited (no bucket at all).

Besides its tokens a bucket counts what it decided and what it *earned* and *wasted*:
tokens that would have overflowed a full bucket are tokens no call came for.  Over any run,
``accepted + tokens == burst + earned - wasted``, so "accepted calls match the quota" can be
checked against what the server saw, whatever the client's own stalls were.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

RateOf = Callable[[str], "float | None"]


class TokenBucket:
    """A token bucket refilled lazily from the clock passed in (any monotonic seconds)."""

    __slots__ = (
        "accepted",
        "capacity",
        "earned",
        "rate",
        "stamp",
        "started",
        "throttled",
        "tokens",
        "wasted",
    )

    def __init__(self, rate: float, capacity: int, now: float) -> None:
        self.rate = rate
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.stamp = self.started = now
        self.accepted = self.throttled = 0
        self.earned = self.wasted = 0.0

    def _refill(self, now: float) -> float:
        gained = (now - self.stamp) * self.rate
        if gained < 0.0:  # a clock read out of order (another thread's): no time passed
            gained = 0.0
        else:
            self.stamp = now
        self.earned += gained
        tokens = self.tokens + gained
        if tokens > self.capacity:
            self.wasted += tokens - self.capacity
            tokens = self.capacity
        return tokens

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        tokens = self._refill(now)
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            self.accepted += 1
            return True
        self.tokens = tokens
        self.throttled += 1
        return False

    def reshape(self, rate: float, capacity: int, now: float) -> None:
        """Change rate and capacity, keeping the tokens earned so far (up to the capacity)."""
        self.tokens = self._refill(now)
        self.rate = rate
        self.capacity = float(capacity)
        if self.tokens > self.capacity:
            self.wasted += self.tokens - self.capacity
            self.tokens = self.capacity

    def snapshot(self) -> dict[str, Any]:
        """The bucket as ``GET /_emulator/quotas`` shows it (times in seconds since its start)."""
        return {
            "rate": self.rate,
            "burst": int(self.capacity),
            "tokens": self.tokens,
            "accepted": self.accepted,
            "throttled": self.throttled,
            "earned": self.earned,
            "wasted": self.wasted,
            "seconds": self.stamp - self.started,
        }


class Quotas:
    """The buckets of every region and operation, created at each one's first call."""

    __slots__ = ("_buckets", "_rate_of", "burst")

    def __init__(self, rate_of: RateOf, burst: int) -> None:
        self._rate_of = rate_of
        self.burst = burst
        self._buckets: dict[str, dict[str, TokenBucket | None]] = {}

    def configure(self, rate_of: RateOf, burst: int, now: float) -> None:
        """Apply new quotas to every bucket (a benchmark may halve them mid-run)."""
        self._rate_of, self.burst = rate_of, burst
        for buckets in self._buckets.values():
            for operation, bucket in list(buckets.items()):
                rate = rate_of(operation)
                if rate is None:
                    buckets[operation] = None
                elif bucket is None:
                    buckets[operation] = TokenBucket(rate, burst, now)
                elif bucket.rate != rate or bucket.capacity != burst:
                    bucket.reshape(rate, burst, now)

    def allow(self, region: str, operation: str, now: float) -> bool:
        """Whether a call of `operation` in `region` arriving now is within the quota."""
        buckets = self._buckets.get(region)
        if buckets is None:
            buckets = self._buckets[region] = {}
        try:
            bucket = buckets[operation]
        except KeyError:
            rate = self._rate_of(operation)
            bucket = buckets[operation] = (
                None if rate is None else TokenBucket(rate, self.burst, now)
            )
        return True if bucket is None else bucket.take(now)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every bucket in use: region -> operation -> its figures."""
        return {
            region: {op: b.snapshot() for op, b in sorted(buckets.items()) if b is not None}
            for region, buckets in sorted(self._buckets.items())
        }


def rates(quota: float | None, overrides: Mapping[str, float]) -> RateOf:
    """The quota of each operation: its override, else the shared quota."""
    if not overrides:
        return lambda operation: quota
    return lambda operation: overrides.get(operation, quota)
