"""Rate control per API: run at the account's quota, not below it, and not above it.

Each API a job calls (StartHumanLoop, AnalyzeDocument, DetectModerationLabels,
DescribeHumanLoop ...) has its own quota, shared with every other job on the account and
usually unknown to the user.  A `RateController` paces one API's calls evenly (no burst at
start, unlike a token bucket that starts full) and, unless told the quota, finds it.

**What the quota is measured from.**  Throttles answer within a network round trip, while
successes answer only after the service's processing time (seconds for Textract), so the
quota is counted from the sends between throttled calls (`_admission.AdmissionCount`), not
from the rate of answers.

**Phases.**

* slow start: the rate doubles every round trip while nothing is throttled and callers
  wait on the pace; at its second throttle the burst has hidden how far it went, so the
  estimate is rough (half the rate, or what the service accepted lately);
* ramp, after a rough estimate: the rate climbs by a constant share per call sent (the
  rate squared over `RAMP_CALLS` per second), so that the overshoot before the bucket
  empties is about the same share of any quota, until an episode measures the quota;
* cubic, after a precise estimate (at least `PRECISE_CALLS` admitted calls): a cut to
  `MILD_BETA` of it, back up along a cubic curve (as TCP CUBIC does) that is flat near
  the estimate and then probes gently above it, at least `PROBE_CALLS` calls apart; a
  ramp's probe that counted too few calls starts the curve part way along, so that the
  probe that makes the estimate precise comes soon.

Only throttling slows the controller; server errors and timeouts say nothing about the
quota.  Isolated throttles (a share of recent calls below `NOISE_SHARE`) are noise (calls
bunched by the network can empty a small burst bucket below the quota) and are retried
without a cut.  A `ceiling` (the user's `--rate`) is never exceeded; `know_quota` starts at
a quota read from Service Quotas and keeps it as the ceiling.

**Shards.**  Controllers that share one quota without talking (a job's shards) together
run at it.  Shards that read the quota start at 1/N of it, and the share is an anchor: a
shard cut below it goes back up to it, one above it gives back more than a plain cut, and
one grows past it only after a long quiet spell (its peers are not running), so the
shares stay equal however the processes start (tests/test_rate.py).  Untold, nothing is
common to the shards but the throttles, which each sees in proportion to its own rate:
each one's count is its own share and its growth scales with its own rate, so the shares
the first second leaves persist.  Without the quota, ``--rate Q/N``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, replace
from enum import Enum

from ._admission import AdmissionCount
from ._pacing import Clock, Pacer


@dataclass(frozen=True)
class RateSettings:
    """How one API's rate is controlled."""

    ceiling: float = 1000.0  # never send faster than this (requests/second)
    initial: float = 40.0  # first rate when the quota must be found
    minimum: float = 0.5
    beta: float = 0.9  # the cubic curve's depth below its estimate (CUBIC's beta)
    cubic_seconds: float = 3.0  # time to regain the estimate after a cut (CUBIC's K)

    def __post_init__(self) -> None:
        if self.ceiling <= 0 or self.initial <= 0 or self.minimum <= 0:
            raise ValueError("rates must be positive")
        if not 0 < self.beta < 1:
            raise ValueError("beta must be between 0 and 1")


class Phase(Enum):
    """Where the controller is in finding the quota (see the module docstring)."""

    SLOW_START = "slow start"
    RAMP = "ramp"
    CUBIC = "cubic"


#: the rate ceiling when the user sets none: far above any default A2I quota
DEFAULT_CEILING = 1000.0
#: seconds of answers that tell the rate the service accepts
ACCEPTED_WINDOW = 1.0
#: slow start never runs more than this many times ahead of the rate the service accepts
SLOW_START_LEAD = 4.0
#: throttles are counted over this many seconds ...
NOISE_WINDOW = 1.0
#: ... or over the time of this many calls, at a low rate
NOISE_CALLS = 100.0
#: a cut needs throttles above this share of the calls in the window (and at least two)
NOISE_SHARE = 0.02
#: throttles above this share of recent sends mean far above the quota, not a probe past it
OVERLOAD_SHARE = 0.1
#: admitted calls an episode needs for a precise estimate (+-1/30) ...
PRECISE_CALLS = 30
#: ... and for a rough one (+-1/8), good enough to step back to
ROUGH_CALLS = 8
#: sends between two trims of the count's memory
FORGET_EVERY = 4096
#: a shard that knows its share (1/N of a quota read from the account) keeps the share as
#: its plateau when a cut falls below it, unless this many cuts in a row did (another job
#: on the account takes part of the quota: then its count rules, as for any job) ...
BELOW_CUTS = 4
#: ... steps back this far when throttled above its share, making room for peers below it
ABOVE_BETA = 0.95
#: ... and grows past it (peers not running) after this many cycles without a throttle
QUIET_CYCLES = 1.5
#: a precise estimate: stand this close below it
MILD_BETA = 0.98
#: a curve begun from a ramp's probe (a count of fewer than PRECISE_CALLS, or none) starts
#: this share of its K along: the probe that makes the estimate precise comes sooner, since
#: a count one call short of the quota's puts the plateau 5% below it
ROUGH_HEAD_START = 0.5
#: a rough estimate from heavy throttling: this far below it, and ramp up from there
ROUGH_BETA = 0.95
#: the ramp: the rate grows by about 1/RAMP_CALLS of itself per call sent
RAMP_CALLS = 600.0
#: fewest calls between two probes above a precise estimate
PROBE_CALLS = 250.0
#: growth waits this many throttle round trips (when known) for a probe's feedback
FEEDBACK_TRIPS = 4.0
#: a throttle answered this many usual throttle round trips late, and this many seconds,
#: came through a stall
LATE_TRIPS = 4.0
LATE_MARGIN = 0.02


class RateController(Pacer):
    """Paces calls to one API and adapts the pace to throttling.

    `acquire()` waits for the next evenly spaced send slot.  Report each answer with
    `on_success(latency)` or `on_throttle(retry_after, sent=...)`.  All methods are for
    one asyncio event loop; none blocks.
    """

    def __init__(self, settings: RateSettings, *, clock: Clock = time.monotonic) -> None:
        super().__init__(max(settings.minimum, min(settings.initial, settings.ceiling)), clock)
        self.settings = settings
        self.phase = Phase.SLOW_START
        self._w_max = settings.ceiling  # the quota's estimate
        now = clock()
        self._first_answer: float | None = None
        self._epoch = now  # start of the current cubic curve
        self._cut_at = -math.inf  # when the rate was last cut
        self._throttled: deque[float] = deque()  # throttles since the last cut (noise window)
        self._latency = 0.05  # smoothed round trip of successes, seconds
        self._feedback: float | None = None  # smoothed round trip of throttles
        self._last_grow = now
        self._last_limited = -math.inf  # last time a caller had to wait on the pace
        self._last_throttle = -math.inf
        self._accepted: deque[float] = deque()  # times of recent successful answers
        self._count = AdmissionCount()
        self._sent = self._count.sends.append
        #: one of N shards told the quota: the share a cut below it keeps as its plateau
        #: (None: no share known, or out of reach for now) ...
        self._fair: float | None = None
        self._share: float | None = None  # ... and the share itself, for good
        self._known_at = -math.inf  # when the quota was told: quiet is counted from it
        self._below = 0  # cuts in a row that fell below the share
        self.throttles = 0
        self.calls = 0

    @property
    def latency(self) -> float:
        """Smoothed round-trip time of successful calls, seconds."""
        return self._latency

    @property
    def estimate(self) -> float | None:
        """The quota's current estimate (None before the first cut or known quota)."""
        return None if self.phase is Phase.SLOW_START else self._w_max

    def know_quota(self, rate: float, *, share: float = 1.0) -> None:
        """Start at a quota read from the account (Service Quotas), not by slow start.

        It becomes the ceiling (a lower `--rate` stays), `share` of it the rate and the
        estimate (one of N shards starts at 1/N, and shards that start equal stay near
        equal); throttles still cut below it when other jobs share the quota.
        """
        ceiling = max(self.settings.minimum, min(self.settings.ceiling, rate))
        start = max(self.settings.minimum, min(ceiling, rate * share))
        self.settings = replace(self.settings, ceiling=ceiling, initial=start)
        self._rate = self._w_max = start
        self._known_at = self._clock()
        if share < 1.0:
            self._fair = self._share = start
        self.phase = Phase.CUBIC
        self._epoch = self._clock() - self._k()  # on the curve's plateau

    def _taken(self, now: float, sent: float, limited: bool) -> None:
        self.calls += 1
        self._sent(sent)
        if not self.calls % FORGET_EVERY:
            self._count.forget(now, self._rate)
        if limited:
            self._last_limited = now  # demand exceeds the pace: more rate would be used

    # -- answers ---------------------------------------------------------------------------

    def on_success(self, latency: float) -> None:
        """Record a call the service accepted, answered `latency` seconds after it was sent."""
        now = self._clock()
        if self._first_answer is None:
            self._first_answer = now
            self._latency = latency  # the first answer says more than any default guess
        else:
            self._latency += 0.1 * (latency - self._latency)
        accepted = self._accepted
        accepted.append(now)
        while accepted[0] < now - ACCEPTED_WINDOW:
            accepted.popleft()
        self._grow(now)

    def accepted_rate(self) -> float:
        """Calls per second the service accepted over the last second of answers, or since
        the first answer if that is more recent."""
        if self._first_answer is None:
            return 0.0
        now = self._clock()
        span = max(min(ACCEPTED_WINDOW, now - self._first_answer), 0.05)
        return sum(1 for t in self._accepted if t >= now - span) / span

    def _accepted_second(self, now: float) -> float:
        """The rate accepted over the last whole second of answers (0 before there is one)."""
        first = self._first_answer
        if first is None or now - first < ACCEPTED_WINDOW:
            return 0.0
        return len(self._accepted) / ACCEPTED_WINDOW

    def _latest_accepted_rate(self, calls: int = 16) -> float:
        """The service's accepting rate over its last few answers (0 if too few)."""
        if len(self._accepted) < calls:
            return 0.0
        span = self._accepted[-1] - self._accepted[-calls]
        return (calls - 1) / span if span > 0 else 0.0

    def on_throttle(self, retry_after: float | None = None, *, sent: float | None = None) -> None:
        """Record a throttled call: cut the rate when throttling is more than noise.

        `sent` is when the call was sent (this controller's clock); without it, the call is
        taken for one sent a throttle round trip ago.  A call sent before the last cut
        says nothing about the rate since and cannot cut again.
        """
        self.throttles += 1
        now = self._clock()
        self._last_throttle = now
        late = False
        feedback = self._feedback
        if sent is None:
            sent = now - (feedback or 0.0)
        elif feedback is None:
            self._feedback = max(0.0, now - sent)
        else:
            # A throttle answered much later than throttles are came through a stall (of
            # the network, or of the service): its call met the bucket in a bunch.
            trip = max(0.0, now - sent)
            late = trip > LATE_TRIPS * feedback + LATE_MARGIN
            self._feedback = feedback + (0.02 if late else 0.1) * (trip - feedback)
        if retry_after:
            self._last_slot = max(self._last_slot, now + retry_after - 1.0 / self._rate)
        self._count.throttled(sent, cut_at=self._cut_at, rate=self._rate, late=late)
        if sent < self._cut_at:
            # Sent at the rate before the last cut, into a bucket it had emptied: such
            # throttles go on arriving after the cut and must not add up to another.
            return
        window = max(NOISE_WINDOW, NOISE_CALLS / self._rate)
        throttled = self._throttled
        throttled.append(now)
        while throttled[0] < now - window:
            throttled.popleft()
        # Going over the quota throttles a growing share of the calls: that share is the
        # signal.  In slow start the rate doubles every round trip: a second throttle is.
        if self.phase is Phase.SLOW_START:
            noise = 2.0
        else:
            noise = max(2.0, NOISE_SHARE * self._rate * window)
        if len(throttled) < noise:
            return
        self._cut(now, late)
        throttled.clear()

    def _cut(self, now: float, late: bool) -> None:
        rate = self._rate
        admitted, span = self._count.count()
        estimate = admitted / span if span > 0 else 0.0
        if late and self.phase is not Phase.SLOW_START:
            # A bunch after a stall says nothing of the quota: step back a little, and let
            # the curve go on as it was.
            self._rate = max(self.settings.minimum, rate * MILD_BETA)
            self._cut_at = now
            return
        head_start = 0.0
        if admitted >= PRECISE_CALLS:
            # The count's upper end: a plateau a little above the quota costs a few
            # throttles and a new count, one below it a whole cycle's goodput.
            w_max, beta, phase = min(rate, (admitted + 1) / span), MILD_BETA, Phase.CUBIC
        elif self.phase is Phase.SLOW_START:
            # Doubling overshot by as much as the bucket's burst hid: a rough estimate.
            guess = max(rate / 2, self._latest_accepted_rate())
            w_max, beta, phase = min(rate, guess), 1.0, Phase.RAMP
        elif (share := self._count.share()) < OVERLOAD_SHARE:
            # A probe just past the quota: step back a little, to the count if there is one.
            w_max = min(rate, estimate) if admitted >= ROUGH_CALLS else rate
            beta, phase = MILD_BETA, Phase.CUBIC
            if self.phase is Phase.RAMP:
                head_start = ROUGH_HEAD_START
        elif admitted >= ROUGH_CALLS:
            # Far above the quota (it dropped, or a ramp overshot): the rough count, but
            # never more than half the rate at once.
            w_max, beta, phase = max(rate / 2, min(rate, estimate)), ROUGH_BETA, Phase.RAMP
        else:
            # Heavy throttling, too few admitted calls to count: what the share of calls
            # throttled says the service admits, or what it accepted over the last second
            # (a stalled network or service throttles a whole bunch at once, and the
            # share of one bunch says little), but again never below half the rate.
            guess = max(rate / 2, rate * (1 - share), min(rate, self._accepted_second(now)))
            w_max, beta, phase = guess, ROUGH_BETA, Phase.RAMP
        fair = self._fair
        if fair is not None:
            if w_max < fair:
                self._below += 1
                if self._below >= BELOW_CUTS:
                    self._fair = None  # cut below the share again and again: not there
                else:
                    phase, w_max = Phase.CUBIC, fair  # back up to the share
            else:
                self._below = 0
                if rate > fair:  # above the share: give back more, for peers below it
                    beta = min(beta, ABOVE_BETA)
        self._rate = max(self.settings.minimum, min(rate, w_max) * beta)
        self._w_max = max(self.settings.minimum, w_max)
        self.phase = phase
        self._cut_at = self._epoch = self._last_grow = now
        self._epoch -= head_start * self._k()

    # -- growth ----------------------------------------------------------------------------

    def _interval(self) -> float:
        """How long growth waits for feedback: a round trip of successes, or a few of
        throttles once they are known to answer faster."""
        trip = self._latency
        if self._feedback is not None:
            trip = min(trip, FEEDBACK_TRIPS * self._feedback)
        return max(trip, 0.05)

    def _k(self) -> float:
        """The cubic curve's time to regain the estimate: at least `PROBE_CALLS` calls, so
        a low quota is not probed (and throttled) too often."""
        return max(self.settings.cubic_seconds, PROBE_CALLS / self._w_max, 4 * self._interval())

    def _grow(self, now: float) -> None:
        interval = self._interval()
        elapsed = now - self._last_grow
        if elapsed < interval:
            return
        self._last_grow = now
        if now - self._last_limited > 2 * interval:
            # Callers did not wait on the pace lately: more rate would go unused.  Hold the
            # curve still so that demand returning later does not meet a jump.
            self._epoch += elapsed
            return
        # Never run far ahead of what the service actually takes: while answers lag (new
        # connections, a slow start of the service), a rate nobody reaches proves nothing.
        ceiling = min(
            self.settings.ceiling,
            max(self.settings.initial, SLOW_START_LEAD * self.accepted_rate()),
        )
        if self.phase is Phase.SLOW_START:
            target = self._rate * 2.0
        elif self.phase is Phase.RAMP:
            if min(now - self._last_throttle, now - self._cut_at) > self._k():
                # A cubic cycle's time of ramp without a throttle: the estimate was far too
                # low (slow start's guess, in a stall).  Double again.
                self.phase = Phase.SLOW_START
                return
            target = self._rate + self._rate**2 / RAMP_CALLS * elapsed
        else:
            # CUBIC: w(t) = C (t - K)^3 + w_max, with K the time to regain w_max.
            k = self._k()
            t = now - self._epoch
            quiet = k if self._share is None else QUIET_CYCLES * k
            if t > 2 * k and now - max(self._last_throttle, self._known_at) > quiet:
                # A whole cycle above the estimate without a throttle, not even one too few
                # to cut for: the quota grew (another job on the account finished).  Ramp.
                self.phase, self._w_max = Phase.RAMP, self._rate
                return
            c = self._w_max * (1 - self.settings.beta) / k**3
            target = c * (t - k) ** 3 + self._w_max
        self._rate = max(self._rate, min(ceiling, max(target, self.settings.minimum)))
        if self._share is not None and self._rate >= self._share:
            self._fair = self._share  # back at the share: it is there again
