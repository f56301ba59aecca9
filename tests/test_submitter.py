"""The long-lived Submitter, over HTTP against the emulator: one loop per id across concurrent
callers, duplicates in flight, restarts, cancellations and closing; backpressure; stats."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from a2ibatch import (
    ConfigError,
    Item,
    JobAborted,
    LedgerError,
    Outcome,
    RetryPolicy,
    S3Ref,
    SourceError,
    Status,
    SubmitSettings,
    Submitter,
    SubmitterStats,
    TaskType,
)
from a2ibatch.ledger import RESUME_SUFFIX, LedgerFile, load_resume
from helpers import TASKS, emulator_get, final_outcomes, ledger_records, line_for, settings

pytestmark = pytest.mark.anyio

START = {
    TaskType.CUSTOM: "StartHumanLoop",
    TaskType.TEXTRACT: "AnalyzeDocument",
    TaskType.REKOGNITION: "DetectModerationLabels",
}
ALWAYS = {"activation_rate": 1.0, "s3": False}


def item_for(task: TaskType, i: int, **fields: Any) -> Item:
    """The `Item` of `helpers.line_for(task, i)`."""
    line = line_for(task, i)
    if task is TaskType.CUSTOM:
        return Item(id=line["id"], input_content=orjson.dumps(line["input"]).decode(), **fields)
    uri = line.get("document") or line["image"]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return Item(id=line["id"], s3=S3Ref(bucket, key), **fields)


def submitter_settings(
    task: TaskType, url: str, tmp_path: Path, **overrides: Any
) -> SubmitSettings:
    return settings(task, url, tmp_path, tmp_path / "no-manifest.jsonl", **overrides)


def start_calls(emulator: Any, task: TaskType) -> int:
    return int(emulator.stats()["calls"].get(START[task], 0))


def all_calls(emulator: Any) -> int:
    return sum(emulator.stats()["calls"].values())


@pytest.mark.parametrize("emulator", [{**ALWAYS, "processing_ms": 5}], indirect=True)
@pytest.mark.parametrize("task", TASKS)
async def test_200_concurrent_submits_over_50_ids_start_50_loops(
    task: TaskType, emulator: Any, tmp_path: Path
) -> None:
    order = [i % 50 for i in range(200)]
    random.Random(7).shuffle(order)
    seen: dict[str, list[Outcome]] = defaultdict(list)

    async with Submitter(submitter_settings(task, emulator.url, tmp_path)) as submitter:

        async def one(i: int) -> None:
            outcome = await submitter.submit(item_for(task, i))
            seen[item_for(task, i).id].append(outcome)

        async with anyio.create_task_group() as tg:
            for i in order:
                tg.start_soon(one, i)
        stats = submitter.stats()

    assert len(seen) == 50 and all(len(v) == 4 for v in seen.values())
    for outcomes in seen.values():
        assert {o.status for o in outcomes} == {Status.STARTED}
        assert len({o.human_loop_arn for o in outcomes}) == 1  # every caller, one loop
    emu = emulator.stats()
    assert emu["loops_created"] == 50 and emu["inputs_with_multiple_loops"] == 0
    assert start_calls(emulator, task) == 50  # one call per id, none for the 150 repeats
    assert stats.counts["started"] == 50 and stats.counts["calls"] == 50
    assert stats.shared + stats.counts["skipped"] == 150
    records = ledger_records(tmp_path / "ledger.jsonl")
    assert sum(r["event"] == "intent" for r in records) == 50
    assert sum(r["event"] == "outcome" for r in records) == 50
    assert records[0]["event"] == "job" and records[-1]["event"] == "summary"


@pytest.mark.parametrize("task", TASKS)
async def test_a_restart_answers_from_the_ledger_without_any_call(
    task: TaskType, emulator: Any, tmp_path: Path
) -> None:
    s = submitter_settings(task, emulator.url, tmp_path)
    items = [item_for(task, i) for i in range(30)]
    async with Submitter(s) as submitter:
        first = [await submitter.submit(item) for item in items]
    calls = all_calls(emulator)
    assert {o.status for o in first} <= {Status.STARTED, Status.NOT_ACTIVATED}
    # The close saved a resume point that describes the whole ledger: the restart reads
    # that, not every record.
    point = Path(str(s.ledger) + RESUME_SUFFIX).read_bytes()
    covered = orjson.loads(point.split(b"\n", 1)[0])["ledger"]["size"]
    assert covered == Path(s.ledger).stat().st_size
    ledger = LedgerFile.open(s.ledger, write=False)
    assert ledger is not None
    try:
        assert load_resume(ledger) is not None  # and it still describes the ledger
    finally:
        ledger.close()

    async with Submitter(s) as restarted:
        again = [await restarted.submit(item) for item in items]
        stats = restarted.stats()
    assert all_calls(emulator) == calls  # not one call: every answer came from the ledger
    assert stats.counts["skipped"] == 30 and stats.counts["calls"] == 0
    for before, after in zip(first, again, strict=True):
        assert (after.status, after.loop_name, after.human_loop_arn) == (
            before.status,
            before.loop_name,
            before.human_loop_arn,  # rebuilt from the name and the flow definition's ARN
        )
        assert after.attempts == 0 and after.at == ""
    assert emulator.stats()["inputs_with_multiple_loops"] == 0


@pytest.mark.parametrize("recent", [0, 1024])
async def test_an_id_decided_in_this_process_is_answered_without_a_call(
    recent: int, emulator: Any, tmp_path: Path
) -> None:
    """New outcomes go into the index at once: with no cache at all, the index answers."""
    s = submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path)
    async with Submitter(s, recent=recent) as submitter:
        first = await submitter.submit(item_for(TaskType.CUSTOM, 1))
        second = await submitter.submit(item_for(TaskType.CUSTOM, 1))
        assert submitter.stats().recent == min(recent, 1)
    assert start_calls(emulator, TaskType.CUSTOM) == 1
    assert second.human_loop_arn == first.human_loop_arn and second.status is Status.STARTED
    assert (second == first) is bool(recent)  # the cache keeps the whole outcome


async def test_failed_and_name_taken_ids_follow_the_plan_rule(
    emulator: Any, tmp_path: Path
) -> None:
    s = submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path)
    refused = item_for(TaskType.CUSTOM, 1, content_classifiers=("NotAClassifier",))
    holder = item_for(TaskType.CUSTOM, 2, name="held-by-another")
    taker = item_for(TaskType.CUSTOM, 3, name="held-by-another")
    async with Submitter(s) as submitter:
        failed = await submitter.submit(refused)
        assert failed.status is Status.FAILED and failed.error is not None
        assert (await submitter.submit(holder)).status is Status.STARTED
        taken = await submitter.submit(taker)
        assert taken.status is Status.NAME_TAKEN
        assert await submitter.submit(refused) == failed  # known: no second call
    calls = all_calls(emulator)

    fixed = item_for(TaskType.CUSTOM, 1)
    async with Submitter(s) as restarted:  # without retry_failed: answered, not sent
        assert (await restarted.submit(fixed)).status is Status.FAILED
        assert (await restarted.submit(taker)).status is Status.NAME_TAKEN
        assert restarted.stats().counts["skipped_failed"] == 1
    assert all_calls(emulator) == calls

    retrying = submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path, retry_failed=True)
    async with Submitter(retrying) as again:
        assert (await again.submit(fixed)).status is Status.STARTED
    assert final_outcomes(tmp_path / "ledger.jsonl")["item-00001"]["status"] == "started"


@pytest.mark.parametrize("task", TASKS)
async def test_items_that_cannot_be_sent_are_invalid_outcomes(
    task: TaskType, emulator: Any, tmp_path: Path
) -> None:
    wrong = (
        Item(id="a", s3=S3Ref("scans", "a.png"))
        if task is TaskType.CUSTOM
        else Item(id="a", input_content="{}")
    )
    bad = [wrong, Item(id="", input_content="{}"), Item(id="b", input_content="not json")]
    async with Submitter(submitter_settings(task, emulator.url, tmp_path)) as submitter:
        outcomes = [await submitter.submit(item) for item in bad]
        with pytest.raises(TypeError):
            await submitter.submit({"id": "x"})  # type: ignore[arg-type]
    assert {o.status for o in outcomes} == {Status.INVALID}
    assert all(o.error is not None and "not json" not in o.error.message for o in outcomes)
    assert all_calls(emulator) == 0
    assert final_outcomes(tmp_path / "ledger.jsonl")["a"]["status"] == "invalid"


@pytest.mark.parametrize("emulator", [{"processing_ms": 400, "s3": False}], indirect=True)
async def test_closing_drains_the_calls_in_flight(emulator: Any, tmp_path: Path) -> None:
    s = submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path, concurrency=8)
    results: list[Outcome] = []
    async with anyio.create_task_group() as tg:
        async with Submitter(s) as submitter:

            async def one(i: int) -> None:
                results.append(await submitter.submit(item_for(TaskType.CUSTOM, i)))

            for i in range(8):
                tg.start_soon(one, i)
            while submitter.stats().in_flight < 8:
                await anyio.sleep(0.01)
            closing = time.monotonic()
        assert time.monotonic() - closing > 0.2  # the close waited for the answers
    assert [o.status for o in results] == [Status.STARTED] * 8
    outcomes = final_outcomes(tmp_path / "ledger.jsonl")
    assert len(outcomes) == 8 and ledger_records(tmp_path / "ledger.jsonl")[-1]["started"] == 8
    with pytest.raises(JobAborted, match="not open"):
        await submitter.submit(item_for(TaskType.CUSTOM, 9))


@pytest.mark.parametrize("emulator", [{"processing_ms": 1500, "s3": False}], indirect=True)
async def test_past_the_grace_period_calls_are_checked_on_the_next_start(
    emulator: Any, tmp_path: Path
) -> None:
    s = submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path, grace_period=0.1)
    errors: list[JobAborted] = []
    async with anyio.create_task_group() as tg, Submitter(s) as submitter:

        async def one(i: int) -> None:
            try:
                await submitter.submit(item_for(TaskType.CUSTOM, i))
            except JobAborted as exc:
                errors.append(exc)

        for i in range(3):
            tg.start_soon(one, i)
        while submitter.stats().in_flight < 3:
            await anyio.sleep(0.01)
    assert len(errors) == 3 and all(e.code == "SubmitterClosed" for e in errors)
    assert final_outcomes(tmp_path / "ledger.jsonl") == {}  # intents only: pending
    await anyio.sleep(1.6)  # the emulator finishes the calls it had taken

    emulator.reconfigure(processing_ms=0)
    async with Submitter(s) as restarted:
        outcomes = [await restarted.submit(item_for(TaskType.CUSTOM, i)) for i in range(3)]
    assert [o.status for o in outcomes] == [Status.STARTED] * 3
    assert all(o.recovered for o in outcomes)  # found under the same name, not started again
    assert emulator.stats()["loops_created"] == 3


@pytest.mark.parametrize("emulator", [{"processing_ms": 300, "s3": False}], indirect=True)
async def test_a_cancelled_caller_still_gets_its_call_recorded(
    emulator: Any, tmp_path: Path
) -> None:
    s = submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path)
    item = item_for(TaskType.CUSTOM, 1)
    async with Submitter(s) as submitter:
        with anyio.move_on_after(0.1) as scope:
            await submitter.submit(item)
        assert scope.cancelled_caught
        while submitter.stats().counts["started"] < 1:  # the send went on without its caller
            await anyio.sleep(0.02)
        again = await submitter.submit(item)
    assert again.status is Status.STARTED and start_calls(emulator, TaskType.CUSTOM) == 1
    assert final_outcomes(tmp_path / "ledger.jsonl")[item.id]["status"] == "started"


@pytest.mark.parametrize("emulator", [{"processing_ms": 300, "s3": False}], indirect=True)
async def test_a_caller_cancelled_while_waiting_for_a_slot_leaves_nobody_behind(
    emulator: Any, tmp_path: Path
) -> None:
    s = submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path, concurrency=1)
    busy, waiting = item_for(TaskType.CUSTOM, 1), item_for(TaskType.CUSTOM, 2)
    got: list[Outcome] = []
    async with Submitter(s) as submitter, anyio.create_task_group() as tg:

        async def joined() -> None:
            got.append(await submitter.submit(waiting))

        tg.start_soon(submitter.submit, busy)
        await anyio.sleep(0.05)
        with anyio.move_on_after(0.1):  # the first caller of `waiting`, gone before its slot
            async with anyio.create_task_group() as inner:
                inner.start_soon(submitter.submit, waiting)
                await anyio.sleep(0.02)
                tg.start_soon(joined)  # a second caller of the same id joins it
                await anyio.sleep(1)
    assert [o.status for o in got] == [Status.STARTED]
    assert start_calls(emulator, TaskType.CUSTOM) == 2


@pytest.fixture
def calls_in_flight() -> Iterator[tuple[Any, list[int]]]:
    """An aioboto3 session that counts StartHumanLoop calls in flight: [now, most]."""
    import aioboto3

    session = aioboto3.Session()
    counts = [0, 0]

    def sent(**_: Any) -> None:
        counts[0] += 1
        counts[1] = max(counts[1], counts[0])

    def answered(**_: Any) -> None:
        counts[0] -= 1

    session.events.register("before-call.sagemaker-a2i-runtime.StartHumanLoop", sent)
    for event in ("after-call", "after-call-error"):
        session.events.register(f"{event}.sagemaker-a2i-runtime.StartHumanLoop", answered)
    yield session, counts


@pytest.mark.parametrize("emulator", [{"processing_ms": 100, "s3": False}], indirect=True)
async def test_the_in_flight_cap_bounds_the_calls_and_callers_wait(
    emulator: Any, tmp_path: Path, calls_in_flight: tuple[Any, list[int]]
) -> None:
    session, counts = calls_in_flight
    s = submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path, concurrency=4, rate=1000)
    most_waiting = 0
    async with Submitter(s, session=session) as submitter, anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(submitter.submit, item_for(TaskType.CUSTOM, i))
        while submitter.stats().counts["started"] < 40:
            stats = submitter.stats()
            assert stats.in_flight <= 4
            most_waiting = max(most_waiting, stats.waiting)
            await anyio.sleep(0.01)
    assert counts[1] == 4  # never more than 4 calls at once, and the cap was used
    assert most_waiting >= 30  # the other callers waited (no queue of sends)
    histogram = await emulator_get(emulator.url, "/_emulator/accepted")
    per_second = [row["accepted"] for row in histogram["seconds"]]
    assert max(per_second) <= 4 / 0.1 + 4  # Little's law: at most cap / latency a second


async def test_submit_many_yields_every_outcome(emulator: Any, tmp_path: Path) -> None:
    s = submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path)
    items = [item_for(TaskType.CUSTOM, i % 20) for i in range(60)]

    async def generated() -> AsyncIterator[Item]:
        for item in items:
            yield item

    async with Submitter(s) as submitter:
        from_list = [o async for o in submitter.submit_many(items)]
        from_async = [o async for o in submitter.submit_many(generated())]
        async for _ in submitter.submit_many(item_for(TaskType.CUSTOM, i) for i in range(20, 99)):
            break  # leaving early: what was sent is still recorded
        with pytest.raises(SourceError) as info:
            async for _ in submitter.submit_many(_raising()):
                pass
        assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert len(from_list) == len(from_async) == 60
    assert {o.id for o in from_list} == {f"item-{i:05d}" for i in range(20)}
    assert {o.status for o in from_list + from_async} == {Status.STARTED}
    outcomes = final_outcomes(tmp_path / "ledger.jsonl")
    assert emulator.stats()["loops_created"] == len(outcomes) >= 21
    assert emulator.stats()["inputs_with_multiple_loops"] == 0


def _raising() -> Iterator[Item]:
    yield item_for(TaskType.CUSTOM, 500)
    raise ZeroDivisionError


async def test_stats_are_plain_figures_for_a_health_endpoint(emulator: Any, tmp_path: Path) -> None:
    s = submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path, concurrency=7)
    submitter = Submitter(s)
    assert submitter.stats().uptime == 0.0 and not submitter.open
    async with submitter:
        await submitter.submit(item_for(TaskType.CUSTOM, 1))
        stats = submitter.stats()
    assert isinstance(stats, SubmitterStats)
    flat = orjson.loads(orjson.dumps(stats.as_dict()))
    assert flat["started"] == 1 and flat["calls"] == 1 and flat["concurrency"] == 7
    assert flat["in_flight"] == 0 and flat["ledger_ids"] == 1 and flat["rate"] > 0
    assert 0 < flat["index_bytes"] <= 12 * 1024 and flat["uptime"] > 0
    with pytest.raises(AttributeError):
        stats.in_flight = 3  # type: ignore[misc]


async def test_one_submitter_per_ledger_and_one_opening(emulator: Any, tmp_path: Path) -> None:
    s = submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path)
    async with Submitter(s) as submitter:
        with pytest.raises(LedgerError):
            async with Submitter(s):
                pass
        with pytest.raises(ConfigError, match="opens once"):
            await submitter.__aenter__()
    with pytest.raises(JobAborted, match="not open"):
        await Submitter(s).submit(item_for(TaskType.CUSTOM, 1))
    for location in ("s3://b/p/", f"{tmp_path}/"):  # one local file, not a location
        with pytest.raises(ConfigError, match="ledger"):
            Submitter(submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path, ledger=location))
    other = submitter_settings(TaskType.TEXTRACT, emulator.url, tmp_path)
    with pytest.raises(LedgerError, match="another job"):
        async with Submitter(other):
            pass


async def test_an_unreachable_endpoint_is_raised_not_recorded(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9"  # nothing listens there
    s = submitter_settings(TaskType.CUSTOM, url, tmp_path, outage_limit=0.5)
    async with Submitter(s, retry_policy=RetryPolicy(max_attempts=2)) as submitter:
        with pytest.raises(JobAborted, match="cannot connect"):
            await submitter.submit(item_for(TaskType.CUSTOM, 1))
        assert submitter.open  # a condition of the endpoint, not of the Submitter
    records = ledger_records(tmp_path / "ledger.jsonl")
    assert [r["event"] for r in records] == ["job", "intent", "summary"]
