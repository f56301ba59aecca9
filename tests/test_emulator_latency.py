"""The emulator's latency model and its token buckets.

A call is admitted or throttled when it arrives (after a one-way network delay) and only then
spends its processing time, so evenly paced calls below the quota are admitted however long
the service takes, and a throttled call answers at once.  The token bucket itself is tested
with a fake clock, where no event-loop stall can blur what it decides.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from a2ibatch.emulator._quota import TokenBucket
from test_emulator import A2I, client, get, start_args

pytestmark = pytest.mark.anyio

RATES = st.floats(min_value=0.5, max_value=500.0)
CAPACITIES = st.integers(min_value=1, max_value=20)
GAPS = st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=200)
ATTEMPTS = st.integers(min_value=0, max_value=30)


# -- the token bucket, clock-driven -----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(RATES, CAPACITIES, st.lists(st.tuples(st.floats(0.0, 2.0), ATTEMPTS), max_size=200))
def test_a_bucket_never_admits_more_than_burst_plus_rate_times_time(
    rate: float, capacity: int, arrivals: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(rate, capacity, now=0.0)
    now, accepted = 0.0, 0
    for gap, attempts in arrivals:
        now += gap
        accepted += sum(bucket.take(now) for _ in range(attempts))
        # At every instant, not only at the end: the quota holds over any prefix.
        assert accepted <= capacity + rate * now + 1e-9
    assert accepted == bucket.accepted
    # Every token is accounted for: spent, still held, or wasted on a full bucket.
    assert bucket.accepted + bucket.tokens == pytest.approx(
        capacity + bucket.earned - bucket.wasted, abs=1e-6
    )
    # Earned up to the last call it saw (a bucket refills lazily, when asked).
    assert bucket.earned == pytest.approx(rate * bucket.stamp, rel=1e-9, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(RATES, CAPACITIES, GAPS)
def test_a_saturated_bucket_admits_exactly_its_rate(
    rate: float, capacity: int, gaps: list[float]
) -> None:
    """A client that takes until it is throttled, often enough that the bucket never fills."""
    bucket = TokenBucket(rate, capacity, now=0.0)
    longest = (capacity - 1) / rate  # any longer pause could overflow an emptied bucket
    now = 0.0
    while bucket.take(now):
        pass
    for gap in gaps:
        now += min(gap, longest)
        while bucket.take(now):
            pass
    assert bucket.wasted == pytest.approx(0.0, abs=1e-9)
    assert capacity + rate * now - 1 - 1e-6 <= bucket.accepted <= capacity + rate * now + 1e-6


@settings(max_examples=200, deadline=None)
@given(RATES, CAPACITIES, st.floats(min_value=0.0, max_value=100.0))
def test_after_a_pause_a_burst_gets_at_most_the_capacity(
    rate: float, capacity: int, pause: float
) -> None:
    bucket = TokenBucket(rate, capacity, now=0.0)
    while bucket.take(0.0):
        pass
    burst = 0
    while bucket.take(pause):
        burst += 1
    assert burst <= capacity
    assert burst == min(capacity, int(rate * pause + 1e-9)) or abs(rate * pause - burst) < 1e-6


@given(RATES, CAPACITIES, st.floats(0.0, 10.0), st.integers(1, 20))
def test_reshaping_keeps_earned_tokens_up_to_the_new_capacity(
    rate: float, capacity: int, later: float, new_capacity: int
) -> None:
    bucket = TokenBucket(rate, capacity, now=0.0)
    bucket.take(0.0)
    bucket.reshape(rate / 2, new_capacity, later)
    assert bucket.tokens <= new_capacity
    assert bucket.tokens == pytest.approx(min(new_capacity, capacity, capacity - 1 + rate * later))
    assert bucket.rate == rate / 2


def test_a_clock_read_out_of_order_adds_no_tokens() -> None:
    bucket = TokenBucket(10.0, 1, now=5.0)
    assert bucket.take(5.0)
    assert not bucket.take(4.0)  # earlier than the last stamp: no time passed
    assert bucket.take(5.1 + 1e-9)


# -- the latency model, over HTTP -------------------------------------------------------------


async def _start(a2i: Any, name: str) -> str:
    try:
        await a2i.start_human_loop(**start_args(name))
    except a2i.exceptions.ThrottlingException:
        return "throttled"
    return "ok"


PACED = {
    "quota": 10.0,
    "burst": 5,
    "processing_ms": 2000.0,
    "processing_jitter_ms": 500.0,
    "network_ms": 5.0,
    "network_jitter_ms": 3.0,
    "seed": 11,
}


@pytest.mark.parametrize("emulator", [PACED], indirect=True)
async def test_evenly_paced_calls_at_90_percent_of_the_quota_are_not_throttled(
    emulator: Any,
) -> None:
    """2 s +/- 0.5 s of processing, spent after admission, does not bunch the arrivals."""
    calls, pace = 27, 1 / 9.0  # 3 s at 90% of 10 calls/s; ~20 calls in flight
    async with client(emulator.url, A2I, max_pool_connections=64, read_timeout=30) as a2i:
        tasks = []
        for i in range(calls):
            tasks.append(asyncio.create_task(_start(a2i, f"paced-{i}")))
            # Paced from the previous send: a stalled client never catches up in a burst.
            await asyncio.sleep(pace)
        outcomes = Counter(await asyncio.gather(*tasks))
    assert outcomes["throttled"] <= 1, outcomes
    bucket = (await get(emulator.url, "/_emulator/quotas"))["us-east-1"]["StartHumanLoop"]
    assert (bucket["accepted"], bucket["throttled"]) == (outcomes["ok"], outcomes["throttled"])
    assert (await get(emulator.url, "/_emulator/stats"))["loops_created"] == outcomes["ok"]


@pytest.mark.parametrize(
    # A token every 5 s: the second call is throttled even after a long stall of the client.
    "emulator", [{"quota": 0.2, "burst": 1, "processing_ms": 1500.0, "network_ms": 50.0}],
    indirect=True,
)  # fmt: skip
async def test_throttled_calls_answer_after_the_network_delay_only(emulator: Any) -> None:
    async def timed(name: str) -> tuple[str, float]:
        started = time.monotonic()
        outcome = await _start(a2i, name)
        return outcome, time.monotonic() - started

    async with client(emulator.url, A2I, max_pool_connections=4, read_timeout=30) as a2i:
        admitted = asyncio.create_task(timed("admitted"))
        await asyncio.sleep(0.3)  # the first call is being processed now
        throttled = await timed("throttled")
        first = await admitted
    assert first[0] == "ok" and first[1] >= 1.5 + 0.1 - 0.02  # processing + two crossings
    assert throttled[0] == "throttled"
    assert 0.1 - 0.02 <= throttled[1] < 1.0  # the network both ways, no processing


@pytest.mark.parametrize("emulator", [{"latency_ms": 60.0, "jitter_ms": 20.0}], indirect=True)
async def test_latency_ms_is_the_old_name_of_the_processing_time(emulator: Any) -> None:
    assert (emulator.config.processing_ms, emulator.config.processing_jitter_ms) == (60.0, 20.0)
    config = await get(emulator.url, "/_emulator/config")
    assert "latency_ms" not in config and config["processing_ms"] == 60.0
    changed = emulator.reconfigure(latency_ms=5.0)  # the old name works at run time too
    assert changed.processing_ms == 5.0
