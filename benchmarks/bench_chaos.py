"""Chaos run: faults, lost answers, throttling and `kill -9`, then count duplicates and losses.

    python benchmarks/bench_chaos.py [--items 3000] [--seed 1]

The emulator runs in its own process with a quota, 5% server errors, 5% lost answers
(the loop is created, the answer never arrives) and strict name reuse.  `a2ibatch submit`
runs as a child process that is SIGKILLed at random moments and rerun with the same
command until it finishes by itself.  The table is what the README's Reliability section
quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from a2ibatch.emulator import EmulatorConfig, run_subprocess

FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/chaos"


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def write_manifest(path: Path, task: str, items: int) -> None:
    with path.open("w") as f:
        for i in range(items):
            if task == "custom":
                line = {"id": f"c{i}", "input": {"n": i}}
            else:
                line = {"id": f"d{i}", "document": f"s3://scans/d{i}.png"}
            f.write(json.dumps(line) + "\n")


def chaos(task: str, items: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    config = EmulatorConfig(
        quota=300.0,
        burst=5,
        latency_ms=15.0,
        jitter_ms=10.0,
        fault_rate=0.05,
        lost_response_rate=0.05,
        same_input_reuse="conflict",
        activation_rate=0.5,
        seed=seed,
    )
    with tempfile.TemporaryDirectory() as tmp, run_subprocess(config) as url:
        manifest = Path(tmp) / "m.jsonl"
        ledger = Path(tmp) / "ledger.jsonl"
        write_manifest(manifest, task, items)
        command = [
            sys.executable,
            "-m",
            "a2ibatch",
            "submit",
            str(manifest),
            "--task",
            task,
            "--flow-definition-arn",
            FLOW,
            "--ledger",
            str(ledger),
            "--endpoint-url",
            url,
            "--region",
            "us-east-1",
            "--max-attempts",
            "12",
            "--no-progress",
            "--log-format",
            "json",
            "--log-level",
            "error",
            "--no-preflight",
        ]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "chaos", "AWS_SECRET_ACCESS_KEY": "chaos"}
        kills = runs = 0
        started = time.monotonic()
        while True:
            runs += 1
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
            try:
                code = process.wait(timeout=rng.uniform(1.5, 4.0))
                break
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
        elapsed = time.monotonic() - started
        stats = get(url + "/_emulator/stats")
        loops = {loop["name"]: loop["arn"] for loop in get(url + "/_emulator/loops")}
        last: dict[str, dict[str, Any]] = {}
        for line in ledger.read_bytes().splitlines():
            record = json.loads(line)
            if record.get("event") == "outcome":
                last[record["id"]] = record
    started_loops = {
        o["loop_name"]: o["human_loop_arn"] for o in last.values() if o["status"] == "started"
    }
    return {
        "task": task,
        "items": items,
        "runs": runs,
        "kills": kills,
        "exit": code,
        "faults": stats["faults"],
        "lost_answers": stats["lost_responses"],
        "throttled": stats["throttled"],
        "recovered": sum(1 for o in last.values() if o.get("recovered")),
        "duplicates": stats["inputs_with_multiple_loops"],
        "items_without_outcome": items - len(last),
        "loops_missing_from_ledger": len(set(loops) - set(started_loops)),
        "arn_mismatches": sum(1 for n, a in started_loops.items() if loops.get(n) != a),
        "elapsed_s": round(elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = [chaos(task, args.items, args.seed + i) for i, task in enumerate(("custom", "textract"))]
    keys = list(rows[0])
    print(" | ".join(keys))
    print(" | ".join("---" for _ in keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))


if __name__ == "__main__":
    main()
