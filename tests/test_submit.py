"""The submitter end to end, over HTTP against the emulator, for every task type."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from structlog.testing import capture_logs

from a2ibatch import (
    Item,
    Job,
    JobAborted,
    LedgerError,
    Status,
    TaskType,
    dry_run,
    stream,
    submit,
)
from helpers import (
    FLOW,
    TASKS,
    emulator_get,
    final_outcomes,
    ledger_records,
    settings,
    write_manifest,
)

pytestmark = pytest.mark.anyio


def loops_by_name(loops: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {loop["name"]: loop for loop in loops}


@pytest.mark.parametrize("task", TASKS)
async def test_every_item_gets_one_outcome_matching_the_service(
    task: TaskType, emulator: Any, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", task, 120)
    s = settings(task, emulator.url, tmp_path, manifest)
    summary = await submit(s)

    outcomes = final_outcomes(s.ledger)
    assert len(outcomes) == 120
    loops = loops_by_name(await emulator_get(emulator.url, "/_emulator/loops"))
    started = [o for o in outcomes.values() if o["status"] == "started"]
    assert {o["loop_name"] for o in started} == set(loops)
    for o in started:
        assert o["human_loop_arn"] == loops[o["loop_name"]]["arn"]
        assert o["attempts"] >= 1
    if task is TaskType.CUSTOM:
        assert len(started) == 120
    else:
        # Activation is decided by the service; both kinds occur and are recorded.
        not_activated = [o for o in outcomes.values() if o["status"] == "not_activated"]
        assert started and not_activated
        assert len(started) + len(not_activated) == 120
        assert all(o["human_loop_arn"] is None for o in not_activated)
        assert all(
            o["activation"] is None or "reasons" in o["activation"] for o in outcomes.values()
        )
        sidecar = Path(f"{s.ledger}.responses.jsonl")
        responses = [orjson.loads(x) for x in sidecar.read_bytes().splitlines()]
        assert {r["id"] for r in responses} == set(outcomes)
        assert stat.S_IMODE(os.stat(sidecar).st_mode) == 0o600
    assert summary.exit_code == 0
    assert summary.counts["started"] == len(started)
    assert stat.S_IMODE(os.stat(s.ledger).st_mode) == 0o600
    events = [r["event"] for r in ledger_records(s.ledger)]
    assert events[0] == "job" and events[-1] == "summary"
    # Every call names a2ibatch in its User-Agent (what CloudTrail's userAgent shows).
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["user_agents"] == {"a2ibatch": sum(stats["calls"].values())}


@pytest.mark.parametrize("task", TASKS)
async def test_a_rerun_of_a_finished_ledger_makes_no_calls(
    task: TaskType, emulator: Any, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", task, 40)
    s = settings(task, emulator.url, tmp_path, manifest)
    await submit(s)
    before = await emulator_get(emulator.url, "/_emulator/stats")
    again = await submit(s)
    after = await emulator_get(emulator.url, "/_emulator/stats")
    assert after["calls"] == before["calls"]
    assert again.counts["skipped"] == 40
    assert again.counts["calls"] == 0


async def test_a_rerun_of_a_half_finished_ledger_sends_only_the_rest(
    emulator: Any, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 60)
    s = settings("custom", emulator.url, tmp_path, manifest, concurrency=4)
    seen = 0
    async with stream(s) as outcomes:
        async for _ in outcomes:
            seen += 1
            if seen == 25:
                break  # leaving the block cancels the job
    done = {i for i, o in final_outcomes(s.ledger).items() if o["status"] == "started"}
    assert len(done) >= 25
    summary = await submit(s)
    assert summary.counts["skipped"] == len(done)
    # Only the rest is sent; items whose call was cut off are found, not sent twice.
    assert summary.counts["started"] == 60 - len(done)
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 60
    assert stats["inputs_with_multiple_loops"] == 0
    assert all(o["status"] == "started" for o in final_outcomes(s.ledger).values())


async def test_bad_lines_are_recorded_and_good_lines_go_ahead(
    emulator: Any, tmp_path: Path
) -> None:
    secret = "4111-1111-1111-1111"
    extra = [
        b'{"id": "broken", "input": ',
        b"[1, 2, 3]",
        b'{"input": {"x": 1}}',
        orjson.dumps({"id": "item-00001", "input": {"card": secret}}),  # duplicate id
        orjson.dumps({"id": "named", "input": {"a": 1}, "name": "Bad_Name"}),
        b'{"id": "latin", "input": {"t": "caf\xe9"}}',
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 10, extra=extra)
    s = settings("custom", emulator.url, tmp_path, manifest)
    with capture_logs() as logs:
        summary = await submit(s)
    outcomes = [r for r in ledger_records(s.ledger) if r.get("event") == "outcome"]
    invalid = [o for o in outcomes if o["status"] == "invalid"]
    assert sorted(o["line"] for o in invalid) == [11, 12, 13, 14, 15, 16]
    assert all(o["error"]["message"] for o in invalid)
    assert sum(o["status"] == "started" for o in outcomes) == 10
    assert summary.exit_code == 1
    text = orjson.dumps([outcomes, logs]).decode()
    assert secret not in text


async def test_dry_run_sends_and_writes_nothing(emulator: Any, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 30, extra=[b"nonsense"])
    s = settings("custom", emulator.url, tmp_path, manifest)
    report = await dry_run(s)
    assert report.items == 30 and report.invalid == 1
    assert report.problems[0].line == 31
    assert len(report.sample_names) == 5
    assert not Path(s.ledger).exists()
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert sum(stats["calls"].values()) == 0


async def test_a_ledger_of_another_job_is_refused(emulator: Any, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 3)
    await submit(settings("custom", emulator.url, tmp_path, manifest))
    for change in (
        {"name_prefix": "other"},
        {"flow_definition_arn": FLOW.replace("reviews", "elsewhere")},
    ):
        with pytest.raises(LedgerError):
            await submit(settings("custom", emulator.url, tmp_path, manifest, **change))
    tex = write_manifest(tmp_path / "t.jsonl", "textract", 3)
    with pytest.raises(LedgerError):
        await submit(settings("textract", emulator.url, tmp_path, tex))


@pytest.mark.parametrize(
    "emulator", [{"fault_rate": 0.2, "lost_response_rate": 0.1}], indirect=True
)
@pytest.mark.parametrize("reuse", ["conflict", "same-arn"])
async def test_faults_and_lost_answers_never_double_a_loop(
    emulator: Any, tmp_path: Path, reuse: str
) -> None:
    from helpers import emulator_post

    await emulator_post(emulator.url, "/_emulator/config", {"same_input_reuse": reuse})
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 150)
    s = settings("custom", emulator.url, tmp_path, manifest, max_attempts=12)
    summary = await submit(s)
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["faults"] > 0 and stats["lost_responses"] > 0
    assert stats["inputs_with_multiple_loops"] == 0
    assert stats["loops_created"] == 150
    outcomes = final_outcomes(s.ledger)
    assert all(o["status"] == "started" for o in outcomes.values())
    loops = loops_by_name(await emulator_get(emulator.url, "/_emulator/loops"))
    assert {o["human_loop_arn"] for o in outcomes.values()} == {x["arn"] for x in loops.values()}
    assert summary.exit_code == 0


@pytest.mark.parametrize(
    "emulator", [{"lost_response_rate": 0.3, "activation_rate": 1.0}], indirect=True
)
@pytest.mark.parametrize("task", [TaskType.TEXTRACT, TaskType.REKOGNITION])
async def test_builtin_tasks_describe_before_resending(
    emulator: Any, tmp_path: Path, task: TaskType
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", task, 60)
    s = settings(task, emulator.url, tmp_path, manifest, max_attempts=12)
    await submit(s)
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["lost_responses"] > 0
    assert stats["inputs_with_multiple_loops"] == 0
    outcomes = final_outcomes(s.ledger)
    assert all(o["status"] == "started" for o in outcomes.values())
    recovered = [o for o in outcomes.values() if o["recovered"]]
    assert len(recovered) == stats["lost_responses"]
    # A lost answer is found with DescribeHumanLoop, never by analysing the document again.
    assert (
        stats["calls"].get(
            "AnalyzeDocument" if task is TaskType.TEXTRACT else "DetectModerationLabels"
        )
        == 60 + stats["throttled"] + stats["faults"]
    )


@pytest.mark.parametrize("emulator", [{"latency_ms": 20.0}], indirect=True)
async def test_items_are_read_only_as_workers_free_up(emulator: Any, tmp_path: Path) -> None:
    """Backpressure: with `concurrency` workers, an entry is read only when a worker is
    free, so at most `concurrency` items are ever read and not yet decided."""
    read = decided = 0
    ahead: list[int] = []

    def items() -> Any:
        nonlocal read
        for i in range(150):
            ahead.append(read - decided)  # items in flight when the next one is read
            read += 1
            yield Item(id=f"i{i}", line=i + 1, input_content=f'{{"n": {i}}}')

    async def count(outcome: Any) -> None:
        nonlocal decided
        decided += 1

    s = settings("custom", emulator.url, tmp_path, tmp_path / "unused.jsonl", concurrency=4)
    summary = await Job(s, items=items()).run(on_outcome=count)
    assert summary.counts["started"] == decided == 150
    assert 1 <= max(ahead) <= 3  # the reading worker is one of the 4


@pytest.mark.parametrize("emulator", [{"quota": 50.0, "latency_ms": 10.0}], indirect=True)
@pytest.mark.parametrize(("rate", "most_throttled"), [(None, 0.15), (50.0, 0.05)])
async def test_the_rate_finds_the_quota_without_hammering_it(
    emulator: Any, tmp_path: Path, rate: float | None, most_throttled: float
) -> None:
    """Over HTTP, against a 50/s quota: untold, slow start finds it for a few throttled
    calls (an unpaced client has most of its calls throttled here); told, the pace stays
    on it.  Every item still gets exactly one loop."""
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 150)
    s = settings("custom", emulator.url, tmp_path, manifest, rate=rate)
    summary = await submit(s)
    assert summary.counts["started"] == 150
    assert summary.counts["throttled"] <= most_throttled * summary.counts["calls"]
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["throttled"] == summary.counts["throttled"]
    assert stats["loops_created"] == 150 and stats["inputs_with_multiple_loops"] == 0


async def test_explicit_names_and_library_items(emulator: Any, tmp_path: Path) -> None:
    items = [
        Item(id=f"x{i}", line=i + 1, input_content=f'{{"n": {i}}}', name=f"chosen-{i}")
        for i in range(5)
    ]
    items.append(Item(id="dup", line=6, input_content="{}", name="chosen-1"))
    s = settings("custom", emulator.url, tmp_path, tmp_path / "unused.jsonl")
    summary = await submit(s, items=items)
    outcomes = final_outcomes(s.ledger)
    assert outcomes["x3"]["loop_name"] == "chosen-3"
    assert outcomes["dup"]["status"] == "invalid"
    assert summary.counts["started"] == 5


async def test_an_explicit_name_taken_by_someone_else_is_recorded_with_its_facts(
    emulator: Any, tmp_path: Path
) -> None:
    """Never `failed` for a loop that exists: the loop's facts are recorded as its own state,
    and a rerun does not knock on the same door again."""
    import aioboto3

    async with aioboto3.Session().client("sagemaker-a2i-runtime", endpoint_url=emulator.url) as a2i:
        await a2i.start_human_loop(
            HumanLoopName="taken",
            FlowDefinitionArn=FLOW,
            HumanLoopInput={"InputContent": '{"other": 1}'},
        )
    s = settings("custom", emulator.url, tmp_path, tmp_path / "unused.jsonl")
    summary = await submit(
        s, items=[Item(id="a", line=1, input_content='{"mine": 1}', name="taken")]
    )
    outcome = final_outcomes(s.ledger)["a"]
    assert outcome["status"] == "name_taken"
    assert outcome["error"]["code"] == "NameInUse"
    assert "choose another name" in outcome["error"]["message"]
    facts = outcome["loop"]
    assert facts["flow_definition_arn"] == FLOW and facts["status"] == "InProgress"
    assert facts["creation_time"] and facts["human_loop_arn"].endswith("/taken")
    assert summary.exit_code == 1 and summary.counts["name_taken"] == 1
    calls = (await emulator_get(emulator.url, "/_emulator/stats"))["calls"]
    again = await submit(
        s, items=[Item(id="a", line=1, input_content='{"mine": 1}', name="taken")]
    )
    assert again.counts["skipped_name_taken"] == 1 and again.counts["calls"] == 0
    assert (await emulator_get(emulator.url, "/_emulator/stats"))["calls"] == calls


async def test_a_second_review_with_the_same_prefix_recovers_instead_of_doubling(
    emulator: Any, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 20)
    await submit(settings("custom", emulator.url, tmp_path, manifest))
    other = tmp_path / "second"
    other.mkdir()
    again = await submit(settings("custom", emulator.url, other, manifest))
    assert again.counts["recovered"] == 20
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 20
    fresh = await submit(
        settings(
            "custom", emulator.url, other, manifest, name_prefix="second", ledger=other / "l2.jsonl"
        )
    )
    assert fresh.counts["started"] == 20 and fresh.counts["recovered"] == 0
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 40


async def test_fatal_errors_stop_the_job_early(emulator: Any, tmp_path: Path) -> None:
    import aioboto3

    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 200)
    s = settings("custom", emulator.url, tmp_path, manifest)
    session = aioboto3.Session(
        aws_access_key_id="denied", aws_secret_access_key="x", region_name="us-east-1"
    )
    with pytest.raises(JobAborted, match="access denied") as caught:
        await submit(s, session=session)
    assert caught.value.summary.exit_code == 3
    outcomes = final_outcomes(s.ledger)
    assert len(outcomes) < 50  # stopped early instead of failing every item
    missing = settings(
        "custom",
        emulator.url,
        tmp_path,
        manifest,
        flow_definition_arn=FLOW.replace("reviews", "missing-reviews"),
        ledger=tmp_path / "l2.jsonl",
    )
    with pytest.raises(JobAborted, match="flow definition"):
        await submit(missing)


async def test_max_failures_stops_the_job(emulator: Any, tmp_path: Path) -> None:
    # Items a library caller hands over unchecked: the service refuses each (not JSON).
    items = [Item(id=f"i{i}", line=i + 1, input_content="not json") for i in range(50)]
    s = settings(
        "custom", emulator.url, tmp_path, tmp_path / "u.jsonl", max_failures=5, concurrency=2
    )
    with pytest.raises(JobAborted, match="reaching max_failures 5") as caught:
        await submit(s, items=items)
    assert "--" not in str(caught.value)  # a library caller reads parameters, not flags
    assert caught.value.code == "MaxFailures" and caught.value.summary is not None
    assert sum(o["status"] == "failed" for o in final_outcomes(s.ledger).values()) < 10


@pytest.mark.parametrize(
    "emulator", [{"max_in_progress": 10, "complete_after": 0.3}], indirect=True
)
async def test_full_in_progress_quota_pauses_and_resumes(emulator: Any, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 40)
    s = settings("custom", emulator.url, tmp_path, manifest)
    summary = await submit(s)
    assert summary.counts["started"] == 40
    assert summary.counts["paused_seconds"] > 0
    assert summary.counts["failed"] == 0


@pytest.mark.parametrize("emulator", [{"max_in_progress": 3}], indirect=True)
async def test_quota_that_never_frees_gives_up_with_exit_3(emulator: Any, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 10)
    s = settings("custom", emulator.url, tmp_path, manifest, quota_wait_limit=1.0)
    with pytest.raises(JobAborted, match="quota"):
        await submit(s)
    outcomes = final_outcomes(s.ledger)
    assert sum(o["status"] == "started" for o in outcomes.values()) == 3


async def test_cancelling_a_job_leaves_a_resumable_ledger(emulator: Any, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 300)
    s = settings("custom", emulator.url, tmp_path, manifest, rate=100.0)
    with anyio.move_on_after(0.8):
        await submit(s)
    partial = final_outcomes(s.ledger)
    assert 0 < len(partial) < 300
    summary = await submit(s)
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 300 and stats["inputs_with_multiple_loops"] == 0
    assert summary.exit_code == 0


async def test_two_jobs_side_by_side_in_one_process(emulator: Any, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    ma = write_manifest(a / "m.jsonl", "custom", 50)
    mb = write_manifest(b / "m.jsonl", "textract", 50)
    results: dict[str, Any] = {}

    async def run(key: str, s: Any) -> None:
        results[key] = await submit(s)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "a", settings("custom", emulator.url, a, ma))
        tg.start_soon(run, "b", settings("textract", emulator.url, b, mb))
    assert results["a"].counts["started"] == 50
    assert results["b"].counts["started"] + results["b"].counts["not_activated"] == 50


async def test_streamed_outcomes_arrive_as_decided(emulator: Any, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 30)
    s = settings("custom", emulator.url, tmp_path, manifest)
    got = []
    async with stream(s) as outcomes:
        async for outcome in outcomes:
            got.append(outcome)
    assert sorted(str(o.id) for o in got) == [f"item-{i:05d}" for i in range(30)]
    assert all(o.status is Status.STARTED and o.human_loop_arn for o in got)


async def test_stream_raises_the_jobs_own_error(emulator: Any, tmp_path: Path) -> None:
    import aioboto3

    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 20)
    s = settings("custom", emulator.url, tmp_path, manifest)
    session = aioboto3.Session(
        aws_access_key_id="denied", aws_secret_access_key="x", region_name="us-east-1"
    )
    with pytest.raises(JobAborted, match="access denied"):
        async with stream(s, session=session) as outcomes:
            async for _ in outcomes:
                pass


async def test_an_unreachable_endpoint_stops_the_job(tmp_path: Path) -> None:
    from a2ibatch import RetryPolicy

    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 50)
    s = settings("custom", "http://127.0.0.1:9", tmp_path, manifest, concurrency=2)
    with pytest.raises(JobAborted, match="cannot connect") as caught:
        await submit(s, retry_policy=RetryPolicy(max_attempts=2, initial_wait=0.01))
    assert caught.value.summary.counts["failed"] < 10
