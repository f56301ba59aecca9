"""`a2ibatch submit --dry-run` over a large manifest, against `json.loads` over the same file.

    python benchmarks/bench_dry_run.py [--lines 1000000]

A dry run reads and checks every line and computes every loop name, which is what a real
run does before its first call.  The whole command runs in a child process (start-up
included) and its peak memory is the child's maximum resident set size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/bench"


def write(path: Path, task: str, lines: int) -> None:
    with path.open("wb") as f:
        for i in range(lines):
            if task == "custom":
                record = {"id": f"item-{i:07d}", "input": {"text": f"claim {i}", "score": i % 97}}
            elif task == "textract":
                record = {"id": f"doc-{i:07d}", "document": f"s3://scans/forms/{i:07d}.png"}
            else:
                record = {"id": f"img-{i:07d}", "image": f"s3://uploads/images/{i:07d}.jpg"}
            f.write(orjson.dumps(record) + b"\n")


def json_loads_seconds(path: Path) -> float:
    start = time.perf_counter()
    with path.open("rb") as f:
        for line in f:
            json.loads(line)
    return time.perf_counter() - start


def dry_run(path: Path, task: str, ledger: Path) -> tuple[float, float]:
    command = [
        sys.executable,
        "-m",
        "a2ibatch",
        "submit",
        str(path),
        "--task",
        task,
        "--flow-definition-arn",
        FLOW,
        "--ledger",
        str(ledger),
        "--dry-run",
        "--region",
        "us-east-1",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, peak_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    print(
        f"{'manifest':<11} {'lines':>9} {'json.loads s':>13} {'--dry-run s':>12} "
        f"{'ratio':>6} {'peak MiB':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for task in ("custom", "textract", "rekognition"):
            path = Path(tmp) / f"{task}.jsonl"
            write(path, task, args.lines)
            baseline = min(json_loads_seconds(path) for _ in range(2))
            seconds, peak = dry_run(path, task, Path(tmp) / "ledger.jsonl")
            print(
                f"{task:<11} {args.lines:>9,} {baseline:>13.2f} {seconds:>12.2f} "
                f"{seconds / baseline:>5.2f}x {peak:>9.1f}"
            )


if __name__ == "__main__":
    main()
