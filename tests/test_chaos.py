"""Chaos: throttling, 5xx, lost answers, strict name reuse, and `kill -9` at random moments.

The submitter runs as a real process (`python -m a2ibatch submit`) and is SIGKILLed at
random moments, then rerun with the same command until it finishes by itself.  Then every
item must have exactly one loop at the service and exactly one final outcome in the ledger.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from helpers import emulator_get, final_outcomes, kill_until_done, submit_args, write_manifest

pytestmark = pytest.mark.anyio

CHAOS = {
    "quota": 150.0,
    "burst": 5,
    "latency_ms": 8.0,
    "jitter_ms": 4.0,
    "fault_rate": 0.05,
    "lost_response_rate": 0.05,
    "same_input_reuse": "conflict",
    "activation_rate": 0.5,
    "seed": 11,
    # A role that may not read Service Quotas: the job finds the quota by being throttled,
    # so throttling is part of the chaos.
    "service_quotas_access": "deny",
}


async def chaos_run(url: str, tmp_path: Path, task: str, items: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    manifest = write_manifest(tmp_path / "m.jsonl", task, items)
    ledger = tmp_path / "ledger.jsonl"
    command = [
        sys.executable, "-m", "a2ibatch",
        *submit_args(url, manifest, ledger, "--max-attempts", "12", "--no-progress",
                     "--no-preflight", task=task),
    ]  # fmt: skip
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "chaos", "AWS_SECRET_ACCESS_KEY": "chaos"}

    async def kill_after(_run: int) -> None:
        await anyio.sleep(rng.uniform(1.0, 3.0))

    kills, code = await kill_until_done(lambda _run: command, env, kill_after)
    return {"kills": kills, "exit": code, "ledger": ledger}


@pytest.mark.parametrize("emulator", [CHAOS], indirect=True)
@pytest.mark.parametrize(("task", "items"), [("custom", 500), ("textract", 400)])
async def test_kill_9_and_faults_never_double_or_lose_a_loop(
    emulator: Any, tmp_path: Path, task: str, items: int
) -> None:
    run = await chaos_run(emulator.url, tmp_path, task, items, seed=len(task))
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    loops = {loop["name"]: loop for loop in await emulator_get(emulator.url, "/_emulator/loops")}
    outcomes = final_outcomes(run["ledger"])

    assert run["kills"] >= 1, "the run was never interrupted: the test proved nothing"
    assert stats["faults"] > 0 and stats["lost_responses"] > 0 and stats["throttled"] > 0
    assert run["exit"] == 0
    # None lost: every item has a final outcome, and every loop at the service is in the ledger.
    assert len(outcomes) == items
    assert all(o["status"] in ("started", "not_activated") for o in outcomes.values())
    started = {o["loop_name"]: o for o in outcomes.values() if o["status"] == "started"}
    assert set(started) == set(loops)
    assert all(started[name]["human_loop_arn"] == loop["arn"] for name, loop in loops.items())
    # None doubled: one loop per input.
    assert stats["inputs_with_multiple_loops"] == 0
    assert stats["loops_created"] == len(loops)
