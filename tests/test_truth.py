"""The ledger tells the truth: no stale reads, no `failed` for a loop that exists, outages
are the job's, every path keeps one loop per id, and hostile text stays text."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from a2ibatch import (
    Item,
    JobAborted,
    LedgerError,
    SourceError,
    Status,
    TaskType,
    dry_run,
    status,
    submit,
)
from a2ibatch import Job as _Job
from a2ibatch.lifecycle import CSV_COLUMNS, neutralise, unneutralise
from helpers import FLOW, emulator_get, emulator_post, final_outcomes, settings, write_manifest

pytestmark = pytest.mark.anyio


async def calls(url: str, operation: str) -> int:
    stats = await emulator_get(url, "/_emulator/stats")
    return int(stats["calls"].get(operation, 0))


# -- races and unverifiable answers ----------------------------------------------------------


@pytest.mark.parametrize("emulator", [{"quota": 20.0}], indirect=True)
async def test_a_second_submit_is_refused_before_it_reads_or_checks_anything(
    emulator: Any, tmp_path: Path
) -> None:
    """The lock is taken before the ledger is read: a second job can never run on a read
    made before the first one finished."""
    manifest = write_manifest(tmp_path / "m.jsonl", TaskType.CUSTOM, 60)
    first = settings(TaskType.CUSTOM, emulator.url, tmp_path, manifest)
    second = settings(TaskType.CUSTOM, emulator.url, tmp_path, manifest, preflight=True)
    job = _Job(first)
    async with anyio.create_task_group() as tg:
        tg.start_soon(job.run)
        with anyio.fail_after(20):
            while not job.running:
                await anyio.sleep(0.01)
        checks = await calls(emulator.url, "DescribeFlowDefinition")
        with pytest.raises(LedgerError, match="in use by another process"):
            await submit(second)
        assert await calls(emulator.url, "DescribeFlowDefinition") == checks  # no preflight
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 60 and stats["inputs_with_multiple_loops"] == 0


@pytest.mark.parametrize(
    "emulator",
    [{"lost_response_rate": 1.0, "quotas": {"DescribeHumanLoop": 0.001}, "burst": 1}],
    indirect=True,
)
async def test_an_unverifiable_item_is_pending_and_a_plain_rerun_checks_it(
    emulator: Any, tmp_path: Path
) -> None:
    """Every answer is lost and DescribeHumanLoop is throttled for good: nothing can say
    whether the loops exist.  The items are `unverified`, not `failed`, and a rerun without
    retry_failed finds them."""
    manifest = write_manifest(tmp_path / "m.jsonl", TaskType.CUSTOM, 8)
    s = settings(TaskType.CUSTOM, emulator.url, tmp_path, manifest, max_attempts=2)
    summary = await submit(s)
    outcomes = final_outcomes(s.ledger)
    unverified = sum(o["status"] == "unverified" for o in outcomes.values())
    assert unverified >= 7  # the describe quota's one-call burst may verify one
    assert "failed" not in {o["status"] for o in outcomes.values()}
    assert summary.exit_code == 1 and summary.counts["unverified"] == unverified
    report = await dry_run(s)
    assert report.to_send == report.to_check == unverified  # pending, not skipped
    await emulator_post(
        emulator.url, "/_emulator/config", {"lost_response_rate": 0.0, "quotas": {}}
    )
    rerun = await submit(s)  # no retry_failed
    assert rerun.counts["recovered"] == unverified and rerun.exit_code == 0
    assert {o["status"] for o in final_outcomes(s.ledger).values()} == {"started"}
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 8 and stats["inputs_with_multiple_loops"] == 0


async def test_repeated_ids_from_a_library_source_get_one_loop_each(
    emulator: Any, tmp_path: Path
) -> None:
    items = [Item(id=f"id-{i % 40}", line=i + 1, input_content=f'{{"n": {i}}}') for i in range(60)]
    s = settings(TaskType.CUSTOM, emulator.url, tmp_path, tmp_path / "unused.jsonl")
    summary = await submit(s, items=items)
    assert summary.counts["started"] == 40 and summary.counts["invalid"] == 20
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 40
    invalid = [
        r
        for r in map(orjson.loads, Path(s.ledger).read_bytes().splitlines())
        if r.get("status") == "invalid"
    ]
    assert len(invalid) == 20
    reasons = {r["error"]["message"].rsplit(" ", 1)[0] for r in invalid}
    assert reasons == {"duplicate id; first seen on line"}
    # Items without line numbers are told apart all the same.
    bare = [Item(id="same", input_content="{}"), Item(id="same", input_content="{}")]
    other = settings(TaskType.CUSTOM, emulator.url, tmp_path / "x", tmp_path / "u.jsonl")
    (tmp_path / "x").mkdir()
    assert (await submit(other, items=bare)).counts["invalid"] == 1


async def test_a_source_that_raises_surfaces_as_the_callers_error_with_the_ledger_intact(
    emulator: Any, tmp_path: Path
) -> None:
    class Broken(RuntimeError):
        pass

    def items() -> Any:
        for i in range(10):
            yield Item(id=f"i{i}", line=i + 1, input_content="{}")
        raise Broken("the queue went away")

    s = settings(TaskType.CUSTOM, emulator.url, tmp_path, tmp_path / "unused.jsonl")
    with pytest.raises(SourceError) as caught:
        await submit(s, items=items())
    assert isinstance(caught.value.__cause__, Broken)
    assert caught.value.summary is not None and caught.value.summary.counts["started"] == 10
    assert len(final_outcomes(s.ledger)) == 10


async def test_an_endpoint_that_restarts_mid_run_pauses_the_job_instead_of_failing_items(
    tmp_path: Path,
) -> None:
    """The emulator goes away for a second and comes back on the same port: the job waits
    and probes, no item spends its attempts on the outage, and every item starts."""
    from a2ibatch.emulator import EmulatorConfig, run_subprocess

    manifest = write_manifest(tmp_path / "m.jsonl", TaskType.CUSTOM, 300)
    with run_subprocess(EmulatorConfig(quota=60.0)) as url:
        port = int(url.rsplit(":", 1)[1])
    config = EmulatorConfig(quota=60.0, port=port)
    url = f"http://127.0.0.1:{port}"
    s = settings(TaskType.CUSTOM, url, tmp_path, manifest, max_attempts=3)
    job = _Job(s)
    result: list[Any] = []

    async def run() -> None:
        result.append(await job.run())

    async with anyio.create_task_group() as tg:
        server = run_subprocess(config)
        server.__enter__()
        try:
            tg.start_soon(run)
            with anyio.fail_after(30):
                while job.counters.started < 50:
                    await anyio.sleep(0.01)
        finally:
            server.__exit__(None, None, None)  # the endpoint goes away mid-run
        await anyio.sleep(1.5)
        assert job.counters.failed == 0
        with run_subprocess(config):  # and comes back on the same port
            with anyio.fail_after(60):
                while not result:
                    await anyio.sleep(0.05)
    summary = result[0]
    assert summary.counts["failed"] == 0 and summary.counts["unverified"] == 0
    assert summary.counts["unreachable_seconds"] > 0.5
    assert len(final_outcomes(s.ledger)) == 300


async def test_an_endpoint_never_reached_gives_up_soon_with_exit_3(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", TaskType.CUSTOM, 5)
    s = settings(TaskType.CUSTOM, "http://127.0.0.1:9", tmp_path, manifest)
    with anyio.fail_after(60), pytest.raises(JobAborted) as caught:
        await submit(s)
    assert caught.value.code == "EndpointUnreachable" and caught.value.exit_code == 3
    assert "endpoint_url" in str(caught.value)
    assert all(o["status"] != "failed" for o in final_outcomes(s.ledger).values())


# -- hostile text and files ---------------------------------------------------------------


HOSTILE = "evil[/]\x1b[2J\x07\u202e-id"


async def test_hostile_ids_and_paths_reach_the_terminal_as_escaped_text(
    emulator: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "d[/]ir"
    folder.mkdir(parents=True)
    manifest = folder / "m.jsonl"
    manifest.write_bytes(
        orjson.dumps({"id": HOSTILE, "input": {"a": 1}})
        + b"\n"
        + orjson.dumps({"id": HOSTILE, "input": {"a": 2}})
        + b"\n"
    )
    ledger = folder / "l[b]\x1b[1m.jsonl"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    base = [
        sys.executable, "-m", "a2ibatch", "submit", str(manifest), "--task", "custom",
        "--flow-definition-arn", FLOW, "--ledger", str(ledger), "--endpoint-url", emulator.url,
        "--region", "us-east-1", "--no-preflight", "--no-progress",
    ]  # fmt: skip
    for extra in (["--dry-run"], [], ["--dry-run"]):
        result = await anyio.run_process([*base, *extra], env=env, check=False)
        text = (result.stdout + result.stderr).decode()
        assert result.returncode == 1, text
        assert "Traceback" not in text and "\x1b" not in text and "\x07" not in text
    listed = await anyio.run_process(
        [sys.executable, "-m", "a2ibatch", "status", str(ledger), "--list", "invalid",
         "--list", "started"],
        env=env, check=False,
    )  # fmt: skip
    text = (listed.stdout + listed.stderr).decode()
    assert listed.returncode == 0, text
    assert "\x1b" not in text and "\u202e" not in text and "MarkupError" not in text
    rows = [orjson.loads(line) for line in listed.stdout.splitlines()[1:]]
    assert {row["status"] for row in rows} == {"started", "invalid"}
    assert all(row["id"] == HOSTILE for row in rows)  # JSON keeps the id exactly


async def test_a_fifo_manifest_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "manifest.jsonl"
    os.mkfifo(fifo)
    s = settings(TaskType.CUSTOM, "http://127.0.0.1:9", tmp_path, fifo)
    with anyio.fail_after(10), pytest.raises(Exception, match="not a regular file"):
        await dry_run(s)


async def test_sigterm_stops_a_job_waiting_on_stdin(emulator: Any, tmp_path: Path) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    command = [
        sys.executable, "-m", "a2ibatch", "submit", "-", "--task", "custom",
        "--flow-definition-arn", FLOW, "--ledger", str(tmp_path / "l.jsonl"),
        "--endpoint-url", emulator.url, "--region", "us-east-1", "--no-progress",
    ]  # fmt: skip
    async with await anyio.open_process(command, env=env) as process:
        assert process.stdin is not None
        await process.stdin.send(orjson.dumps({"id": "a", "input": {"x": 1}}) + b"\n")
        with anyio.fail_after(30):
            while not (tmp_path / "l.jsonl").exists() or b"outcome" not in (
                tmp_path / "l.jsonl"
            ).read_bytes():
                await anyio.sleep(0.05)
        process.send_signal(signal.SIGTERM)  # stdin stays open: the read blocks
        with anyio.fail_after(20):
            code = await process.wait()
        with contextlib.suppress(Exception):
            await process.stdin.aclose()
    assert code == 130
    assert final_outcomes(tmp_path / "l.jsonl")["a"]["status"] == "started"


def test_csv_cells_that_spreadsheets_would_run_are_neutralised() -> None:
    for cell in ("=HYPERLINK(1)", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "'quoted"):
        safe = neutralise(cell)
        assert safe is not None and safe.startswith("'") and unneutralise(safe) == cell
    assert neutralise("plain") == "plain" and neutralise(None) is None
    assert CSV_COLUMNS[0] == "id"


async def test_a_password_in_an_endpoint_is_never_printed(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", TaskType.CUSTOM, 1)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    result = await anyio.run_process(
        [sys.executable, "-m", "a2ibatch", "submit", str(manifest), "--task", "custom",
         "--flow-definition-arn", FLOW, "--ledger", str(tmp_path / "l.jsonl"),
         "--endpoint-url", "http://user:SECRET@10.0.0.1:1"],
        env=env, check=False,
    )  # fmt: skip
    text = (result.stdout + result.stderr).decode()
    assert result.returncode == 2 and "SECRET" not in text and "***@10.0.0.1" in text


def test_a_bad_ledger_value_is_named_never_quoted(tmp_path: Path) -> None:
    from a2ibatch.ledger import load_ledger

    path = tmp_path / "l.jsonl"
    job = {"event": "job", "run": "r", "task": "custom", "flow_definition_arn": FLOW,
           "name_prefix": "a2ib", "manifest": "m", "versions": {}, "at": "t"}  # fmt: skip
    bad = {"event": "outcome", "id": "a", "line": 1, "status": "Maria Example", "at": "t"}
    path.write_bytes(orjson.dumps(job) + b"\n" + orjson.dumps(bad) + b"\n" + orjson.dumps(job))
    with pytest.raises(LedgerError) as caught:
        load_ledger(path)
    assert "Maria" not in str(caught.value) and "line 2" in str(caught.value)


async def test_an_existing_ledger_readable_by_others_is_tightened_to_0600(
    emulator: Any, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", TaskType.CUSTOM, 3)
    s = settings(TaskType.CUSTOM, emulator.url, tmp_path, manifest)
    await submit(s)
    os.chmod(s.ledger, 0o644)
    await submit(s)
    assert stat.S_IMODE(os.stat(s.ledger).st_mode) == 0o600


async def test_status_counts_what_it_says_it_counts(emulator: Any, tmp_path: Path) -> None:
    manifest = write_manifest(
        tmp_path / "m.jsonl", TaskType.CUSTOM, 5, extra=[b"{not json", b"[1]", b'{"id": "x"}']
    )
    s = settings(TaskType.CUSTOM, emulator.url, tmp_path, manifest)
    summary = await submit(s)
    report = await status(s.ledger, list_states=["invalid"])
    # the summary counts this run's invalid lines; status the same for the last run
    assert summary.counts["invalid"] == report.invalid_lines == 3
    assert report.items[Status.INVALID.value] == 1  # ids: only one line had a readable id
    assert [row.line for row in report.rows] == [6, 7, 8]
    assert all(row.reason and "not json" not in row.reason for row in report.rows)
