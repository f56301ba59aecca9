"""Shards and ledger locations: a directory of shards' ledgers and a ledger in S3 (the
emulator's S3, which is moto's), over real HTTP."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aioboto3
import anyio
import pytest

from a2ibatch import (
    AwsSettings,
    ConfigError,
    LedgerError,
    SubmitSettings,
    TaskType,
    dry_run,
    load_settings,
    results,
    status,
    submit,
    track,
)
from a2ibatch._plan import shard_of
from helpers import FLOW, TASKS, emulator_get, write_manifest

pytestmark = pytest.mark.anyio


def job(
    url: str, manifest: Path, ledger: str, task: TaskType = TaskType.CUSTOM, **more: Any
) -> SubmitSettings:
    values: dict[str, Any] = {
        "task": task,
        "flow_definition_arn": FLOW,
        "ledger": ledger,
        "manifest": str(manifest),
        "aws": AwsSettings(endpoint_url=url, region="us-east-1"),
        "preflight": False,
        "quota_pause": 0.2,
    }
    values.update(more)
    return SubmitSettings(**values)


def test_the_shard_of_an_id_is_stable_and_spread() -> None:
    # Fixed values: the same on every machine and Python version (BLAKE2b, not hash()).
    assert [shard_of(f"item-{i:05d}", 4) for i in range(8)] == [
        shard_of(f"item-{i:05d}", 4) for i in range(8)
    ]
    assert shard_of("item-00000", 7) == int.from_bytes(
        __import__("hashlib").blake2b(b"item-00000", digest_size=8).digest(), "big"
    ) % 7
    counts = [0] * 8
    for i in range(8000):
        counts[shard_of(f"id-{i}", 8)] += 1
    assert min(counts) > 850 and max(counts) < 1150


def test_the_shard_index_comes_from_the_batch_platform() -> None:
    base = {"task": "custom", "flow_definition_arn": FLOW, "ledger": "jobs/", "shards": 4}
    batch = load_settings(base, environ={"AWS_BATCH_JOB_ARRAY_INDEX": "2"})
    kubernetes = load_settings(base, environ={"JOB_COMPLETION_INDEX": "3"})
    ours = load_settings(
        {k: v for k, v in base.items() if k != "shards"},
        environ={"A2IBATCH_SHARDS": "4", "A2IBATCH_SHARD_INDEX": "1", "JOB_COMPLETION_INDEX": "3"},
    )
    assert (batch.shards, batch.shard_index) == (4, 2)
    assert kubernetes.shard_index == 3
    assert (ours.shards, ours.shard_index) == (4, 1)  # ours wins over the platform's
    with pytest.raises(ConfigError, match="shard_index"):
        load_settings(base, environ={})
    with pytest.raises(ConfigError, match="from 0 to 3"):
        load_settings({**base, "shard_index": 4}, environ={})
    with pytest.raises(ConfigError, match="location"):
        load_settings({**base, "ledger": "one-file.jsonl", "shard_index": 0}, environ={})


@pytest.mark.parametrize("task", TASKS)
async def test_shards_split_the_items_and_any_rerun_sends_nothing_twice(
    emulator: Any, tmp_path: Path, task: TaskType
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", task, 120)
    location = str(tmp_path / "ledgers") + "/"
    summaries = [
        await submit(job(emulator.url, manifest, location, task, shards=3, shard_index=k))
        for k in range(3)
    ]
    decided = [s.counts["started"] + s.counts["not_activated"] for s in summaries]
    assert sum(decided) == 120 and all(d > 20 for d in decided)
    assert all(s.counts["other_shards"] == 120 - d for s, d in zip(summaries, decided, strict=True))
    names = [f"shard-{k:04d}-of-0003.jsonl" for k in range(3)]
    if task is not TaskType.CUSTOM:
        names += [f"{name}.responses.jsonl" for name in names]
    assert sorted(os.listdir(tmp_path / "ledgers")) == sorted(names)
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    calls = sum(stats["calls"].values())
    # Another number of shards, or none: everything is done in some ledger of the location.
    for settings in (
        job(emulator.url, manifest, location, task, shards=2, shard_index=0),
        job(emulator.url, manifest, location, task, shards=2, shard_index=1),
        job(emulator.url, manifest, location, task),
    ):
        assert (await dry_run(settings)).to_send == 0
        again = await submit(settings)
        assert again.counts["calls"] == 0
    assert sum((await emulator_get(emulator.url, "/_emulator/stats"))["calls"].values()) == calls
    report = await status(location)
    assert report.items["started"] + report.items["not_activated"] == 120
    assert report.runs == 6


@pytest.mark.parametrize("emulator", [{"complete_after": 0.2}], indirect=True)
async def test_the_lifecycle_commands_merge_a_locations_ledgers(
    emulator: Any, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", TaskType.CUSTOM, 30)
    location = str(tmp_path / "ledgers") + "/"
    for k in range(2):
        await submit(job(emulator.url, manifest, location, shards=2, shard_index=k))
    aws = AwsSettings(endpoint_url=emulator.url, region="us-east-1")
    report = await track(location, aws=aws, watch=True, interval=0.1, timeout=20)
    assert report.counts == {"Completed": 30} and report.described == 0
    assert (tmp_path / "ledgers" / "lifecycle.jsonl").exists()  # the lifecycle's own ledger
    answers = await results(location, tmp_path / "answers.jsonl", aws=aws)
    assert answers.written == 30 and answers.lookups == 1
    assert (await status(location)).loops == {"Completed": 30}


async def make_bucket(url: str, name: str) -> None:
    async with aioboto3.Session().client("s3", endpoint_url=url, region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket=name)


async def s3_keys(url: str, bucket: str, prefix: str = "") -> list[str]:
    async with aioboto3.Session().client("s3", endpoint_url=url, region_name="us-east-1") as s3:
        page = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for o in page.get("Contents", []))


@pytest.mark.parametrize("task", [TaskType.CUSTOM, TaskType.TEXTRACT])
async def test_a_ledger_in_s3_resumes_in_a_new_empty_folder(
    emulator: Any, tmp_path: Path, task: TaskType
) -> None:
    await make_bucket(emulator.url, "ledgers")
    manifest = write_manifest(tmp_path / "m.jsonl", task, 80)
    location = "s3://ledgers/jobs/forms/"
    first = await submit(job(emulator.url, manifest, location, task, work_dir=tmp_path / "one"))
    assert first.counts["started"] + first.counts["not_activated"] == 80
    keys = await s3_keys(emulator.url, "ledgers", "jobs/forms/")
    assert "jobs/forms/ledger/lease.json" in keys
    assert any(k.startswith("jobs/forms/ledger/chunk-") or "/segments/" in k for k in keys)
    if task is TaskType.TEXTRACT:
        assert any("/responses/" in k for k in keys)  # the paid answers are kept in S3 too
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    again = await submit(job(emulator.url, manifest, location, task, work_dir=tmp_path / "two"))
    assert again.counts["skipped"] == 80 and again.counts["calls"] == 0
    assert (await emulator_get(emulator.url, "/_emulator/stats"))["calls"] == stats["calls"]
    aws = AwsSettings(endpoint_url=emulator.url, region="us-east-1")
    report = await status(location, aws=aws)
    assert report.items["started"] + report.items["not_activated"] == 80 and report.runs == 2


async def test_two_runs_of_one_shard_in_s3_cannot_run_at_once(
    emulator: Any, tmp_path: Path
) -> None:
    await make_bucket(emulator.url, "ledgers")
    manifest = write_manifest(tmp_path / "m.jsonl", TaskType.CUSTOM, 400)
    location = "s3://ledgers/once/"
    await emulator_post_config(emulator.url, {"quota": 10.0})
    one = job(emulator.url, manifest, location, work_dir=tmp_path / "a", lease_seconds=2.0)
    two = job(emulator.url, manifest, location, work_dir=tmp_path / "b", lease_seconds=2.0)
    from a2ibatch import Job

    first = Job(one)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.run)
        with anyio.fail_after(20):
            while not first.running:
                await anyio.sleep(0.05)
        with anyio.fail_after(30), pytest.raises(LedgerError, match="being run by another"):
            await submit(two)
        first.stop()
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["inputs_with_multiple_loops"] == 0


async def emulator_post_config(url: str, changes: dict[str, Any]) -> None:
    from helpers import emulator_post

    await emulator_post(url, "/_emulator/config", changes)
