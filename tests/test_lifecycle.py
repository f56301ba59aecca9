"""After submit, over HTTP: track, results, stop, delete and reconcile a real job's loops.

Each test runs a real submit against the emulator first; the emulated reviewers write each
Completed loop's output.json into the emulator's S3 (moto's backend) where A2I would.
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aioboto3
import anyio
import anyio.to_thread
import orjson
import pytest
import structlog

from a2ibatch import AwsSettings, Item, SubmitSettings, TaskType, submit
from a2ibatch.cli._app import main
from a2ibatch.ledger import LedgerIndex, load_ledger
from a2ibatch.lifecycle import (
    CSV_COLUMNS,
    delete_loops,
    parse_s3_uri,
    reconcile,
    results,
    stop_loops,
    track,
)
from helpers import FLOW, emulator_get, emulator_post, ledger_records


def load_loops(path: Path | str) -> LedgerIndex:
    return load_ledger(path, loops=True)

pytestmark = pytest.mark.anyio



def aws(url: str) -> AwsSettings:
    return AwsSettings(endpoint_url=url, region="us-east-1")


async def submitted(
    url: str, tmp_path: Path, n: int = 8, *, csv: bool = False, rate: float | None = None
) -> SubmitSettings:
    """A real custom job of `n` items (ids a0..), under a name prefix of its own, at most
    `rate` a second (the emulator has no quota: unlimited, a job runs at 1,000 a second).

    With `csv`, the manifest is CSV as a spreadsheet writes it (quoted cells, a header on
    line 1) with a column of the owner's own, which a2ibatch ignores.
    """
    if csv:
        manifest = tmp_path / "manifest.csv"
        rows = ["id,input_content,owner_note\n"]
        rows += [f'a{i},"{{""x"": {i}}}",note {i}\n' for i in range(n)]
        manifest.write_text("".join(rows))
    else:
        manifest = tmp_path / "manifest.jsonl"
        lines = (orjson.dumps({"id": f"a{i}", "input": {"x": i}}) + b"\n" for i in range(n))
        manifest.write_bytes(b"".join(lines))
    s = SubmitSettings(
        task=TaskType.CUSTOM,
        flow_definition_arn=FLOW,
        ledger=tmp_path / "ledger.jsonl",
        manifest=str(manifest),
        name_prefix=f"t{uuid.uuid4().hex[:8]}",
        aws=aws(url),
        preflight=False,
        rate=rate,
    )
    summary = await submit(s)
    assert summary.counts["started"] == n
    return s


def records(path: Path | str, event: str) -> list[dict[str, Any]]:
    return [r for r in ledger_records(path) if r["event"] == event]


def last_status(path: Path | str) -> dict[str, str]:
    return {r["loop_name"]: r["loop_status"] for r in records(path, "loop_status")}


async def service_loops(url: str) -> dict[str, dict[str, Any]]:
    return {loop["name"]: loop for loop in await emulator_get(url, "/_emulator/loops")}


async def outputs(url: str, ledger: Path | str) -> dict[str, dict[str, Any]]:
    """The output.json the emulated reviewers wrote for the ledger's Completed loops, by id
    (looked up here the slow way: a describe and a GetObject per loop)."""
    found: dict[str, dict[str, Any]] = {}
    session = aioboto3.Session()
    async with session.client("sagemaker-a2i-runtime", endpoint_url=url) as a2i, session.client(
        "s3", endpoint_url=url, region_name="us-east-1"
    ) as s3:
        for loop in load_loops(ledger).loops.values():
            described = await a2i.describe_human_loop(HumanLoopName=loop.loop_name)
            uri = described.get("HumanLoopOutput", {}).get("OutputS3Uri")
            if uri is None:
                continue
            bucket, key = parse_s3_uri(uri)
            answer = await s3.get_object(Bucket=bucket, Key=key)
            found[loop.id] = {"uri": uri, **orjson.loads(await answer["Body"].read())}
    return found


async def hide_outputs(url: str, found: dict[str, dict[str, Any]], ids: set[str]) -> Any:
    """Remove the outputs of `ids` from S3; returns a coroutine function that puts them back."""
    session = aioboto3.Session()
    async with session.client("s3", endpoint_url=url, region_name="us-east-1") as s3:
        for item_id in ids:
            bucket, key = parse_s3_uri(found[item_id]["uri"])
            await s3.delete_object(Bucket=bucket, Key=key)

    async def restore() -> None:
        async with session.client("s3", endpoint_url=url, region_name="us-east-1") as s3:
            for item_id in ids:
                output = {k: v for k, v in found[item_id].items() if k != "uri"}
                bucket, key = parse_s3_uri(found[item_id]["uri"])
                await s3.put_object(Bucket=bucket, Key=key, Body=orjson.dumps(output))

    return restore


async def cli(*argv: str) -> int:
    """The real command line, in a thread (it runs its own event loop).

    The command configures logging for the process; that is undone afterwards so that
    later tests do not log into this test's captured (then closed) streams.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code: int = await anyio.to_thread.run_sync(main, list(argv))
        return code
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


# -- track -------------------------------------------------------------------------------


@pytest.mark.parametrize("emulator", [{"complete_after": 0.3}], indirect=True)
async def test_track_with_watch_follows_every_loop_to_completion(
    emulator: Any, tmp_path: Path
) -> None:
    s = await submitted(emulator.url, tmp_path)
    first = await track(s.ledger, aws=aws(emulator.url))
    assert first.rounds == 1 and not first.timed_out
    assert sum(first.counts.values()) == 8

    rounds: list[int] = []

    async def on_round(report: Any) -> None:
        rounds.append(report.pending)

    report = await track(
        s.ledger, aws=aws(emulator.url), watch=True, interval=0.1, timeout=10, on_round=on_round
    )
    assert report.done and report.exit_code == 0
    assert report.counts == {"Completed": 8}
    assert rounds[-1] == 0
    service = await service_loops(emulator.url)
    statuses = records(s.ledger, "loop_status")
    for record in statuses:
        assert record["human_loop_arn"] == service[record["loop_name"]]["arn"]
    completed = [r for r in statuses if r["loop_status"] == "Completed"]
    assert len(completed) == 8  # one record per change, never repeated
    for record in completed:  # what results needs to find the output: the creation time
        created = datetime.fromisoformat(record["creation_time"].replace("Z", "+00:00"))
        assert created.timestamp() == pytest.approx(service[record["loop_name"]]["created_at"])
    assert report.described == 0 and report.pages <= report.rounds  # pages, not loops
    # Everything is final now: another track lists nothing and records nothing.
    again = await track(s.ledger, aws=aws(emulator.url), watch=True, interval=0.1)
    assert again.calls == 0 and again.changed == 0 and again.done


async def test_track_gives_up_at_the_timeout_and_records_only_changes(
    emulator: Any, tmp_path: Path
) -> None:
    s = await submitted(emulator.url, tmp_path, 5)  # loops never complete
    report = await track(s.ledger, aws=aws(emulator.url), watch=True, interval=0.05, timeout=1.0)
    assert report.timed_out and report.exit_code == 1
    assert report.rounds >= 3 and report.pending == 5
    assert report.counts == {"InProgress": 5}
    assert len(records(s.ledger, "loop_status")) == 5  # InProgress recorded once per loop


@pytest.mark.parametrize("emulator", [{"complete_after": 1.0}], indirect=True)
async def test_track_watches_beside_a_running_submit_of_the_same_ledger(
    emulator: Any, tmp_path: Path
) -> None:
    s = await submitted(emulator.url, tmp_path, 4)
    more = b"".join(orjson.dumps({"id": f"a{i}", "input": {"x": i}}) + b"\n" for i in range(10))
    Path(s.manifest).write_bytes(more)
    reports: list[Any] = []

    async def watch() -> None:
        reports.append(
            await track(s.ledger, aws=aws(emulator.url), watch=True, interval=0.1, timeout=20)
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await anyio.sleep(0.05)
        second = await submit(s)  # appends outcomes while track appends loop_status
    assert second.counts["started"] == 6
    assert reports[0].done and reports[0].counts == {"Completed": 10}
    assert len(load_loops(s.ledger).loops) == 10
    assert all(line.startswith(b'{"event":"') for line in Path(s.ledger).read_bytes().splitlines())


@pytest.mark.parametrize("emulator", [{"seed": 7}], indirect=True)
async def test_track_rides_out_throttling_and_server_errors(emulator: Any, tmp_path: Path) -> None:
    s = await submitted(emulator.url, tmp_path, 30)
    await emulator_post(emulator.url, "/_emulator/config", {"quota": 20, "fault_rate": 0.2})
    report = await track(s.ledger, aws=aws(emulator.url))
    assert report.errors == {} and report.counts == {"InProgress": 30}
    assert report.pages == 1 and report.described == 0  # 30 loops: one page
    assert len(records(s.ledger, "loop_status")) == 30


async def test_track_records_a_loop_deleted_behind_its_back_as_final(
    emulator: Any, tmp_path: Path
) -> None:
    s = await submitted(emulator.url, tmp_path, 3)
    name = next(iter(load_loops(s.ledger).loops))
    async with aioboto3.Session().client("sagemaker-a2i-runtime", endpoint_url=emulator.url) as a2i:
        await a2i.stop_human_loop(HumanLoopName=name)
        await anyio.sleep(0.6)  # Stopping -> Stopped
        await a2i.delete_human_loop(HumanLoopName=name)
    report = await track(s.ledger, aws=aws(emulator.url))
    assert report.counts == {"Deleted": 1, "InProgress": 2}
    assert last_status(s.ledger)[name] == "Deleted"


# -- stop and delete ---------------------------------------------------------------------


@pytest.mark.parametrize("emulator", [{"stopping_seconds": 1.5}], indirect=True)
async def test_stop_stops_in_progress_loops_which_go_stopping_then_stopped(
    emulator: Any, tmp_path: Path
) -> None:
    s = await submitted(emulator.url, tmp_path, 6)
    report = await stop_loops(s.ledger, aws=aws(emulator.url))
    assert (report.acted, report.errors, report.candidates) == (6, {}, 6)
    actions = records(s.ledger, "loop_action")
    assert {(a["action"], a["result"]) for a in actions} == {("stop", "stopped")}
    assert {a["loop_name"] for a in actions} == set(load_loops(s.ledger).loops)

    stopping = await track(s.ledger, aws=aws(emulator.url))
    assert stopping.counts == {"Stopping": 6}
    stopped = await track(s.ledger, aws=aws(emulator.url), watch=True, interval=0.1, timeout=5)
    assert stopped.counts == {"Stopped": 6} and stopped.done
    assert {loop["status"] for loop in (await service_loops(emulator.url)).values()} == {"Stopped"}
    # Nothing is in progress any more: a second stop has nothing to do.
    assert (await stop_loops(s.ledger, aws=aws(emulator.url))).candidates == 0


@pytest.mark.parametrize("emulator", [{"stopping_seconds": 0.0}], indirect=True)
async def test_delete_deletes_only_finished_loops_of_the_ledger(
    emulator: Any, tmp_path: Path
) -> None:
    s = await submitted(emulator.url, tmp_path, 6)
    names = sorted(load_loops(s.ledger).loops)
    async with aioboto3.Session().client("sagemaker-a2i-runtime", endpoint_url=emulator.url) as a2i:
        for name in names[:2]:
            await a2i.stop_human_loop(HumanLoopName=name)
        # A stranger's loop on the same flow definition is never touched.
        await a2i.start_human_loop(
            HumanLoopName="someone-else",
            FlowDefinitionArn=FLOW,
            HumanLoopInput={"InputContent": '{"other": 1}'},
        )
        await a2i.stop_human_loop(HumanLoopName="someone-else")
    report = await delete_loops(s.ledger, aws=aws(emulator.url))
    assert report.acted == 2
    assert report.skipped == {"InProgress": 4}
    service = await service_loops(emulator.url)
    assert {n for n, loop in service.items() if loop["deleted"]} == set(names[:2])
    assert not service["someone-else"]["deleted"]
    actions = records(s.ledger, "loop_action")
    assert sorted(a["loop_name"] for a in actions) == names[:2]
    assert all(a["action"] == "delete" and a["result"] == "deleted" for a in actions)
    assert all(last_status(s.ledger)[n] == "Deleted" for n in names[:2])
    # Deleted loops are final and no longer candidates.
    again = await delete_loops(s.ledger, aws=aws(emulator.url))
    assert again.acted == 0 and again.candidates == 4
    assert (await track(s.ledger, aws=aws(emulator.url))).counts == {
        "Deleted": 2,
        "InProgress": 4,
    }


async def test_stop_and_delete_commands_need_a_confirmation(
    emulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = await submitted(emulator.url, tmp_path, 3)
    # Tests run without a terminal: without --yes nothing can be confirmed.
    code = await cli("stop", str(s.ledger), "--endpoint-url", emulator.url)
    assert code == 2
    assert "--yes" in capsys.readouterr().err
    assert records(s.ledger, "loop_action") == []
    assert {x["status"] for x in (await service_loops(emulator.url)).values()} == {"InProgress"}

    code = await cli("stop", str(s.ledger), "--yes", "--endpoint-url", emulator.url, "--json")
    assert code == 0
    assert orjson.loads(capsys.readouterr().out)["acted"] == 3
    await anyio.sleep(0.6)
    code = await cli("delete", str(s.ledger), "--yes", "--endpoint-url", emulator.url)
    assert code == 0
    # Off a terminal, stdout carries only JSON, with or without --json.
    assert orjson.loads(capsys.readouterr().out)["acted"] == 3


# -- reconcile ---------------------------------------------------------------------------


@pytest.mark.parametrize("emulator", [{"complete_after": 0.1}], indirect=True)
async def test_reconcile_finds_loops_the_ledger_lacks_and_arns_the_service_lacks(
    emulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = await submitted(emulator.url, tmp_path, 5)
    clean = await reconcile(s.ledger, aws=aws(emulator.url))
    assert clean.ok and clean.exit_code == 0
    assert (clean.service_loops, clean.ledger_loops) == (5, 5)

    table = load_loops(s.ledger)
    gone = sorted(table.loops.values(), key=lambda loop: loop.loop_name)[0]
    stray = f"{s.name_prefix}-stray"
    await anyio.sleep(0.2)  # every loop Completed
    async with aioboto3.Session().client("sagemaker-a2i-runtime", endpoint_url=emulator.url) as a2i:
        await a2i.start_human_loop(
            HumanLoopName=stray,
            FlowDefinitionArn=FLOW,
            HumanLoopInput={"InputContent": '{"lost": true}'},
        )
        await a2i.start_human_loop(  # not this job's prefix: not this job's business
            HumanLoopName="other-job-loop",
            FlowDefinitionArn=FLOW,
            HumanLoopInput={"InputContent": '{"other": true}'},
        )
        await a2i.delete_human_loop(HumanLoopName=gone.loop_name)

    report = await reconcile(s.ledger, aws=aws(emulator.url))
    assert not report.ok and report.exit_code == 1
    assert [x.loop_name for x in report.missing_from_ledger] == [stray]
    assert not report.missing_from_ledger[0].pending_intent
    assert [(x.id, x.human_loop_arn) for x in report.unknown_to_service] == [
        (gone.id, gone.human_loop_arn)
    ]

    code = await cli("reconcile", str(s.ledger), "--endpoint-url", emulator.url, "--json")
    assert code == 1
    data = orjson.loads(capsys.readouterr().out)
    assert data["missing_from_ledger"][0]["loop_name"] == stray
    assert data["unknown_to_service"][0]["human_loop_arn"] == gone.human_loop_arn


@pytest.mark.parametrize("emulator", [{"complete_after": 0.05}], indirect=True)
async def test_loops_deleted_with_the_delete_command_are_expected_gone(
    emulator: Any, tmp_path: Path
) -> None:
    s = await submitted(emulator.url, tmp_path, 4)
    await anyio.sleep(0.1)
    assert (await delete_loops(s.ledger, aws=aws(emulator.url))).acted == 4
    report = await reconcile(s.ledger, aws=aws(emulator.url))
    assert report.ok and report.service_loops == 0


# -- results -----------------------------------------------------------------------------


@pytest.mark.parametrize("emulator", [{"complete_after": 0.2}], indirect=True)
async def test_results_writes_one_jsonl_row_per_completed_loop(
    emulator: Any, tmp_path: Path
) -> None:
    s = await submitted(emulator.url, tmp_path)
    await track(s.ledger, aws=aws(emulator.url), watch=True, interval=0.1, timeout=10)
    written = await outputs(emulator.url, s.ledger)
    before = await emulator_get(emulator.url, "/_emulator/stats")
    out = tmp_path / "answers.jsonl"
    report = await results(s.ledger, out, aws=aws(emulator.url))
    assert (report.written, report.completed, report.missing, report.errors) == (8, 8, 0, {})
    # Found where A2I documents them: no describe per loop, one DescribeFlowDefinition.
    after = await emulator_get(emulator.url, "/_emulator/stats")
    assert after["calls"].get("DescribeHumanLoop") == before["calls"].get("DescribeHumanLoop")
    assert report.lookups == 1
    rows = {r["id"]: r for r in map(orjson.loads, out.read_bytes().splitlines())}
    assert set(rows) == {f"a{i}" for i in range(8)}
    table = load_loops(s.ledger)
    by_id = {loop.id: loop for loop in table.loops.values()}
    for item_id, row in rows.items():
        output = written[item_id]
        assert row["loop_name"] == by_id[item_id].loop_name
        assert row["human_loop_arn"] == by_id[item_id].human_loop_arn
        assert row["answers"] == [a["answerContent"] for a in output["humanAnswers"]]
        assert row["worker_ids"] == [a["workerId"] for a in output["humanAnswers"]]
        assert row["submitted_at"] == max(a["submissionTime"] for a in output["humanAnswers"])
        assert row["input"] == {"x": int(item_id[1:])}
        assert row["output_s3_uri"] == output["uri"]


@pytest.mark.parametrize("emulator", [{"complete_after": 0.2}], indirect=True)
async def test_results_as_csv_through_the_command(
    emulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = await submitted(emulator.url, tmp_path, 4)
    code = await cli(
        "track", str(s.ledger), "--watch", "--interval", "0.1", "--timeout", "10",
        "--endpoint-url", emulator.url, "--json",
    )  # fmt: skip
    assert code == 0
    assert orjson.loads(capsys.readouterr().out)["loops"] == {"Completed": 4}
    written = await outputs(emulator.url, s.ledger)
    out = tmp_path / "answers.csv"
    args = ["results", str(s.ledger), "--out", str(out)]  # CSV: from the name
    assert await cli(*args, "--endpoint-url", emulator.url) == 0
    assert orjson.loads(capsys.readouterr().out)["written"] == 4
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert sorted(r["id"] for r in rows) == ["a0", "a1", "a2", "a3"]
    for row in rows:
        output = written[row["id"]]
        assert orjson.loads(row["answers"]) == [a["answerContent"] for a in output["humanAnswers"]]
        workers = [a["workerId"] for a in output["humanAnswers"]]
        assert orjson.loads(row["worker_ids"]) == workers
        assert orjson.loads(row["input"]) == {"x": int(row["id"][1:])}
    # Resumable: a second run finds every id in the file already.
    assert await cli(*args, "--endpoint-url", emulator.url) == 0
    assert orjson.loads(capsys.readouterr().out)["written"] == 0
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == 4


@pytest.mark.parametrize("emulator", [{"complete_after": 0.2}], indirect=True)
async def test_results_resume_after_missing_outputs_and_a_torn_row(
    emulator: Any, tmp_path: Path
) -> None:
    s = await submitted(emulator.url, tmp_path)
    await track(s.ledger, aws=aws(emulator.url), watch=True, interval=0.1, timeout=10)
    restore = await hide_outputs(
        emulator.url, await outputs(emulator.url, s.ledger), {"a5", "a6", "a7"}
    )
    out = tmp_path / "answers.jsonl"
    partial = await results(s.ledger, out, aws=aws(emulator.url))
    assert (partial.written, partial.missing, partial.exit_code) == (5, 3, 1)
    assert partial.missing_codes == {"NoSuchKey": 3}

    # A crash mid-row leaves a torn last line: that row is redone, the rest is kept.
    data = out.read_bytes()
    torn_id = orjson.loads(data.splitlines()[-1])["id"]
    out.write_bytes(data[: data.rfind(b"\n", 0, len(data) - 1) + 1] + data.splitlines()[-1][:20])
    await restore()
    rest = await results(s.ledger, out, aws=aws(emulator.url))
    assert (rest.written, rest.already_present, rest.missing, rest.exit_code) == (4, 4, 0, 0)
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(f"a{i}" for i in range(8))
    assert torn_id in {r["id"] for r in rows[-4:]}


@pytest.mark.parametrize("emulator", [{"complete_after": 0.2}], indirect=True)
@pytest.mark.parametrize("csv", [False, True], ids=["jsonl", "csv"])
async def test_results_join_the_manifest(emulator: Any, tmp_path: Path, csv: bool) -> None:
    s = await submitted(emulator.url, tmp_path, 3, csv=csv)
    await track(s.ledger, aws=aws(emulator.url), watch=True, interval=0.1, timeout=10)
    out = tmp_path / "answers.jsonl"
    report = await results(s.ledger, out, aws=aws(emulator.url), manifest=s.manifest)
    assert report.written == 3
    first_line = 2 if csv else 1  # a CSV header is line 1
    for row in map(orjson.loads, out.read_bytes().splitlines()):
        n = int(row["id"][1:])
        assert row["manifest_line"] == n + first_line
        assert row["manifest_input"] == {"x": n}


async def test_lifecycle_records_keep_the_ledger_resumable(emulator: Any, tmp_path: Path) -> None:
    s = await submitted(emulator.url, tmp_path, 4)
    await track(s.ledger, aws=aws(emulator.url))
    await stop_loops(s.ledger, aws=aws(emulator.url))
    again = await submit(s)  # the ledger still reads back for a rerun
    assert again.counts["skipped"] == 4 and again.counts["calls"] == 0
    for line in Path(s.ledger).read_bytes().splitlines():
        assert line.startswith(b'{"event":"')


# -- pages and the cost model -----------------------------------------------------------------


async def strangers(url: str, prefix: str, n: int) -> None:
    """`n` loops of another job on the same flow definition, started with plain calls."""
    async with aioboto3.Session().client("sagemaker-a2i-runtime", endpoint_url=url) as a2i:
        numbers = iter(range(n))

        async def worker() -> None:
            for i in numbers:
                await a2i.start_human_loop(
                    HumanLoopName=f"{prefix}-{i}",
                    FlowDefinitionArn=FLOW,
                    HumanLoopInput={"InputContent": orjson.dumps({"s": i}).decode()},
                )

        async with anyio.create_task_group() as tg:
            for _ in range(16):
                tg.start_soon(worker)


async def described_statuses(url: str, names: list[str]) -> dict[str, str]:
    async with aioboto3.Session().client("sagemaker-a2i-runtime", endpoint_url=url) as a2i:
        answers = [await a2i.describe_human_loop(HumanLoopName=n) for n in names]
    return {n: answer["HumanLoopStatus"] for n, answer in zip(names, answers, strict=True)}


async def test_a_job_between_two_others_is_tracked_in_pages_with_the_statuses_describe_gives(
    emulator: Any, tmp_path: Path
) -> None:
    # The job's 600 loops over 3 s, as at an account's quota: its windows are its own
    # seconds, its first and last shared with the strangers.
    await strangers(emulator.url, "before", 400)
    s = await submitted(emulator.url, tmp_path, 600, rate=200.0)
    await strangers(emulator.url, "after", 400)
    before = await emulator_get(emulator.url, "/_emulator/stats")
    report = await track(s.ledger, aws=aws(emulator.url))
    after = await emulator_get(emulator.url, "/_emulator/stats")
    calls = sum(after["calls"].values()) - sum(before["calls"].values())
    assert report.calls == calls and calls / 600 <= 0.02  # pages, not a call per loop
    assert report.described == 0
    loops = load_loops(s.ledger).loops
    truth = await described_statuses(emulator.url, sorted(loops))
    assert {name: loop.status for name, loop in loops.items()} == truth


async def test_a_window_crowded_with_strangers_is_left_for_describes(
    emulator: Any, tmp_path: Path
) -> None:
    """Five loops of the job, three thousand of another, five more of the job: listing the
    whole window would cost thirty pages; describing the last five costs five calls."""
    ready = anyio.Event()

    async def items() -> Any:
        for i in range(10):
            if i == 5:
                await strangers(emulator.url, "crowd", 3000)
                ready.set()
            yield Item(id=f"c{i}", line=i + 1, input_content=orjson.dumps({"c": i}).decode())

    s = SubmitSettings(
        task=TaskType.CUSTOM,
        flow_definition_arn=FLOW,
        ledger=tmp_path / "ledger.jsonl",
        name_prefix="crowded",
        aws=aws(emulator.url),
        preflight=False,
        concurrency=1,
    )
    assert (await submit(s, items=items())).counts["started"] == 10
    report = await track(s.ledger, aws=aws(emulator.url))
    assert report.counts == {"InProgress": 10}
    assert report.pages <= 3 and report.described <= 5 and report.calls <= 8
