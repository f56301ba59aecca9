"""The rate controller against a simulated service: a token-bucket quota and a latency.

Simulated time makes these exact and fast; the real-time figures against the emulator are
the benchmarks' job.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

import anyio
import pytest

from a2ibatch._rate import ConcurrencyGovernor, RateController, RateSettings


@dataclass
class Bucket:
    """The service's quota: `rate` tokens a second, at most `burst` saved up."""

    rate: float
    burst: float = 5.0
    tokens: float = 5.0
    at: float = 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class Sim:
    """Always-busy senders paced by the controller; answers arrive after a latency."""

    quota: float
    latency: float = 0.04
    jitter: float = 0.02
    ceiling: float = 1000.0
    now: float = 0.0
    accepted: list[float] = field(default_factory=list)
    throttled: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bucket = Bucket(self.quota)
        self.ctl = RateController(RateSettings(ceiling=self.ceiling), clock=lambda: self.now)
        self.rng = random.Random(1)
        self.pending: list[tuple[float, bool, float]] = []

    def run(self, seconds: float, quota_changes: dict[float, float] | None = None) -> None:
        changes = sorted((quota_changes or {}).items())
        end = self.now + seconds
        while self.now < end:
            send_at = self.now + self.ctl.reserve()
            # Answers that arrive before the next send are seen first.
            while self.pending and self.pending[0][0] <= send_at:
                arrive, ok, rtt = heapq.heappop(self.pending)
                self.now = arrive
                if ok:
                    self.ctl.on_success(rtt)
                else:
                    self.ctl.on_throttle()
            self.now = max(self.now, send_at)
            while changes and changes[0][0] <= self.now:
                self.bucket.rate = changes.pop(0)[1]
            ok = self.bucket.take(self.now)
            (self.accepted if ok else self.throttled).append(self.now)
            rtt = max(0.001, self.latency + self.rng.uniform(-self.jitter, self.jitter))
            heapq.heappush(self.pending, (self.now + rtt, ok, rtt))

    def goodput(self, start: float, stop: float) -> float:
        n = sum(1 for t in self.accepted if start <= t < stop)
        return n / (stop - start)

    def throttled_share(self) -> float:
        return len(self.throttled) / (len(self.throttled) + len(self.accepted))


@pytest.mark.parametrize("quota", [5.0, 40.0, 150.0, 600.0])
def test_finds_an_untold_quota(quota: float) -> None:
    sim = Sim(quota=quota)
    sim.run(80.0)
    assert sim.goodput(10.0, 80.0) >= 0.93 * quota
    # Finding the quota costs a handful of throttles at the start, then a few per cycle.
    assert len(sim.throttled) <= 15 + 0.04 * len(sim.accepted)
    assert sim.ctl.throttles == len(sim.throttled)


def test_a_told_quota_is_never_exceeded() -> None:
    sim = Sim(quota=150.0, ceiling=150.0)
    sim.run(20.0)
    assert not sim.throttled
    assert sim.goodput(1.0, 20.0) >= 0.98 * 150.0


def test_recovers_when_the_quota_halves() -> None:
    sim = Sim(quota=150.0)
    sim.run(40.0, quota_changes={20.0: 75.0})
    assert sim.goodput(25.0, 40.0) >= 0.9 * 75.0
    # It does not keep hammering the lower quota.
    late = [t for t in sim.throttled if t >= 25.0]
    assert len(late) <= 0.03 * 75.0 * 15.0


def test_no_growth_without_demand() -> None:
    now = [0.0]
    ctl = RateController(RateSettings(ceiling=1000.0, initial=10.0), clock=lambda: now[0])
    for _ in range(100):
        now[0] += 1.0  # one call a second: never waits on the pace
        assert ctl.reserve() == 0.0
        ctl.on_success(0.05)
    assert ctl.rate == 10.0


def test_paced_without_a_burst_at_start() -> None:
    now = [0.0]
    ctl = RateController(RateSettings(ceiling=50.0, initial=50.0), clock=lambda: now[0])
    waits = [ctl.reserve() for _ in range(10)]
    assert waits == pytest.approx([i / 50.0 for i in range(10)])


def test_retry_after_holds_the_next_slot() -> None:
    now = [0.0]
    ctl = RateController(RateSettings(ceiling=100.0, initial=100.0), clock=lambda: now[0])
    ctl.on_throttle(retry_after=2.0)
    assert ctl.reserve() >= 2.0


def test_concurrency_follows_littles_law() -> None:
    limiter = anyio.CapacityLimiter(1)
    governor = ConcurrencyGovernor(limiter, fixed=None, minimum=16, maximum=1024)
    governor.update(rate=10.0, latency=2.0)  # Textract: seconds per page
    assert governor.limit == 16 + 40
    governor.update(rate=150.0, latency=0.04)  # StartHumanLoop: tens of milliseconds
    assert governor.limit == 16 + 12
    governor.update(rate=1000.0, latency=5.0)
    assert governor.limit == 1024
    fixed = ConcurrencyGovernor(anyio.CapacityLimiter(1), fixed=7)
    fixed.update(rate=1000.0, latency=5.0)
    assert fixed.limit == 7


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        RateSettings(ceiling=0)
    with pytest.raises(ValueError):
        RateSettings(beta=1.5)
