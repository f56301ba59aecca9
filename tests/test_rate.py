"""The rate controller against a simulated service, in simulated time.

The service is the emulator's latency model (docs/emulator.md): a call crosses the network,
is admitted or throttled on arrival by a token bucket (burst 5), spends its processing time
if admitted, and crosses the network back, so a throttle answers within the network's
round trip and a success a processing time later.  Two drivers: `Sim`, callers always
waiting on `reserve()` (exact and fast), and `run_job`, a whole job's worker pool, in-flight
cap, retries and `acquire()` on an event loop whose clock is simulated.  Real-time figures
against the emulator are the benchmarks' job.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import selectors
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from a2ibatch._meters import InFlightCap
from a2ibatch._pool import WorkerPool
from a2ibatch._rate import Phase, RateController, RateSettings
from a2ibatch._retry import CallError, ErrorKind, RetryPolicy

NETWORK = 0.003  # one way, seconds, as in the benchmarks ...
NETWORK_JITTER = 0.002  # ... +- this


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
class Service:
    """Network in, admission, processing (admitted calls only), network out."""

    quota: float
    processing: float = 0.04
    jitter: float = 0.02
    network_jitter: float = NETWORK_JITTER
    seed: int = 1
    accepted: list[float] = field(default_factory=list)
    throttled: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bucket = Bucket(self.quota)
        self.rng = random.Random(self.seed)

    def one_way(self) -> float:
        return max(0.0, NETWORK + self.rng.uniform(-self.network_jitter, self.network_jitter))

    def work(self) -> float:
        return max(0.0, self.processing + self.rng.uniform(-self.jitter, self.jitter))

    def admit(self, now: float) -> bool:
        ok = self.bucket.take(now)
        (self.accepted if ok else self.throttled).append(now)
        return ok

    def goodput(self, start: float, stop: float) -> float:
        return sum(1 for t in self.accepted if start <= t < stop) / (stop - start)

    def throttled_share(self, start: float = 0.0) -> float:
        throttled = sum(1 for t in self.throttled if t >= start)
        return throttled / max(1, throttled + sum(1 for t in self.accepted if t >= start))


@dataclass
class Sim:
    """Callers always waiting on the pace: each send is the controller's next slot."""

    service: Service
    ceiling: float = 1000.0
    now: float = 0.0
    rates: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ctl = RateController(RateSettings(ceiling=self.ceiling), clock=lambda: self.now)
        self.events: list[tuple[float, int, bool, float]] = []  # (time, arrive?, ok, sent)

    def run(self, seconds: float, quota_changes: dict[float, float] | None = None) -> None:
        changes = sorted((quota_changes or {}).items())
        end = self.now + seconds
        service, ctl, events = self.service, self.ctl, self.events
        while self.now < end:
            send_at = self.now + ctl.reserve()
            self.rates.append(ctl.rate)
            while events and events[0][0] <= send_at:
                at, arrive, ok, sent = heapq.heappop(events)
                self.now = at
                if arrive:
                    while changes and changes[0][0] <= at:
                        service.bucket.rate = changes.pop(0)[1]
                    ok = service.admit(at)
                    delay = (service.work() if ok else 0.0) + service.one_way()
                    heapq.heappush(events, (at + delay, 0, ok, sent))
                elif ok:
                    ctl.on_success(at - sent)
                else:
                    ctl.on_throttle(sent=sent)
            self.now = max(self.now, send_at)
            heapq.heappush(events, (self.now + service.one_way(), 1, False, self.now))


@dataclass
class Shared:
    """Shards: controllers that never talk, each with callers always waiting on its pace,
    all against ONE service bucket (the account's quota), each starting at its own time."""

    service: Service
    starts: list[float]
    now: float = 0.0

    def __post_init__(self) -> None:
        self.ctls = [RateController(RateSettings(), clock=lambda: self.now) for _ in self.starts]
        self.accepted: list[list[float]] = [[] for _ in self.starts]
        self.seq = 0
        # (time, answers before sends, sequence, kind, controller, sent)
        self.events: list[tuple[float, int, int, str, int, float]] = []
        for i, start in enumerate(self.starts):
            self._push(start, 1, "start", i, start)

    def _push(self, at: float, order: int, kind: str, i: int, sent: float) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, order, self.seq, kind, i, sent))

    def run(self, seconds: float) -> None:
        end, service, events = self.now + seconds, self.service, self.events
        while events and events[0][0] < end:
            at, _order, _seq, kind, i, sent = heapq.heappop(events)
            self.now = at
            ctl = self.ctls[i]
            if kind == "start":  # the first slot
                self._push(at + ctl.reserve(), 1, "send", i, at)
            elif kind == "send":  # the call goes at its slot; the next slot is taken
                self._push(at + service.one_way(), 0, "arrive", i, at)
                self._push(at + ctl.reserve(), 1, "send", i, at)
            elif kind == "arrive":
                ok = service.admit(at)
                if ok:
                    self.accepted[i].append(at)
                delay = (service.work() if ok else 0.0) + service.one_way()
                self._push(at + delay, 0, "ok" if ok else "throttled", i, sent)
            elif kind == "ok":
                ctl.on_success(at - sent)
            else:
                ctl.on_throttle(sent=sent)
        self.now = end

    def shares(self, start: float, stop: float) -> list[float]:
        """Each shard's goodput (calls admitted per second) between `start` and `stop`."""
        return [sum(1 for t in ts if start <= t < stop) / (stop - start) for ts in self.accepted]


def jain(xs: list[float]) -> float:
    """Jain's fairness index: 1 for equal shares, 1/n when one shard gets everything."""
    square = sum(x * x for x in xs)
    return sum(xs) ** 2 / (len(xs) * square) if square else 0.0


class _SimulatedSelector(selectors.DefaultSelector):
    """Waiting for the next timer moves the simulated clock instead of sleeping."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise RuntimeError("nothing scheduled: the simulated job is stuck")
        self.clock[0] += max(0.0, timeout)
        return super().select(0)


THROTTLED = CallError(ErrorKind.THROTTLED, "ThrottlingException", "")


@dataclass
class Job:
    """A job's whole run: goodput over the least possible time, share throttled."""

    goodput: float
    throttled: float
    service: Service
    ctl: RateController


def run_job(service: Service, items: int, *, know: float | None = None, **settings: Any) -> Job:
    """`items` calls through a worker pool as large as the in-flight cap, each retried as
    `RetryPolicy` says, paced by `acquire()` on an event loop with a simulated clock."""
    clock = [0.0]
    loop = asyncio.SelectorEventLoop(_SimulatedSelector(clock))
    loop.time = lambda: clock[0]  # type: ignore[method-assign]
    ctl = RateController(RateSettings(**settings), clock=lambda: clock[0])
    if know is not None:
        ctl.know_quota(know)
    cap, policy, rng = InFlightCap(None), RetryPolicy(), random.Random(service.seed + 1)
    todo = iter(range(items))
    done: list[float] = []

    async def take() -> int | None:
        return next(todo, None)

    async def work(_item: int) -> None:
        for attempt in range(1, policy.max_attempts + 1):
            await ctl.acquire()
            sent = clock[0]
            await asyncio.sleep(service.one_way())
            ok = service.admit(clock[0])
            await asyncio.sleep((service.work() if ok else 0.0) + service.one_way())
            if ok:
                ctl.on_success(clock[0] - sent)
                cap.update(ctl.rate, ctl.latency)
                done.append(clock[0])
                return
            ctl.on_throttle(sent=sent)
            await anyio.sleep(policy.wait(attempt, THROTTLED, rng))

    try:
        loop.run_until_complete(WorkerPool(cap, take, work).run())
    finally:
        loop.close()
    least = items / service.quota + service.processing + 2 * NETWORK
    return Job(least / max(done) * len(done) / items, service.throttled_share(), service, ctl)


# -- whole jobs: the benchmark's scenarios, worst of several runs ---------------------------


@pytest.mark.parametrize(
    ("quota", "items", "processing", "jitter", "good", "throttled"),
    [
        (150.0, 2000, 0.04, 0.02, 0.97, 0.015),  # StartHumanLoop
        (150.0, 2000, 0.02, 0.01, 0.97, 0.015),
        (20.0, 400, 2.0, 0.5, 0.95, 0.02),  # Textract pages
    ],
)
def test_the_worst_of_five_jobs_runs_at_the_quota(
    quota: float, items: int, processing: float, jitter: float, good: float, throttled: float
) -> None:
    # The whole run, start-up included.  The controller used to settle far below the quota
    # in some runs (0.78 of it in one of these five): slow start's estimate came from
    # answers that lag the sends, and the curve stayed flat at it for six seconds.
    jobs = [run_job(Service(quota, processing, jitter, seed=s), items) for s in range(5)]
    assert min(j.goodput for j in jobs) >= good
    assert max(j.throttled for j in jobs) <= throttled


def test_the_first_second_is_nearly_at_the_quota() -> None:
    # Slow start from 40/s reaches 150/s within a quarter of a second (from 20/s, as it
    # used to, the first second accepted 0.75-0.85 of the quota).
    for seed in range(3):
        job = run_job(Service(150.0, seed=seed), 600)
        assert job.service.goodput(0.0, 1.0) >= 0.9 * 150.0


def test_a_known_quota_starts_at_it_and_stays_under_it() -> None:
    job = run_job(Service(150.0), 1500, know=150.0)
    assert job.service.goodput(0.0, 1.0) >= 0.97 * 150.0
    assert job.throttled <= 0.002
    assert job.ctl.settings.ceiling == 150.0
    slow = run_job(Service(20.0, 2.0, 0.5), 400, know=20.0)
    assert slow.goodput >= 0.97 and slow.throttled <= 0.005


def test_a_known_quota_shared_with_another_job_is_found_below_it() -> None:
    # Service Quotas says 150/s, but another job on the account takes 60 of them.
    job = run_job(Service(90.0), 1200, know=150.0)
    assert job.service.goodput(2.0, 10.0) >= 0.93 * 90.0
    assert job.ctl.rate <= 150.0


def test_a_user_ceiling_below_a_known_quota_stays() -> None:
    ctl = RateController(RateSettings(ceiling=50.0))
    ctl.know_quota(150.0)
    assert ctl.rate == ctl.settings.ceiling == 50.0
    assert ctl.phase is Phase.CUBIC and ctl.estimate == 50.0


def test_a_tiny_quota_costs_few_throttles() -> None:
    # 40/s against 5/s: heavy throttling before any count; the share throttled says how far
    # above the quota the rate is (it used to take a dozen 10% cuts, 12% of calls throttled).
    job = run_job(Service(5.0), 300)
    assert job.goodput >= 0.95
    assert job.throttled <= 0.07


# -- the quota's estimate: counted sends between throttled sends -----------------------------


def test_a_probe_past_the_quota_is_cut_to_the_count_not_to_a_share_of_the_rate() -> None:
    # The burst of 5 lets a probe run several percent past the quota before it is
    # throttled; the estimate is the count (its upper end), never below the quota, and
    # the rate stands just under it (2%), not a share of the rate the probe reached.
    for seed in range(3):
        sim = Sim(Service(150.0, seed=seed))
        sim.run(5.0)
        for _ in range(5):
            sim.run(5.0)
            assert sim.ctl.phase is Phase.CUBIC
            assert sim.ctl.estimate is not None
            assert 150.0 <= sim.ctl.estimate <= 1.02 * 150.0
        assert sim.service.goodput(3.0, 30.0) >= 0.997 * 150.0
        assert sim.service.throttled_share(3.0) <= 0.01


def _pace(ctl: RateController, now: list[float], calls: int, throttled: set[int]) -> None:
    """Callers always waiting: `calls` sends, one at every slot, each answered at once; the
    sends numbered in `throttled` are throttled."""
    for k in range(calls):
        now[0] += ctl.reserve()
        if k in throttled:
            ctl.on_throttle(sent=now[0])
        else:
            ctl.on_success(0.05)


@pytest.mark.parametrize(("admitted", "head_start"), [(15, True), (40, False)])
def test_a_ramps_rough_count_starts_the_curve_part_way(admitted: int, head_start: bool) -> None:
    # A ramp's probe past the quota that counts fewer than PRECISE_CALLS calls gives a
    # rough estimate, often a call short (5% below the quota at 150/s): its curve starts
    # half way, so the next probe, which makes it precise, comes after half a cycle.  A
    # precise count waits the whole cycle.
    now = [0.0]
    ctl = RateController(RateSettings(initial=200.0), clock=lambda: now[0])
    ctl.on_throttle(sent=0.0)
    ctl.on_throttle(sent=0.0)  # slow start ends: a ramp from a guess
    phases = [ctl.phase]
    _pace(ctl, now, 100, set())
    _pace(ctl, now, admitted + 3, {0, admitted + 1, admitted + 2})  # the third one cuts
    phases.append(ctl.phase)
    assert phases == [Phase.RAMP, Phase.CUBIC]
    estimate = ctl.estimate
    assert estimate is not None
    until = now[0] + 0.6 * RateSettings().cubic_seconds
    while now[0] < until:
        _pace(ctl, now, 1, set())
    assert (ctl.rate >= estimate) is head_start


def test_a_low_first_estimate_is_left_behind_within_two_seconds() -> None:
    # Slow start ends with a guess (half the rate), as low as 0.6 of the quota at 600/s;
    # the ramp climbs by a share per call instead of staying flat at it, and the first
    # count that is precise enough ends the ramp (else it would run on, throttled).
    for seed in range(3):
        sim = Sim(Service(600.0, network_jitter=0.0005, seed=seed))
        sim.run(8.0)
        assert sim.service.goodput(2.5, 8.0) >= 0.96 * 600.0
        assert sim.service.throttled_share(2.5) <= 0.02


def test_a_low_quota_is_probed_seldom_and_a_changed_one_found_again() -> None:
    # At 20/s a probe's count is rough (a dozen calls, +-8%): the rate steps back to it
    # and probes again only `PROBE_CALLS` calls later.
    sim = Sim(Service(20.0, 2.0, 0.5))
    sim.run(120.0)
    assert sim.ctl.estimate == pytest.approx(20.0, rel=0.05)
    assert sim.service.throttled_share(10.0) <= 0.015
    assert sim.service.goodput(10.0, 120.0) >= 0.95 * 20.0
    sim.run(60.0, quota_changes={sim.now + 1.0: 10.0})
    assert sim.ctl.estimate == pytest.approx(10.0, rel=0.06)


def test_a_trickle_of_throttles_at_a_low_quota_is_cut_for() -> None:
    # A plateau 4% above a 20/s quota throttles about one call a second: never two within
    # one second, but 4% of the calls.  Throttles are counted over 100 calls' time.
    now = [0.0]
    ctl = RateController(RateSettings(ceiling=1000.0, initial=20.8), clock=lambda: now[0])
    ctl.know_quota(20.8)
    next_throttle = 1.0
    while now[0] < 12.0:
        now[0] += 1.0 / ctl.rate
        ctl.reserve()
        ctl.on_success(2.0)
        if now[0] >= next_throttle:
            ctl.on_throttle(sent=now[0] - 0.006)
            next_throttle += 1.25
    assert ctl.rate < 20.8


def test_growth_waits_for_throttles_not_for_seconds_long_answers() -> None:
    # At 2 s per answer a throttle still answers in milliseconds, so growth waits a few
    # throttle round trips, not an answer's: at 50/s the quota is reached seconds sooner.
    for seed in range(3):
        sim = Sim(Service(50.0, 2.0, 0.5, seed=seed))
        sim.run(20.0)
        assert sim.service.goodput(3.0, 20.0) >= 0.985 * 50.0


# -- shards: independent controllers sharing one quota ---------------------------------------

SHARDS = [
    # quota, processing, jitter, starts, seconds, steady window begins this long after the
    # last start
    pytest.param(50.0, 0.04, 0.02, [0.0] * 4, 30.0, 5.0, id="50/s"),
    pytest.param(150.0, 0.04, 0.02, [0.0] * 4, 30.0, 5.0, id="150/s"),
    pytest.param(20.0, 2.0, 0.5, [0.0] * 4, 60.0, 10.0, id="20/s at 2 s"),
    pytest.param(50.0, 0.04, 0.02, [0.0, 0.0, 0.0, 5.0], 35.0, 5.0, id="one 5 s late"),
]


def run_shards(
    quota: float, processing: float, jitter: float, starts: list[float], seconds: float,
    warmup: float, seed: int, *, known: bool = False,
) -> tuple[float, float, float]:  # fmt: skip
    """Goodput together (x quota), share throttled and Jain's index over the steady window;
    `known`: each shard read the quota from Service Quotas and starts at its 1/N."""
    shared = Shared(Service(quota, processing, jitter, seed=seed), starts)
    for ctl in shared.ctls if known else ():
        ctl.know_quota(quota, share=1 / len(starts))
    shared.run(seconds)
    start = max(starts) + warmup
    xs = shared.shares(start, seconds)
    return sum(xs) / quota, shared.service.throttled_share(start), jain(xs)


@pytest.mark.parametrize(("quota", "processing", "jitter", "starts", "seconds", "warmup"), SHARDS)
def test_untold_shards_together_run_at_the_quota(
    quota: float, processing: float, jitter: float, starts: list[float], seconds: float,
    warmup: float,
) -> None:  # fmt: skip
    runs = [run_shards(quota, processing, jitter, starts, seconds, warmup, s) for s in range(3)]
    assert min(good for good, _, _ in runs) >= 0.97
    assert max(throttled for _, throttled, _ in runs) <= 0.04


@pytest.mark.xfail(
    strict=True,
    reason="open: each controller keeps the share its first second left it (worst Jain 0.39-0.86)",
)
@pytest.mark.parametrize(("quota", "processing", "jitter", "starts", "seconds", "warmup"), SHARDS)
def test_untold_shards_get_fair_shares(
    quota: float, processing: float, jitter: float, starts: list[float], seconds: float,
    warmup: float,
) -> None:  # fmt: skip
    # The target for a job run as shards without --rate: together at least 0.93 of the
    # quota, at most 3% throttled, Jain's index over the shards' goodput at least 0.95.
    runs = [run_shards(quota, processing, jitter, starts, seconds, warmup, s) for s in range(3)]
    assert min(good for good, _, _ in runs) >= 0.93
    assert max(throttled for _, throttled, _ in runs) <= 0.03
    assert min(fair for _, _, fair in runs) >= 0.95


@pytest.mark.parametrize(("quota", "processing", "jitter", "starts", "seconds", "warmup"), SHARDS)
def test_shards_that_read_the_quota_get_fair_shares(
    quota: float, processing: float, jitter: float, starts: list[float], seconds: float,
    warmup: float,
) -> None:  # fmt: skip
    # Each of N shards starts at 1/N of the quota Service Quotas told: the whole target
    # (a shard joining late meets three that grew past their shares: a little more
    # throttling while they make room).
    runs = [
        run_shards(quota, processing, jitter, starts, seconds, warmup, s, known=True)
        for s in range(3)
    ]
    assert min(good for good, _, _ in runs) >= 0.97
    together = len(set(starts)) == 1
    assert max(throttled for _, throttled, _ in runs) <= (0.03 if together else 0.04)
    assert min(fair for _, _, fair in runs) >= (0.95 if together else 0.93)


@pytest.mark.parametrize(
    ("quota", "processing", "jitter"),
    [(50.0, 0.04, 0.02), (150.0, 0.04, 0.02), (20.0, 2.0, 0.5)],
    ids=["50/s", "150/s", "20/s at 2 s"],
)
@pytest.mark.parametrize(
    "starts",
    [[0.0, 0.1, 0.15, 0.3], [0.0, 0.4, 0.8, 1.2], [0.0, 0.0, 0.0, 5.0]],
    ids=["tenths apart", "0.4 s apart", "one 5 s late"],
)
def test_shards_that_read_the_quota_stay_fair_however_they_start(
    quota: float, processing: float, jitter: float, starts: list[float]
) -> None:
    # Processes start tenths of a second apart (or one much later), and a minute and a half
    # is many probes: without the share as an anchor, one shard that grew past it while the
    # others were still starting kept it (Jain 0.88-0.93 at 150/s), throttling 2-3%.
    runs = [
        run_shards(quota, processing, jitter, starts, 90.0 + max(starts), 5.0, s, known=True)
        for s in range(4)
    ]
    assert min(good for good, _, _ in runs) >= 0.97
    assert max(throttled for _, throttled, _ in runs) <= 0.02
    assert min(fair for _, _, fair in runs) >= 0.95


def test_shards_whose_quota_another_job_shares_run_at_what_is_left() -> None:
    # Service Quotas says 50/s, but another job on the account takes 20 of them: the share
    # (12.5/s) is out of reach, and after a few cuts below it each shard's count rules.
    for seed in range(3):
        shared = Shared(Service(30.0, seed=seed), [0.0, 0.1, 0.2, 0.3])
        for ctl in shared.ctls:
            ctl.know_quota(50.0, share=0.25)
        shared.run(90.0)
        assert sum(shared.shares(10.0, 90.0)) >= 0.97 * 30.0
        assert shared.service.throttled_share(10.0) <= 0.03


def test_a_shard_whose_peers_are_not_running_grows_past_its_share() -> None:
    # An array job whose compute runs two of its four shards at a time: each started at a
    # quarter of the quota, together they fill it within half a minute.
    shared = Shared(Service(50.0), [0.0, 0.0])
    for ctl in shared.ctls:
        ctl.know_quota(50.0, share=0.25)
    shared.run(40.0)
    assert sum(shared.shares(30.0, 40.0)) >= 0.95 * 50.0
    assert jain(shared.shares(30.0, 40.0)) >= 0.95


# -- behaviours kept from before -------------------------------------------------------------


def test_slow_start_stops_at_the_second_throttle() -> None:
    first = []
    for seed in range(5):
        sim = Sim(Service(150.0, seed=seed))
        sim.run(10.0)
        first.append(sum(1 for t in sim.service.throttled if t < 1.5))
    assert sum(first) / len(first) <= 12


def test_noise_at_the_quota_does_not_restart_slow_start() -> None:
    now = [0.0]
    ctl = RateController(RateSettings(ceiling=1000.0, initial=150.0), clock=lambda: now[0])
    ctl.on_throttle()
    ctl.on_throttle()  # two throttles end slow start
    next_noise = 2.0
    while now[0] < 30.0:
        now[0] += 0.5 / ctl.rate  # callers always waiting on the pace
        ctl.reserve()
        ctl.on_success(0.04)
        if now[0] >= next_noise:  # one isolated throttle every two seconds
            ctl.on_throttle()
            next_noise += 2.0
        assert ctl.phase is not Phase.SLOW_START, f"slow start again at {now[0]:.1f} s"


def test_a_told_quota_is_never_exceeded() -> None:
    sim = Sim(Service(150.0), ceiling=150.0)
    sim.run(20.0)
    assert max(sim.rates) <= 150.0
    assert sim.service.throttled_share() <= 0.002
    assert sim.service.goodput(1.0, 20.0) >= 0.98 * 150.0


def test_a_told_quota_shrugs_off_bunching() -> None:
    # Arrivals spread by +-10 ms one way throttle some calls sent at exactly the quota:
    # noise at the ceiling the user gave, not a reason to fall far below it.
    sim = Sim(Service(150.0, network_jitter=0.01), ceiling=150.0)
    sim.run(30.0)
    assert max(sim.rates) <= 150.0
    assert sim.service.goodput(1.0, 30.0) >= 0.97 * 150.0
    assert sim.service.throttled_share() <= 0.01


def test_recovers_when_the_quota_halves() -> None:
    sim = Sim(Service(150.0))
    sim.run(40.0, quota_changes={20.0: 75.0})
    back = next(t / 4 for t in range(80, 160) if sim.service.goodput(t / 4, t / 4 + 1) >= 67.5)
    assert back <= 21.0
    assert sim.service.goodput(22.0, 39.0) >= 0.95 * 75.0
    assert sim.service.throttled_share(22.0) <= 0.02


def test_finds_a_quota_that_doubles() -> None:
    sim = Sim(Service(75.0))
    sim.run(40.0, quota_changes={15.0: 150.0})
    assert sim.service.goodput(25.0, 40.0) >= 0.9 * 150.0


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


def test_throttles_of_calls_sent_before_a_cut_do_not_cut_again() -> None:
    now = [0.0]
    ctl = RateController(RateSettings(ceiling=1000.0, initial=100.0), clock=lambda: now[0])
    ctl.on_throttle(sent=0.0)
    ctl.on_throttle(sent=0.0)  # slow start ends: the first cut, at t=0
    cut = ctl.rate
    now[0] = 1.5  # a long round trip later, answers to calls sent before the cut
    for _ in range(10):
        ctl.on_throttle(sent=-0.5)
    assert ctl.rate == cut
    # One call sent after the cut meets the bucket they emptied: alone, it is noise.  Their
    # throttles used to count towards the next cut, and three cuts in a row after an
    # overshooting slow start left the rate at two thirds of the quota.
    ctl.on_throttle(sent=1.0)
    assert ctl.rate == cut
    for _ in range(2):  # more calls sent after the cut and still throttled: cut again
        ctl.on_throttle(sent=1.0)
    assert ctl.rate < cut


def test_the_first_answer_sets_the_latency() -> None:
    now = [0.0]
    ctl = RateController(RateSettings(), clock=lambda: now[0])
    now[0] = 2.0
    ctl.on_success(2.0)  # Textract: seconds, where the default guess is 50 ms
    assert ctl.latency == 2.0
    ctl.on_success(3.0)
    assert 2.0 < ctl.latency < 3.0  # then smoothed


def test_concurrency_follows_littles_law() -> None:
    cap = InFlightCap(None, minimum=16, maximum=1024)
    seen: list[int] = []
    cap.on_change = seen.append
    assert cap.limit == 64  # before any answer: room for the first rate at seconds per call
    cap.update(rate=10.0, latency=2.0)
    assert cap.limit == 16 + 40
    cap.update(rate=150.0, latency=0.04)
    assert cap.limit == 16 + 12
    cap.update(rate=1000.0, latency=5.0)
    assert cap.limit == 1024
    assert seen == [56, 28, 1024]
    fixed = InFlightCap(7)
    fixed.update(rate=1000.0, latency=5.0)
    assert fixed.limit == 7


def test_released_in_order_a_few_slots_at_most_early() -> None:
    """One timer releases the head and any caller due within a slot and a half; a cancelled
    caller is skipped."""
    now = [0.0]
    ctl = RateController(RateSettings(ceiling=100.0, initial=100.0), clock=lambda: now[0])
    timers: list[float] = []

    class Loop:
        def call_later(self, delay: float, *args: object) -> None:
            timers.append(delay)

    loop = asyncio.new_event_loop()
    try:
        waiters = [loop.create_future() for _ in range(5)]
        waiters[1].cancel()
        ctl._waiters.extend(waiters)
        ctl._release(Loop())  # type: ignore[arg-type]
        released = [w.done() and not w.cancelled() for w in waiters]
        assert released == [True, False, True, False, False]
        assert timers == [pytest.approx(0.02)]
        now[0] = 0.02
        ctl._release(Loop())  # type: ignore[arg-type]
        assert all(w.done() for w in waiters)
        assert ctl.calls == 4
    finally:
        loop.close()


@pytest.mark.anyio
async def test_acquire_lets_every_caller_through_in_order() -> None:
    ctl = RateController(RateSettings(ceiling=20000.0, initial=20000.0))
    order: list[int] = []

    async def caller(i: int) -> None:
        await ctl.acquire()
        order.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(caller, i)
            await anyio.lowlevel.checkpoint()
    assert order == list(range(50))
    assert ctl.calls == 50


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        RateSettings(ceiling=0)
    with pytest.raises(ValueError):
        RateSettings(beta=1.5)
