"""`dry_run` reads the manifest in batches: the same report as checking entry by entry.

The reference below is the plain per-entry loop (`read_manifest`, then the namer, then the
ledger), written out here rather than taken from the code under test; manifests are longer
than a batch and mix every kind of line, and resuming from a real ledger is included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from a2ibatch import DryRunReport, Invalid, Item, Job, Status, TaskType, dry_run, submit
from a2ibatch._naming import Namer
from a2ibatch._tasks import adapter_for
from a2ibatch.ledger import load_ledger
from a2ibatch.manifest import (
    BATCH_LINES,
    CHECKPOINT_LINES,
    read_manifest,
    read_manifest_batches,
)
from helpers import TASKS, emulator_get, emulator_post, line_for, settings, write_manifest

pytestmark = pytest.mark.anyio

#: longer than the lines between checkpoints, and not a whole number of batches
LINES = CHECKPOINT_LINES + BATCH_LINES + 17


def mixed_manifest(path: Path, task: TaskType) -> Path:
    """Valid lines with, every few lines, one of each kind of problem."""
    rows: list[bytes] = []
    for i in range(LINES):
        kind = i % 11
        line = line_for(task, i)
        if kind == 1:
            rows.append(b"{not json")
        elif kind == 2:
            rows.append(orjson.dumps(line_for(task, i - 2)))  # a duplicate id
        elif kind == 3:
            rows.append(orjson.dumps({**line, "name": f"explicit-{i}"}))
        elif kind == 4:
            rows.append(orjson.dumps({**line, "name": "Not A Name"}))
        elif kind == 5:
            rows.append(orjson.dumps({**line, "name": "explicit-3"}))  # repeats line 4's
        elif kind == 6:
            rows.append(orjson.dumps({"id": line["id"], "document": "s3://ab/k", "image": "x"}))
        elif kind == 7:
            rows.append(b"")
        else:
            rows.append(orjson.dumps(line))
    path.write_bytes(b"\n".join(rows) + b"\n")
    return path


async def reference(s: Any, max_problems: int = 1000) -> DryRunReport:
    """The report, one entry at a time, by the rules as docs/ledger.md states them."""
    adapter = adapter_for(s.task)
    namer = Namer(s.name_prefix, s.flow_definition_arn, s.task.value)
    index = load_ledger(s.ledger, repair=False)
    report = DryRunReport(task=s.task.value)
    async for entry in read_manifest(s.manifest, s.task):
        # A line whose id the ledger has done is not checked again (unless it repeats an
        # earlier line's id): it is done, whatever else the line now says.
        if isinstance(entry, Invalid) and entry.id is not None:
            state, _ = index.lookup(entry.id)
            if state is not None and state.done and not entry.reason.startswith("duplicate"):
                report.items += 1
                report.already_done += 1
                continue
        if isinstance(entry, Invalid):
            report.invalid += 1
            if len(report.problems) < max_problems:
                report.problems.append(entry)
            continue
        state, pending = index.lookup(entry.id)
        if state is not None and state.done:
            report.items += 1
            report.already_done += 1
            continue
        if state is Status.FAILED and not pending and not s.retry_failed:
            report.items += 1
            report.skipped_failed += 1
            continue
        name, reason = namer.name(entry.id, entry.name, adapter.payload_key(entry))
        if reason is not None:
            report.invalid += 1
            if len(report.problems) < max_problems:
                report.problems.append(Invalid(entry.line, reason, entry.id))
            continue
        report.items += 1
        report.to_send += 1
        report.to_check += pending or state is Status.UNVERIFIED
        if len(report.sample_names) < 5:
            report.sample_names.append(name)
    return report


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("max_problems", [1000, 7])
async def test_the_report_matches_entry_by_entry_checking(
    task: TaskType, max_problems: int, tmp_path: Path
) -> None:
    manifest = mixed_manifest(tmp_path / "m.jsonl", task)
    s = settings(task, "http://127.0.0.1:9", tmp_path, manifest)
    expected = await reference(s, max_problems)
    assert expected.items and expected.invalid > 7  # the manifest is mixed
    assert await dry_run(s, max_problems=max_problems) == expected
    assert not Path(s.ledger).exists()


@pytest.mark.parametrize("task", TASKS)
async def test_given_items_report_as_the_manifest_does(task: TaskType, tmp_path: Path) -> None:
    manifest = mixed_manifest(tmp_path / "m.jsonl", task)
    s = settings(task, "http://127.0.0.1:9", tmp_path, manifest)
    entries = [entry async for entry in read_manifest(s.manifest, s.task)]
    assert await dry_run(s, items=entries) == await dry_run(s)


async def test_items_already_done_in_the_ledger(emulator: Any, tmp_path: Path) -> None:
    task = TaskType.TEXTRACT
    first = tmp_path / "first.jsonl"
    first.write_bytes(b"".join(orjson.dumps(line_for(task, i)) + b"\n" for i in range(40)))
    await submit(settings(task, emulator.url, tmp_path, first))
    manifest = mixed_manifest(tmp_path / "m.jsonl", task)
    s = settings(task, emulator.url, tmp_path, manifest)
    expected = await reference(s)
    assert expected.already_done > 0
    assert await dry_run(s) == expected


@pytest.mark.parametrize("task", TASKS)
async def test_batches_hold_the_entries_of_read_manifest(task: TaskType, tmp_path: Path) -> None:
    manifest = str(mixed_manifest(tmp_path / "m.jsonl", task))
    batches = [batch async for batch in read_manifest_batches(manifest, task)]
    entries = [entry async for entry in read_manifest(manifest, task)]
    assert [entry for batch in batches for entry in batch] == entries
    assert all(isinstance(entry, Item | Invalid) for entry in entries)
    assert max(len(batch) for batch in batches) <= BATCH_LINES


def test_a_batch_of_new_objects_stays_under_the_young_collection_threshold() -> None:
    # An item and its S3Ref per line: a batch that a consumer drops before the next one
    # never reaches CPython's default first-generation threshold of 700 allocations.
    assert 2 * BATCH_LINES < 700


@pytest.mark.parametrize("emulator", [{"quota": 0.001, "burst": 1}], indirect=True)
@pytest.mark.parametrize("retry_failed", [False, True])
async def test_the_dry_run_and_the_cost_estimate_count_what_submit_sends(
    emulator: Any, tmp_path: Path, retry_failed: bool
) -> None:
    """One rule: failed items are counted as sent by the dry run and the estimate exactly
    when submit sends them (with `retry_failed`), and not otherwise."""
    flow = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/public-claims"
    manifest = write_manifest(tmp_path / "m.jsonl", TaskType.CUSTOM, 8)
    pii = ("FreeOfPersonallyIdentifiableInformation",)
    first = settings(TaskType.CUSTOM, emulator.url, tmp_path, manifest, flow_definition_arn=flow,
                     max_attempts=1, content_classifiers=pii)
    summary = await submit(first)  # the quota lets one call through: the rest are throttled
    assert summary.counts["started"] == 1 and summary.counts["failed"] == 7
    await emulator_post(emulator.url, "/_emulator/config", {"quota": None})
    again = settings(TaskType.CUSTOM, emulator.url, tmp_path, manifest, flow_definition_arn=flow,
                     retry_failed=retry_failed, preflight=True, content_classifiers=pii)
    report = await dry_run(again)
    expected = 7 if retry_failed else 0
    assert report.to_send == expected
    assert report.skipped_failed == 7 - expected and report.already_done == 1
    before = (await emulator_get(emulator.url, "/_emulator/stats"))["calls"]
    job = Job(again)
    summary = await job.run()
    calls = (await emulator_get(emulator.url, "/_emulator/stats"))["calls"]
    starts = calls.get("StartHumanLoop", 0) - before.get("StartHumanLoop", 0)
    assert starts == expected == summary.counts["started"]
    if retry_failed:
        assert job.preflight_report is not None and job.preflight_report.items == expected
        assert job.preflight_report.estimated_cost == pytest.approx(expected * 3 * 0.036)
    else:
        assert job.preflight_report is None  # nothing to send: no check, no call at all
        assert calls.get("DescribeFlowDefinition", 0) == before.get("DescribeFlowDefinition", 0)
