"""Container loss with the ledger in S3: `kill -9` at random moments, each restart in a new
empty folder (a new container's disk), under server errors and lost answers.  Every item
must end with exactly one loop at the service and one final state in the S3 ledger."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

import aioboto3
import anyio
import pytest

from a2ibatch._calls import Caller
from a2ibatch._counters import Counters
from a2ibatch._meters import Meters
from a2ibatch.ledger import location_for, read_location
from helpers import emulator_get, kill_until_done, submit_args, write_manifest

pytestmark = pytest.mark.anyio

OPERATION = {"custom": "StartHumanLoop", "textract": "AnalyzeDocument"}

CHAOS = {
    "quota": 120.0,
    "burst": 5,
    "latency_ms": 8.0,
    "jitter_ms": 4.0,
    "fault_rate": 0.05,
    "lost_response_rate": 0.05,
    "same_input_reuse": "conflict",
    "activation_rate": 0.5,
    "seed": 5,
}


async def run_with_kills(
    url: str, tmp_path: Path, task: str, items: int, seed: int
) -> tuple[int, int, str]:
    rng = random.Random(seed)
    manifest = write_manifest(tmp_path / "m.jsonl", task, items)
    location = "s3://ledgers/chaos/"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "chaos",
        "AWS_SECRET_ACCESS_KEY": "chaos",
        "A2IBATCH_LEASE_SECONDS": "1.5",
    }

    def command(run: int) -> list[str]:
        folder = tmp_path / f"container-{run}"  # every container starts with an empty disk
        args = [
            sys.executable, "-m", "a2ibatch",
            *submit_args(url, manifest, Path("unused"), "--max-attempts", "12", "--no-progress",
                         "--no-preflight", task=task),
        ]  # fmt: skip
        args[args.index("unused")] = location
        return [*args, "--work-dir", str(folder)]

    async def kill_after(run: int) -> None:
        if run:
            await anyio.sleep(rng.uniform(3.0, 8.0))
            return
        # The first container is always lost, a third of the way in: the test must exercise
        # a restart however fast the machine runs the job.
        with anyio.fail_after(60):
            while (await emulator_get(url, "/_emulator/stats"))["calls"].get(
                OPERATION[task], 0
            ) < items // 3:
                await anyio.sleep(0.02)

    kills, code = await kill_until_done(command, env, kill_after)
    return kills, code, location


@pytest.mark.parametrize("emulator", [CHAOS], indirect=True)
@pytest.mark.parametrize(("task", "items"), [("custom", 500), ("textract", 400)])
async def test_kill_9_with_the_ledger_in_s3_never_doubles_or_loses_a_loop(
    emulator: Any, tmp_path: Path, task: str, items: int
) -> None:
    async with aioboto3.Session().client(
        "s3", endpoint_url=emulator.url, region_name="us-east-1"
    ) as s3:
        await s3.create_bucket(Bucket="ledgers")
        kills, code, location = await run_with_kills(
            emulator.url, tmp_path, task, items, seed=len(task) + 1
        )
        index = await read_location(
            location_for(location, s3=s3, caller=Caller(Meters(Counters()))), loops=True
        )
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    service = {loop["name"]: loop for loop in await emulator_get(emulator.url, "/_emulator/loops")}
    assert kills >= 1, "the run was never interrupted: the test proved nothing"
    assert stats["faults"] > 0 and stats["lost_responses"] > 0
    assert code == 0
    counts = index.counts
    # None lost: every item is started or not activated in the ledger, and every loop at the
    # service is one of the ledger's.
    assert (
        counts[next(s for s in counts if s.value == "started")]
        + counts[next(s for s in counts if s.value == "not_activated")]
        == items
    )
    assert set(index.loops) == set(service)
    assert all(index.loops[n].human_loop_arn == loop["arn"] for n, loop in service.items())
    # None doubled: one loop per input.
    assert stats["inputs_with_multiple_loops"] == 0
    assert stats["loops_created"] == len(service)
