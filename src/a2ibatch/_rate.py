"""Rate control per API: run at the account's quota, not below it, and not above it.

Each API a job calls (StartHumanLoop, AnalyzeDocument, DetectModerationLabels,
DescribeHumanLoop ...) has its own quota, shared with every other job on the account and
usually unknown to the user.  A `RateController` paces one API's calls evenly (no burst at
start, unlike a token bucket that starts full) and, unless told the quota, finds it:

* slow start: the rate doubles every round trip while nothing is throttled;
* on a throttle: remember the rate as the ceiling seen (`w_max`), cut to `beta * w_max`;
* then grow along a cubic curve (as TCP CUBIC does): fast while far below `w_max`, flat
  near it, then probing gently above it, so that most time is spent close to the quota.

Only throttling slows the controller; server errors and timeouts do not (they say nothing
about the quota).  A `ceiling` (the user's `--rate`) is never exceeded: told the quota, the
controller climbs to it within a few round trips and stays there without a throttle.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio


@dataclass(frozen=True)
class RateSettings:
    """How one API's rate is controlled."""

    ceiling: float = 1000.0  # never send faster than this (requests/second)
    initial: float = 20.0  # first rate when the quota must be found
    minimum: float = 0.5
    beta: float = 0.8  # multiplicative decrease on throttling
    cubic_seconds: float = 3.0  # time to regain the rate before a cut (CUBIC's K at a 20% cut)

    def __post_init__(self) -> None:
        if self.ceiling <= 0 or self.initial <= 0 or self.minimum <= 0:
            raise ValueError("rates must be positive")
        if not 0 < self.beta < 1:
            raise ValueError("beta must be between 0 and 1")


Clock = Callable[[], float]
#: the rate ceiling when the user sets none: far above any default A2I quota
DEFAULT_CEILING = 1000.0
#: seconds of accepted calls that estimate the quota when slow start meets its first throttle
ACCEPTED_WINDOW = 0.5
#: a throttle with no other within this many seconds is taken for noise
NOISE_WINDOW = 1.0
#: ... or within the time of this many calls, at a low rate
NOISE_CALLS = 20.0
#: fewest calls between two probes above the quota
PROBE_CALLS = 60.0


class RateController:
    """Paces calls to one API and adapts the pace to throttling.

    `acquire()` waits for the next evenly spaced send slot.  Report each answer with
    `on_success(latency)` or `on_throttle(retry_after)`.  All methods are for one event
    loop; none blocks.
    """

    def __init__(self, settings: RateSettings, *, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._rate = max(settings.minimum, min(settings.initial, settings.ceiling))
        self._last_slot = -math.inf  # when the last call was allowed to go
        self._queue = anyio.Lock()
        self._slow_start = True
        self._w_max = settings.ceiling
        self._started = clock()
        self._epoch = self._started  # start of the current growth curve
        self._cut_at = -math.inf  # when the rate was last cut
        self._last_throttle = -math.inf
        self._latency = 0.05  # smoothed round trip, seconds
        self._last_grow = clock()
        self._last_limited = -math.inf  # last time a caller had to wait on the pace
        self._accepted: deque[float] = deque()  # times of recent accepted calls
        self.throttles = 0
        self.calls = 0

    @property
    def rate(self) -> float:
        """The current target rate, requests per second."""
        return self._rate

    @property
    def latency(self) -> float:
        """Smoothed round-trip time of successful calls, seconds."""
        return self._latency

    async def acquire(self) -> None:
        """Wait until this caller may send one request.

        Callers queue in arrival order and each slot is computed when its caller reaches
        the head of the queue, so a rate change applies to the very next call (slots are
        not handed out in advance at a pace that may be stale by the time they come).
        """
        async with self._queue:
            delay = self.reserve()
            if delay > 0:
                await anyio.sleep(delay)

    def reserve(self) -> float:
        """Take the next send slot now; return how long to wait for it (seconds)."""
        now = self._clock()
        slot = max(now, self._last_slot + 1.0 / self._rate)
        self._last_slot = slot
        self.calls += 1
        if slot > now:
            # Demand exceeds the pace: growing the rate would be used.
            self._last_limited = now
        return slot - now

    def on_success(self, latency: float) -> None:
        """Record a call the service accepted."""
        self._latency += 0.1 * (latency - self._latency)
        now = self._clock()
        self._accepted.append(now)
        while self._accepted[0] < now - ACCEPTED_WINDOW:
            self._accepted.popleft()
        self._grow()

    def accepted_rate(self) -> float:
        """Calls per second the service accepted over the last half second."""
        now = self._clock()
        span = max(min(ACCEPTED_WINDOW, now - self._started), 0.05)
        return sum(1 for t in self._accepted if t >= now - span) / span

    def _latest_accepted_rate(self, calls: int = 16) -> float:
        """The service's accepting rate over its last few answers (0 if too few)."""
        if len(self._accepted) < calls:
            return 0.0
        span = self._accepted[-1] - self._accepted[-calls]
        return (calls - 1) / span if span > 0 else 0.0

    def on_throttle(self, retry_after: float | None = None) -> None:
        """Record a throttled call: cut the rate once per round trip of throttles."""
        self.throttles += 1
        now = self._clock()
        if retry_after:
            self._last_slot = max(self._last_slot, now + retry_after - 1.0 / self._rate)
        # One throttle alone is noise: calls bunched by the network or a busy event loop can
        # empty the service's small burst bucket below the quota.  Going over the quota
        # throttles steadily, so a second throttle soon after the first is the signal.
        previous, self._last_throttle = self._last_throttle, now
        if now - previous > max(NOISE_WINDOW, NOISE_CALLS / self._rate):
            return
        # Calls sent before the last cut answer for up to a round trip after it: ignore those.
        if now - self._cut_at < max(2 * self._latency, 0.05):
            return
        if self._slow_start:
            # Doubling overshoots by as much as the service's burst hides, so the rate we
            # sent at says little; what the service accepted lately is the quota's estimate.
            seen = self._latest_accepted_rate() or self._rate / 2
            self._w_max = max(self.settings.minimum, min(self._rate, seen))
            self._slow_start = False
        else:
            self._w_max = self._rate
        self._rate = max(self.settings.minimum, self._w_max * self.settings.beta)
        self._cut_at = now
        self._epoch = now
        self._last_grow = now

    def _grow(self) -> None:
        now = self._clock()
        interval = max(self._latency, 0.05)
        elapsed = now - self._last_grow
        if elapsed < interval:
            return
        self._last_grow = now
        if now - self._last_limited > 2 * interval:
            # Callers did not wait on the pace lately: more rate would go unused.  Hold the
            # growth curve still so that demand returning later does not meet a jump.
            self._epoch += elapsed
            return
        # Never run far ahead of what the service actually takes: while answers lag (new
        # connections, a slow start of the service), a rate nobody reaches proves nothing.
        ceiling = min(self.settings.ceiling, max(self.settings.initial, 2.0 * self.accepted_rate()))
        if self._slow_start:
            self._rate = max(self._rate, min(ceiling, self._rate * 2.0))
            return
        # CUBIC: w(t) = C (t - K)^3 + w_max, with K the time to regain w_max.
        # At a low quota a fixed cycle would probe (and be throttled) too often: stretch it
        # so that each probe costs at most about one throttle in PROBE_CALLS calls.
        k = max(self.settings.cubic_seconds, PROBE_CALLS / self._w_max)
        c = self._w_max * (1 - self.settings.beta) / k**3
        t = now - self._epoch
        if t > 2 * k:
            # A whole cycle above the old ceiling without a throttle: the quota grew (another
            # job on the account finished).  Find it again quickly.
            self._slow_start = True
            return
        target = c * (t - k) ** 3 + self._w_max
        self._rate = max(self._rate, min(ceiling, max(target, self.settings.minimum)))


class ConcurrencyGovernor:
    """Sizes the in-flight cap from rate x latency (Little's law) unless the user set it.

    A StartHumanLoop answers in tens of milliseconds and an AnalyzeDocument in seconds; the
    same default must keep enough calls in flight for both without opening thousands of
    connections.  The cap covers items waiting for a retry too, hence the headroom.
    """

    def __init__(
        self,
        limiter: anyio.CapacityLimiter,
        *,
        fixed: int | None,
        minimum: int = 16,
        maximum: int = 1024,
    ) -> None:
        self._limiter = limiter
        self._fixed = fixed
        self.minimum = minimum
        self.maximum = maximum
        limiter.total_tokens = fixed if fixed is not None else minimum

    @property
    def limit(self) -> int:
        return int(self._limiter.total_tokens)

    def update(self, rate: float, latency: float) -> None:
        if self._fixed is not None:
            return
        wanted = math.ceil(rate * latency * 2.0) + self.minimum
        self._limiter.total_tokens = max(self.minimum, min(self.maximum, wanted))
