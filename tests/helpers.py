"""Helpers shared by the end-to-end tests: manifests, settings, and the emulator's view."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson

from a2ibatch import AwsSettings, SubmitSettings, TaskType

FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/reviews"
TASKS = [TaskType.CUSTOM, TaskType.TEXTRACT, TaskType.REKOGNITION]


def line_for(task: TaskType | str, i: int) -> dict[str, Any]:
    """A valid manifest line for item `i` of a task type."""
    item_id = f"item-{i:05d}"
    task = TaskType(task)
    if task is TaskType.CUSTOM:
        return {"id": item_id, "input": {"text": f"claim {i}", "n": i}}
    if task is TaskType.TEXTRACT:
        return {"id": item_id, "document": f"s3://scans/forms/{item_id}.png"}
    return {"id": item_id, "image": f"s3://uploads/images/{item_id}.jpg"}


def write_manifest(path: Path, task: TaskType | str, n: int, *, extra: list[bytes] = ()) -> Path:  # type: ignore[assignment]
    with path.open("wb") as f:
        for i in range(n):
            f.write(orjson.dumps(line_for(task, i)) + b"\n")
        for raw in extra:
            f.write(raw + b"\n")
    return path


def settings(
    task: TaskType | str, url: str, tmp_path: Path, manifest: Path, **overrides: Any
) -> SubmitSettings:
    values: dict[str, Any] = {
        "task": TaskType(task),
        "flow_definition_arn": FLOW,
        "ledger": tmp_path / "ledger.jsonl",
        "manifest": str(manifest),
        "aws": AwsSettings(endpoint_url=url, region="us-east-1"),
        "quota_pause": 0.2,
        "preflight": False,
    }
    values.update(overrides)
    return SubmitSettings(**values)


async def emulator_get(url: str, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url + path) as response:
        response.raise_for_status()
        return orjson.loads(await response.read())


async def emulator_post(url: str, path: str, body: Any) -> Any:
    async with aiohttp.ClientSession() as http, http.post(url + path, data=orjson.dumps(body)) as r:
        r.raise_for_status()
        return orjson.loads(await r.read() or b"null")


def ledger_records(path: Path | str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]


def final_outcomes(path: Path | str) -> dict[str | None, dict[str, Any]]:
    """The last outcome record of every id."""
    last: dict[str | None, dict[str, Any]] = {}
    for record in ledger_records(path):
        if record.get("event") == "outcome":
            last[record.get("id")] = record
    return last


def submit_args(
    url: str, manifest: Path, ledger: Path, *extra: str, task: str = "custom"
) -> list[str]:
    """`a2ibatch submit` arguments for a job against the emulator at `url`."""
    return [
        "submit", str(manifest), "--task", task, "--flow-definition-arn", FLOW,
        "--ledger", str(ledger), "--endpoint-url", url, "--region", "us-east-1",
        "--log-format", "json", *extra,
    ]  # fmt: skip


async def kill_until_done(
    command: Callable[[int], list[str]],
    env: Mapping[str, str],
    kill_after: Callable[[int], Awaitable[None]],
    *,
    runs: int = 40,
) -> tuple[int, int]:
    """Run `command(k)` for k = 0, 1, ... and `kill -9` each run that is still going when
    `kill_after(k)` returns, until one ends by itself: the kills, and that run's exit code."""
    kills = 0
    for k in range(runs):
        ended: list[int] = []
        async with await anyio.open_process(
            command(k), env=env, stdout=None, stderr=None
        ) as process:
            async with anyio.create_task_group() as group:
                group.start_soon(_wait_into, process, ended, group.cancel_scope)
                await kill_after(k)
                group.cancel_scope.cancel()
            if ended:
                return kills, ended[0]
            process.send_signal(signal.SIGKILL)
            await process.wait()
            kills += 1
    raise AssertionError("the job never finished")


async def _wait_into(process: Any, ended: list[int], scope: anyio.CancelScope) -> None:
    """The process's exit code into `ended`, then `scope` cancelled: it ended by itself."""
    ended.append(await process.wait())
    scope.cancel()
