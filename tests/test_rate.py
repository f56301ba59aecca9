"""The rate controller against a simulated service: a token-bucket quota and a latency.

Simulated time makes these exact and fast; the real-time figures against the emulator are
the benchmarks' job.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import pytest

from a2ibatch._meters import InFlightCap
from a2ibatch._rate import RateController, RateSettings


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
    """Always-busy senders paced by the controller.

    As in the emulator, a call meets the quota when it arrives, a jittered latency after it
    was sent, and is answered then: calls sent evenly arrive bunched, and a small burst
    bucket throttles some of them even below the quota.
    """

    quota: float
    latency: float = 0.04
    jitter: float = 0.02
    ceiling: float = 1000.0
    now: float = 0.0
    accepted: list[float] = field(default_factory=list)
    throttled: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bucket = Bucket(self.quota)
        self.ctl = RateController(RateSettings(ceiling=self.ceiling), clock=lambda: self.now)
        self.rng = random.Random(1)
        self.pending: list[tuple[float, float]] = []  # (arrival, round trip)

    def run(self, seconds: float, quota_changes: dict[float, float] | None = None) -> None:
        changes = sorted((quota_changes or {}).items())
        end = self.now + seconds
        while self.now < end:
            send_at = self.now + self.ctl.reserve()
            self.rates.append(self.ctl.rate)
            # Calls that arrive before the next send are answered first.
            while self.pending and self.pending[0][0] <= send_at:
                arrive, rtt = heapq.heappop(self.pending)
                self.now = arrive
                while changes and changes[0][0] <= arrive:
                    self.bucket.rate = changes.pop(0)[1]
                if self.bucket.take(arrive):
                    self.accepted.append(arrive)
                    self.ctl.on_success(rtt)
                else:
                    self.throttled.append(arrive)
                    self.ctl.on_throttle(sent=arrive - rtt)
            self.now = max(self.now, send_at)
            rtt = max(0.001, self.latency + self.rng.uniform(-self.jitter, self.jitter))
            heapq.heappush(self.pending, (self.now + rtt, rtt))

    def goodput(self, start: float, stop: float) -> float:
        n = sum(1 for t in self.accepted if start <= t < stop)
        return n / (stop - start)

    def throttled_share(self, start: float = 0.0) -> float:
        throttled = sum(1 for t in self.throttled if t >= start)
        return throttled / (throttled + sum(1 for t in self.accepted if t >= start))


def bunching_floor(quota: float, jitter: float, seconds: float = 60.0) -> float:
    """Share of calls sent evenly at exactly the quota that the bucket throttles anyway."""
    rng = random.Random(2)
    arrivals = sorted(i / quota + rng.uniform(-jitter, jitter) for i in range(int(seconds * quota)))
    bucket = Bucket(quota)
    return sum(0 if bucket.take(t) else 1 for t in arrivals) / len(arrivals)


@pytest.mark.parametrize(
    ("quota", "latency", "jitter", "share"),
    [
        (5.0, 0.04, 0.02, 0.95),  # Textract-like quota
        (40.0, 0.3, 0.1, 0.94),
        (150.0, 0.04, 0.02, 0.96),  # the benchmark's StartHumanLoop
        (150.0, 0.02, 0.01, 0.98),
        # Known weak spot: at a high quota, slow start's estimate of it is noisy and the
        # controller settles low before a re-probe finds more.
        (600.0, 0.04, 0.005, 0.8),
    ],
)
def test_finds_an_untold_quota(quota: float, latency: float, jitter: float, share: float) -> None:
    sim = Sim(quota=quota, latency=latency, jitter=jitter)
    sim.run(60.0)
    assert sim.goodput(2.0, 60.0) >= share * quota
    # Finding the quota costs some throttles at the start (slow start overshoots a small
    # quota many times over), then a few per cycle, on top of those the bunching of
    # arrivals costs at the quota itself.
    floor = bunching_floor(quota, jitter)
    assert len(sim.throttled) <= 60 + (0.02 + floor) * len(sim.accepted)
    assert sim.ctl.throttles == len(sim.throttled)


def test_slow_start_stops_at_the_second_throttle() -> None:
    # Doubling every round trip, slow start overshoots the quota until it hears back; the
    # share-of-calls noise rule would let it run on (a high rate makes "2% of the calls" many
    # throttles), so in slow start a second throttle ends it.  Averaged over seeds: the
    # overshoot of one run depends on where the doubling lands.
    first = []
    for seed in range(5):
        sim = Sim(quota=150.0)
        sim.rng.seed(seed)
        sim.run(10.0)
        first.append(sum(1 for t in sim.throttled if t < 1.5))
    assert sum(first) / len(first) <= 12  # about 20 when slow start waited for 2%


def test_noise_at_the_quota_does_not_restart_slow_start() -> None:
    # Throttles too few to cut for still say "this is about the quota": a growth curve that
    # ran a whole cycle without a cut must not take that for a quota that grew, or the slow
    # start it restarts overshoots again.
    now = [0.0]
    ctl = RateController(RateSettings(ceiling=1000.0, initial=150.0), clock=lambda: now[0])
    ctl.on_throttle()
    ctl.on_throttle()  # two throttles end slow start
    assert not ctl._slow_start
    next_noise = 2.0
    while now[0] < 30.0:
        now[0] += 0.5 / ctl.rate  # callers always waiting on the pace
        ctl.reserve()
        ctl.on_success(0.04)
        if now[0] >= next_noise:  # one isolated throttle every two seconds
            ctl.on_throttle()
            next_noise += 2.0
        assert not ctl._slow_start, f"slow start again at {now[0]:.1f} s"
    # Without any throttle a whole cycle long, it does look for a larger quota.
    while now[0] < 45.0 and not ctl._slow_start:
        now[0] += 0.5 / ctl.rate
        ctl.reserve()
        ctl.on_success(0.04)
    assert ctl._slow_start


def test_a_long_round_trip_does_not_hammer() -> None:
    # Textract-like: seconds per call, a small quota.  Feedback on every probe comes a
    # long round trip later, and the arrivals' spread throttles some calls at any rate.
    sim = Sim(quota=20.0, latency=2.0, jitter=0.5)
    sim.run(120.0)
    assert sim.goodput(10.0, 120.0) >= 0.85 * 20.0
    assert sim.throttled_share(10.0) <= bunching_floor(20.0, 0.5) + 0.05


def test_a_told_quota_is_never_exceeded() -> None:
    sim = Sim(quota=150.0, ceiling=150.0, jitter=0.005)
    sim.run(20.0)
    assert max(sim.rates) <= 150.0
    assert not sim.throttled
    assert sim.goodput(1.0, 20.0) >= 0.98 * 150.0


def test_a_told_quota_shrugs_off_bunching() -> None:
    # Arrivals spread by +-20 ms throttle about 1% of calls sent at exactly the quota: that
    # is noise at the ceiling the user gave, not a reason to fall far below it.
    sim = Sim(quota=150.0, ceiling=150.0, jitter=0.02)
    sim.run(30.0)
    assert max(sim.rates) <= 150.0
    assert sim.goodput(1.0, 30.0) >= 0.97 * 150.0
    assert sim.throttled_share() <= 1.5 * bunching_floor(150.0, 0.02)


def test_recovers_when_the_quota_halves() -> None:
    sim = Sim(quota=150.0)
    sim.run(40.0, quota_changes={20.0: 75.0})
    # Back at 90% of the new quota within a few seconds, and close to it from then on.
    back = next(t / 4 for t in range(80, 160) if sim.goodput(t / 4, t / 4 + 1) >= 0.9 * 75)
    assert back <= 22.0
    assert sim.goodput(25.0, 39.0) >= 0.95 * 75.0
    # It does not keep hammering the lower quota.
    assert sim.throttled_share(25.0) <= 0.03


def test_finds_a_quota_that_doubles() -> None:
    sim = Sim(quota=75.0)
    sim.run(40.0, quota_changes={15.0: 150.0})
    assert sim.goodput(30.0, 40.0) >= 0.9 * 150.0


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
    for _ in range(3):  # calls sent after the cut and still throttled: cut again at once,
        ctl.on_throttle(sent=1.0)  # not two round trips later
    assert ctl.rate < cut


def test_a_probe_just_past_the_quota_costs_a_small_cut() -> None:
    # Out of slow start, a few throttles among many accepted calls mean a probe went just
    # past the quota: step back 5%, not the 10% a real overload (or a dropped quota) gets.
    now = [0.0]
    ctl = RateController(RateSettings(ceiling=1e6, initial=100.0), clock=lambda: now[0])
    ctl.on_throttle(sent=0.0)
    ctl.on_throttle(sent=0.0)  # slow start ends
    while now[0] < 2.0:
        now[0] += 0.5 / ctl.rate
        ctl.reserve()
        ctl.on_success(0.04)
    before = ctl.rate
    assert before < 1e6
    ctl.on_throttle(sent=now[0])
    ctl.on_throttle(sent=now[0])  # 2 of the last second's ~100 answers
    assert ctl.rate == pytest.approx(0.95 * before)


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
    # Before any answer: room for the first rate at a round trip of seconds.
    assert cap.limit == 64
    cap.update(rate=10.0, latency=2.0)  # Textract: seconds per page
    assert cap.limit == 16 + 40
    cap.update(rate=150.0, latency=0.04)  # StartHumanLoop: tens of milliseconds
    assert cap.limit == 16 + 12
    cap.update(rate=1000.0, latency=5.0)
    assert cap.limit == 1024
    assert seen == [56, 28, 1024]  # a worker pool hears of every change
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
        # The head goes now; the next live caller's slot is 10 ms away, within 1.5 slots.
        assert [w.done() and not w.cancelled() for w in waiters] == [
            True,
            False,
            True,
            False,
            False,
        ]
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
