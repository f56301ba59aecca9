"""Rate control per API: run at the account's quota, not below it, and not above it.

Each API a job calls (StartHumanLoop, AnalyzeDocument, DetectModerationLabels,
DescribeHumanLoop ...) has its own quota, shared with every other job on the account and
usually unknown to the user.  A `RateController` paces one API's calls evenly (no burst at
start, unlike a token bucket that starts full) and, unless told the quota, finds it:

* slow start: the rate doubles every round trip while nothing is throttled and the
  service keeps up;
* on throttling: remember the quota's estimate (`w_max`: the rate the service accepted
  lately, at most the rate sent) and cut to `beta * w_max`;
* then grow along a cubic curve (as TCP CUBIC does): fast while far below `w_max`, flat
  near it, then probing gently above it, so that most time is spent close to the quota.

Only throttling slows the controller; server errors and timeouts do not (they say nothing
about the quota).  Throttles are a noisy signal: calls bunched by the network can empty a
service's small burst bucket below the quota, so isolated throttles (a share of recent
calls below `NOISE_SHARE`) are retried without a cut; in slow start, whose rate doubles
every round trip, a second throttle is enough.  A `ceiling` (the user's `--rate`) is
never exceeded: told the quota, the controller climbs to it within a few round trips.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateSettings:
    """How one API's rate is controlled."""

    ceiling: float = 1000.0  # never send faster than this (requests/second)
    initial: float = 20.0  # first rate when the quota must be found
    minimum: float = 0.5
    beta: float = 0.9  # multiplicative decrease on throttling
    cubic_seconds: float = 3.0  # time to regain the rate before a cut (CUBIC's K)

    def __post_init__(self) -> None:
        if self.ceiling <= 0 or self.initial <= 0 or self.minimum <= 0:
            raise ValueError("rates must be positive")
        if not 0 < self.beta < 1:
            raise ValueError("beta must be between 0 and 1")


Clock = Callable[[], float]
#: the rate ceiling when the user sets none: far above any default A2I quota
DEFAULT_CEILING = 1000.0
#: seconds of accepted calls that estimate the quota when the rate is cut
ACCEPTED_WINDOW = 1.0
#: slow start never runs more than this many times ahead of the rate the service accepts
SLOW_START_LEAD = 4.0
#: throttles are counted over this many seconds ...
NOISE_WINDOW = 1.0
#: ... or over the time of this many calls, at a low rate
NOISE_CALLS = 20.0
#: a cut needs throttles above this share of the calls in the window (and at least two)
NOISE_SHARE = 0.02
#: a share of throttled calls this high means far above the quota (not just probing)
OVERLOAD_SHARE = 0.1
#: a rate this close to the ceiling is at it ...
AT_CEILING = 0.999
#: ... where mild throttling costs a smaller cut
CEILING_BETA = 0.97
#: a cut for mild throttling below the ceiling (a probe just past the quota)
MILD_BETA = 0.95
#: fewest calls between two probes above the quota
PROBE_CALLS = 60.0
#: ... and fewest round trips: feedback on a probe takes one
K_ROUND_TRIPS = 4.0
#: a released caller may go up to this long before its slot (seconds) ...
EARLY_SECONDS = 0.01
#: ... but never more than this many slots early, so bunches stay far below any burst
EARLY_SLOTS = 1.5


class RateController:
    """Paces calls to one API and adapts the pace to throttling.

    `acquire()` waits for the next evenly spaced send slot.  Report each answer with
    `on_success(latency)` or `on_throttle(retry_after)`.  All methods are for one asyncio
    event loop; none blocks.
    """

    def __init__(self, settings: RateSettings, *, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._rate = max(settings.minimum, min(settings.initial, settings.ceiling))
        self._last_slot = -math.inf  # when the last call was allowed to go
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._slow_start = True
        self._w_max = settings.ceiling
        self._started = clock()
        self._first_answer: float | None = None
        self._epoch = self._started  # start of the current growth curve
        self._cut_at = -math.inf  # when the rate was last cut
        self._left_slow_start = -math.inf
        self._throttled: deque[float] = deque()  # throttles since the last cut (noise window)
        self._recent_throttles: deque[float] = deque()  # throttles of the accepted window
        self._latency = 0.05  # smoothed round trip, seconds
        self._last_grow = self._started
        self._last_limited = -math.inf  # last time a caller had to wait on the pace
        self._last_throttle = -math.inf
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

    # -- pacing ----------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Wait until this caller may send one request.

        Callers queue in arrival order and each slot is taken when its caller reaches the
        head of the queue, so a rate change applies to the very next call (slots are not
        handed out in advance at a pace that may be stale by the time they come).  One
        timer releases the head, together with any caller whose slot is due within
        `EARLY_SECONDS` (at most `EARLY_SLOTS` slots): one wake-up of the event loop per
        send or fewer, which is most of what pacing costs.
        """
        if not self._waiters and self._due() <= self._early():
            self.reserve()
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if self._timer is None:
            self._schedule(loop)
        await waiter

    def _early(self) -> float:
        return min(EARLY_SECONDS, EARLY_SLOTS / self._rate)

    def _due(self) -> float:
        """Seconds until the next slot (0 if it is free now)."""
        return max(0.0, self._last_slot + 1.0 / self._rate - self._clock())

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = loop.call_later(self._due(), self._release, loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        waiters = self._waiters
        early = self._early()
        while waiters:
            if waiters[0].done():  # its caller was cancelled
                waiters.popleft()
                continue
            if self._due() > early:
                break
            self.reserve()
            waiters.popleft().set_result(None)
        if waiters:
            self._schedule(loop)

    def reserve(self) -> float:
        """Take the next send slot now; return how long to wait for it (seconds)."""
        now = self._clock()
        slot = self._last_slot + 1.0 / self._rate
        if slot < now - self._early():
            # Idle for a while: start afresh (no burst to catch up on slots nobody used).
            slot = now
        # Otherwise keep to the grid even when this caller comes a little late (the timer
        # or the event loop woke late): late wake-ups would otherwise add up to a rate
        # several percent below the target.
        self._last_slot = slot
        self.calls += 1
        if slot > now or self._waiters:
            # Demand exceeds the pace: growing the rate would be used.
            self._last_limited = now
        return max(0.0, slot - now)

    # -- answers ---------------------------------------------------------------------------

    def on_success(self, latency: float) -> None:
        """Record a call the service accepted."""
        now = self._clock()
        if self._first_answer is None:
            self._first_answer = now
            self._latency = latency  # the first answer says more than any default guess
        else:
            self._latency += 0.1 * (latency - self._latency)
        accepted = self._accepted
        accepted.append(now)
        while accepted[0] < now - self._window():
            accepted.popleft()
        self._grow(now)

    def _window(self) -> float:
        """Seconds of answers that estimate the accepted rate well: long enough that the
        answers' jitter at the edges does not matter."""
        return max(ACCEPTED_WINDOW, 2.0 * self._latency)

    def accepted_rate(self, window: float | None = None) -> float:
        """Calls per second the service accepted over the last `window` seconds (by
        default about a second), or since the first answer if that is more recent."""
        now = self._clock()
        if self._first_answer is None:
            return 0.0
        window = window or ACCEPTED_WINDOW
        span = max(min(window, now - self._first_answer), 0.05)
        return sum(1 for t in self._accepted if t >= now - span) / span

    def _latest_accepted_rate(self, calls: int = 16) -> float:
        """The service's accepting rate over its last few answers (0 if too few)."""
        if len(self._accepted) < calls:
            return 0.0
        span = self._accepted[-1] - self._accepted[-calls]
        return (calls - 1) / span if span > 0 else 0.0

    def on_throttle(self, retry_after: float | None = None, *, sent: float | None = None) -> None:
        """Record a throttled call: cut the rate when throttling is more than noise.

        `sent` is when the call was sent (this controller's clock): a call sent before the
        last cut says nothing about the rate since.  Without it, throttles for about two
        round trips after a cut are taken for such calls.
        """
        self.throttles += 1
        now = self._clock()
        self._last_throttle = now
        if retry_after:
            self._last_slot = max(self._last_slot, now + retry_after - 1.0 / self._rate)
        # Isolated throttles are noise: calls bunched by the network or a busy event loop
        # can empty the service's small burst bucket below the quota.  Going over the quota
        # throttles a growing share of the calls: that share is the signal.
        recent = self._recent_throttles
        recent.append(now)
        while recent[0] < now - self._window():
            recent.popleft()
        window = max(NOISE_WINDOW, NOISE_CALLS / self._rate)
        throttled = self._throttled
        throttled.append(now)
        while throttled[0] < now - window:
            throttled.popleft()
        # In slow start the rate doubles every round trip: a second throttle is the signal.
        noise = 2.0 if self._slow_start else max(2.0, NOISE_SHARE * self._rate * window)
        if len(throttled) < noise:
            return
        # Calls sent before the last cut answer for up to a round trip after it: ignore those.
        if sent is not None:
            if sent < self._cut_at:
                return
        elif now - self._cut_at < max(2 * self._latency, 0.05):
            return
        beta = self.settings.beta
        window = self._window()
        seen = self.accepted_rate(window)
        over = sum(1 for t in self._recent_throttles if t >= now - window)
        overloaded = over >= OVERLOAD_SHARE * (over + seen * window)
        at_ceiling = self._rate >= AT_CEILING * self.settings.ceiling
        if self._slow_start and (overloaded or not at_ceiling):
            # Doubling overshoots by as much as the service's burst hides, so the rate we
            # sent at says little; what the service accepted lately is the quota's estimate.
            latest = self._latest_accepted_rate()
            self._w_max = max(self.settings.minimum, min(self._rate, latest or self._rate / 2))
            self._left_slow_start = now
        else:
            self._w_max = self._rate
            settled = now - self._left_slow_start >= window  # no slow-start ramp in it
            if overloaded and settled and seen:
                # Far above the quota (a quota that dropped, or a rate sent a long round trip
                # past it) the service accepts the quota, whatever we send: use that.
                self._w_max = max(self.settings.minimum, min(self._rate, seen))
            elif at_ceiling and not overloaded:
                # Mild throttling at the rate the user said is the quota: the service's noise
                # (bunched arrivals), not a wrong ceiling.  Step back only a little.
                beta = max(beta, CEILING_BETA)
            elif not overloaded:
                beta = max(beta, MILD_BETA)
        self._slow_start = False
        self._rate = max(self.settings.minimum, self._w_max * beta)
        self._cut_at = now
        self._epoch = now
        self._last_grow = now
        throttled.clear()

    def _grow(self, now: float) -> None:
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
        ceiling = min(
            self.settings.ceiling,
            max(self.settings.initial, SLOW_START_LEAD * self.accepted_rate()),
        )
        if self._slow_start:
            self._rate = max(self._rate, min(ceiling, self._rate * 2.0))
            return
        # CUBIC: w(t) = C (t - K)^3 + w_max, with K the time to regain w_max.
        # At a low quota a fixed cycle would probe (and be throttled) too often: stretch it
        # so that each probe costs at most about one throttle in PROBE_CALLS calls; at a
        # long round trip, so that a probe hears of its throttles before it goes far.
        k = max(self.settings.cubic_seconds, PROBE_CALLS / self._w_max, K_ROUND_TRIPS * interval)
        c = self._w_max * (1 - self.settings.beta) / k**3
        t = now - self._epoch
        if t > 2 * k and now - self._last_throttle > k:
            # A whole cycle above the old ceiling and no throttle for a while, not even one
            # too few to cut for: the quota grew (another job on the account finished).
            # Find it again quickly.
            self._slow_start = True
            return
        target = c * (t - k) ** 3 + self._w_max
        self._rate = max(self._rate, min(ceiling, max(target, self.settings.minimum)))
