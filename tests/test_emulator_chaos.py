"""The emulator's misbehaviour on demand: rate quotas, faults, lost and slow answers, latency,
the in-progress cap, and a boto3 client with adaptive retries against the quota.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from test_emulator import A2I, FLOW, client, error_of, get, post, start_args

pytestmark = pytest.mark.anyio


async def run_calls(
    n: int, concurrency: int, call: Callable[[int], Awaitable[str]]
) -> Counter[str]:
    """Make calls 0..n-1 with `concurrency` in flight; count what each returned."""
    outcomes: Counter[str] = Counter()
    numbers = iter(range(n))

    async def worker() -> None:
        for i in numbers:
            outcomes[await call(i)] += 1

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return outcomes


async def saturate(a2i: Any, seconds: float, prefix: str, workers: int = 8) -> tuple[int, float]:
    """Offer far more than the quota for `seconds`; accepted calls and the elapsed time."""
    accepted = 0
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal accepted
        while time.monotonic() < deadline:
            try:
                await a2i.start_human_loop(**start_args(f"{prefix}-{next(counter)}"))
                accepted += 1
            except a2i.exceptions.ThrottlingException as exc:
                assert error_of(exc) == ("ThrottlingException", 429)
                await asyncio.sleep(0.002)

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    return accepted, time.monotonic() - started


# -- rate quota -----------------------------------------------------------------------------


async def _bucket(url: str) -> dict[str, Any]:
    bucket: dict[str, Any] = (await get(url, "/_emulator/quotas"))["us-east-1"]["StartHumanLoop"]
    return bucket


def _check_phase(before: dict[str, Any], after: dict[str, Any], accepted: int) -> None:
    """The quota over one phase, judged by what the server's bucket saw.

    The client shares this process's event loop, so it can stall and offer less than the
    quota for a while; the server then counts the tokens no call came for as ``wasted``.
    So: never more than the tokens held plus those earned, and every token earned and not
    wasted was spent (within one), however the client fared.
    """
    assert after["accepted"] - before["accepted"] == accepted  # every call met the bucket
    earned = after["earned"] - before["earned"]
    wasted = after["wasted"] - before["wasted"]
    assert earned == pytest.approx(after["rate"] * (after["seconds"] - before["seconds"]))
    assert accepted <= before["tokens"] + earned + 1e-6
    assert accepted >= before["tokens"] + earned - wasted - after["tokens"] - 1e-6


async def _quota_run(emulator: Any, seconds: float) -> None:
    quota, burst = emulator.config.quota, emulator.config.burst
    async with client(emulator.url, A2I, max_pool_connections=16) as a2i:
        start = {"tokens": float(burst), "accepted": 0, "earned": 0.0, "wasted": 0.0}
        accepted, elapsed = await saturate(a2i, seconds, "full")
        full = await _bucket(emulator.url)
        _check_phase({**start, "seconds": 0.0}, full, accepted)
        assert full["rate"] == quota
        assert accepted <= burst + quota * elapsed + 1  # the client's clock agrees

        # Halve the quota mid-run, as the benchmarks do.
        status, _ = await post(emulator.url, "/_emulator/config", {"quota": quota / 2})
        assert status == 200
        halved = await _bucket(emulator.url)
        assert halved["rate"] == quota / 2
        half, elapsed_half = await saturate(a2i, seconds / 2, "half")
        _check_phase(halved, await _bucket(emulator.url), half)
        assert half <= burst + quota / 2 * elapsed_half + 1

    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == accepted + half  # a throttled call has no effect
    assert stats["throttled"] > 0
    histogram = (await get(emulator.url, "/_emulator/accepted"))["seconds"]
    assert sum(row["accepted"] for row in histogram) == accepted + half
    assert sum(row["throttled"] for row in histogram) == stats["throttled"]
    assert max(row["accepted"] for row in histogram) <= quota + burst + 1


@pytest.mark.parametrize("emulator", [{"quota": 100.0, "burst": 5}], indirect=True)
async def test_the_rate_quota_holds_by_the_servers_clock(emulator: Any) -> None:
    await _quota_run(emulator, seconds=3.0)


@pytest.mark.slow
@pytest.mark.parametrize("emulator", [{"quota": 100.0, "burst": 5}], indirect=True)
async def test_the_rate_quota_holds_by_the_servers_clock_over_10_seconds(emulator: Any) -> None:
    await _quota_run(emulator, seconds=10.0)


@pytest.mark.parametrize("emulator", [{"quota": 0.5, "burst": 2}], indirect=True)
async def test_each_operation_has_its_own_bucket(emulator: Any) -> None:
    """ListHumanLoops and DescribeHumanLoop included: each meets its own bucket."""
    async with client(emulator.url, A2I) as a2i:
        await a2i.start_human_loop(**start_args("one"))
        await a2i.start_human_loop(**start_args("two"))
        with pytest.raises(a2i.exceptions.ThrottlingException):
            await a2i.start_human_loop(**start_args("three"))
        await a2i.describe_human_loop(HumanLoopName="one")  # another operation: not throttled
        await a2i.list_human_loops(FlowDefinitionArn=FLOW)
        await a2i.list_human_loops(FlowDefinitionArn=FLOW)
        with pytest.raises(a2i.exceptions.ThrottlingException):
            await a2i.list_human_loops(FlowDefinitionArn=FLOW)
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["throttled"] == 2 and stats["loops_created"] == 2
    assert stats["calls"]["StartHumanLoop"] == 3
    buckets = (await get(emulator.url, "/_emulator/quotas"))["us-east-1"]
    assert {op: (b["accepted"], b["throttled"]) for op, b in buckets.items()} == {
        "StartHumanLoop": (2, 1),
        "DescribeHumanLoop": (1, 0),
        "ListHumanLoops": (2, 1),
    }


# -- faults, lost and slow answers ----------------------------------------------------------


@pytest.mark.parametrize("emulator", [{"fault_rate": 0.2, "seed": 7}], indirect=True)
async def test_the_fault_rate_holds_and_faults_have_no_effect(emulator: Any) -> None:
    async with client(emulator.url, A2I, max_pool_connections=16) as a2i:

        async def call(i: int) -> str:
            try:
                await a2i.start_human_loop(**start_args(f"f-{i}"))
            except a2i.exceptions.InternalServerException as exc:
                assert error_of(exc) == ("InternalServerException", 500)
                return "fault"
            return "ok"

        outcomes = await run_calls(400, 16, call)
    stats = await get(emulator.url, "/_emulator/stats")
    assert outcomes["fault"] == stats["faults"]
    assert 60 <= outcomes["fault"] <= 100  # 20% of 400, give or take 4 standard deviations
    assert stats["loops_created"] == outcomes["ok"] == 400 - outcomes["fault"]


@pytest.mark.parametrize("emulator", [{"lost_response_rate": 0.2, "seed": 7}], indirect=True)
async def test_lost_answers_break_the_connection_after_the_loop_exists(emulator: Any) -> None:
    lost: list[int] = []
    async with client(emulator.url, A2I, max_pool_connections=16) as a2i:

        async def call(i: int) -> str:
            try:
                await a2i.start_human_loop(**start_args(f"l-{i}"))
            except botocore.exceptions.ConnectionClosedError:
                lost.append(i)
                return "lost"
            return "ok"

        with anyio.fail_after(30):  # a lost answer is an error, never a hang
            outcomes = await run_calls(300, 16, call)
        for i in lost[:5]:
            found = await a2i.describe_human_loop(HumanLoopName=f"l-{i}")
            assert found["HumanLoopStatus"] == "InProgress"
    stats = await get(emulator.url, "/_emulator/stats")
    assert outcomes["lost"] == stats["lost_responses"]
    assert 40 <= outcomes["lost"] <= 80  # 20% of 300, give or take 4 standard deviations
    assert stats["loops_created"] == 300


@pytest.mark.parametrize("emulator", [{"slow_rate": 1.0, "slow_ms": 400.0}], indirect=True)
async def test_slow_answers_outlast_a_short_read_timeout(emulator: Any) -> None:
    async with client(emulator.url, A2I, read_timeout=0.15) as impatient:
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            await impatient.start_human_loop(**start_args("slow-1"))
    async with client(emulator.url, A2I, read_timeout=5) as patient:
        found = await patient.describe_human_loop(HumanLoopName="slow-1")  # it did start
        assert found["HumanLoopStatus"] == "InProgress"
        started = time.monotonic()
        await patient.start_human_loop(**start_args("slow-2"))
        assert time.monotonic() - started >= 0.38
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["slow_responses"] == 2 and stats["loops_created"] == 2


@pytest.mark.parametrize(
    "emulator", [{"processing_ms": 60.0, "processing_jitter_ms": 20.0}], indirect=True
)
async def test_latency_and_jitter(emulator: Any) -> None:
    async with client(emulator.url, A2I) as a2i:
        await a2i.start_human_loop(**start_args("timed"))
        times = []
        for _ in range(5):
            started = time.monotonic()
            await a2i.describe_human_loop(HumanLoopName="timed")
            times.append(time.monotonic() - started)
    assert min(times) >= 0.038
    assert max(times) < 0.5


@pytest.mark.parametrize("emulator", [{"max_in_progress": 2, "complete_after": 0.3}], indirect=True)
async def test_completed_loops_free_the_in_progress_cap(emulator: Any) -> None:
    async with client(emulator.url, A2I) as a2i:
        await a2i.start_human_loop(**start_args("cap-1"))
        await a2i.start_human_loop(**start_args("cap-2"))
        with pytest.raises(a2i.exceptions.ServiceQuotaExceededException):
            await a2i.start_human_loop(**start_args("cap-3"))
        assert (await get(emulator.url, "/_emulator/stats"))["in_progress"] == 2
        await asyncio.sleep(0.35)
        await a2i.start_human_loop(**start_args("cap-3"))
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["in_progress"] == 1 and stats["quota_refusals"] == 1


# -- boto3 with adaptive retries ------------------------------------------------------------


@pytest.mark.parametrize("emulator", [{"quota": 50.0, "burst": 5}], indirect=True)
async def test_boto3_adaptive_retries_get_every_call_through_the_quota(emulator: Any) -> None:
    config = Config(retries={"mode": "adaptive", "max_attempts": 40}, max_pool_connections=8)

    def submit_all() -> list[str]:
        a2i = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client(A2I, endpoint_url=emulator.url, config=config)
        with ThreadPoolExecutor(8) as pool:
            answers = pool.map(
                lambda i: a2i.start_human_loop(**start_args(f"adaptive-{i}"))["HumanLoopArn"],
                range(40),
            )
            return list(answers)

    with anyio.fail_after(45):
        arns = await anyio.to_thread.run_sync(submit_all)
    assert len(set(arns)) == 40
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 40 and stats["inputs_with_multiple_loops"] == 0
    assert stats["throttled"] > 0  # the quota was met, and retried through
