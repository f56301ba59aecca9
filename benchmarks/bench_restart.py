"""How long a rerun takes to reach its first new call, past a million done items.

    python benchmarks/bench_restart.py [--done 1000000] [--new 100] [--tail 3000]

A job killed after `--done` items: its manifest has `--done` + `--new` lines and its ledger
an intent and a started outcome for each of the first `--done` (as a run writes them, in
line order with a window of calls in flight).  Each rerun (``a2ibatch submit``, a child
process, start-up included) must skip every done item and send the new ones; the figure is
the time from the process's start to the emulator's first StartHumanLoop, next to the time
a bare ``orjson.loads`` loop takes over the ledger and over the manifest.

1. *no resume point*: the ledger as written above, without the resume point a running job
   keeps next to it (a ledger of an earlier version): the whole ledger and manifest are read.
2. *after a kill*: as a job leaves it when killed up to `resume_interval` (30 s) after its
   last resume point: the point, then `--tail` more items done in the ledger after it, and
   `--tail` + `--new` lines more in the manifest.
3. *nothing left*: the whole rerun when every item is done (its resume point is current).

With `--s3 ITEMS`, the ledger is in S3 (the emulator's) instead: a job of ITEMS items (two
records each) is killed (``kill -9``) after most of them, and the rerun starts in a new
empty folder, as a replacement container does, with a lease of `--lease` seconds (the
killed run's lease must lapse first): its first call (the checks of the items the killed
run had in flight come first) is timed from the process's start.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from _common import CREDENTIALS, FLOW, emulator_get, input_content, loads_every_line

from a2ibatch.emulator import EmulatorConfig, run_subprocess

WINDOW = 256


def write_job(folder: Path, done: int, new: int) -> tuple[Path, Path]:
    manifest = folder / "m.jsonl"
    ledger = folder / "ledger.jsonl"
    with manifest.open("wb") as f:
        for i in range(done + new):
            line = {"id": f"item-{i:08d}", "input_content": input_content(i)}
            f.write(orjson.dumps(line) + b"\n")
    at = "2026-11-25T06:00:00.123Z"
    job = {
        "event": "job", "run": "r", "task": "custom", "flow_definition_arn": FLOW,
        "name_prefix": "a2ib", "manifest": str(manifest), "versions": {}, "at": at,
    }  # fmt: skip
    with ledger.open("wb") as f:
        f.write(orjson.dumps(job) + b"\n")
        for n in range(done + WINDOW):
            if n < done:
                intent = {"event": "intent", "id": f"item-{n:08d}", "line": n + 1,
                          "loop_name": f"a2ib-{n:032x}", "at": at}  # fmt: skip
                f.write(orjson.dumps(intent) + b"\n")
            j = n - WINDOW
            if j >= 0:
                name = f"a2ib-{j:032x}"
                outcome = {
                    "event": "outcome", "id": f"item-{j:08d}", "line": j + 1, "status": "started",
                    "loop_name": name, "human_loop_arn": f"arn:aws:sagemaker:us-east-1:"
                    f"123456789012:human-loop/{name}", "activation": None, "attempts": 1,
                    "error": None, "recovered": False, "at": at,
                }  # fmt: skip
                f.write(orjson.dumps(outcome) + b"\n")
    os.chmod(ledger, 0o600)
    return manifest, ledger


def submit_command(url: str, manifest: Path, ledger: Path | str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "a2ibatch", "submit", str(manifest), "--task", "custom",
        "--flow-definition-arn", FLOW, "--ledger", str(ledger), "--endpoint-url", url,
        "--region", "us-east-1", "--no-preflight", "--no-progress", "--log-format", "json",
        *extra,
    ]  # fmt: skip


def environment(**more: str) -> dict[str, str]:
    return {**os.environ, "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"], **more}  # fmt: skip


def first_call_seconds(
    url: str, manifest: Path, ledger: Path | str, *extra: str, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """(seconds to the first new StartHumanLoop, seconds for the whole rerun)."""
    command = submit_command(url, manifest, ledger, *extra)
    env = env or environment()
    before = emulator_get(url, "stats")["calls"].get("StartHumanLoop", 0)
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    first = None
    while process.poll() is None:
        if first is None and emulator_get(url, "stats")["calls"].get("StartHumanLoop", 0) > before:
            first = time.perf_counter() - start
        time.sleep(0.02)
    total = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"the rerun exited {process.returncode}")
    return (first if first is not None else total), total


def grow_job(manifest: Path, ledger: Path, first: int, tail: int, new: int) -> None:
    """Items `first`.. done after the last resume point (`tail` of them), and `new` more."""
    at = "2026-11-25T07:00:00.123Z"
    with manifest.open("ab") as f:
        for i in range(first, first + tail + new):
            line = {"id": f"item-{i:08d}", "input_content": input_content(i)}
            f.write(orjson.dumps(line) + b"\n")
    with ledger.open("ab") as f:
        for i in range(first, first + tail):
            name = f"a2ib-{i:032x}"
            intent = {"event": "intent", "id": f"item-{i:08d}", "line": i + 1,
                      "loop_name": name, "at": at}  # fmt: skip
            outcome = {
                "event": "outcome", "id": f"item-{i:08d}", "line": i + 1, "status": "started",
                "loop_name": name, "human_loop_arn": f"arn:aws:sagemaker:us-east-1:"
                f"123456789012:human-loop/{name}", "activation": None, "attempts": 1,
                "error": None, "recovered": False, "at": at,
            }  # fmt: skip
            f.write(orjson.dumps(intent) + b"\n" + orjson.dumps(outcome) + b"\n")


def s3_scenario(url: str, folder: Path, items: int, new: int, lease: float, stop: str) -> None:
    import boto3

    boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="bench", aws_secret_access_key="bench",
    ).create_bucket(Bucket="ledgers")  # fmt: skip
    manifest = folder / "m.jsonl"
    with manifest.open("wb") as f:
        for i in range(items):
            line = {"id": f"item-{i:08d}", "input_content": input_content(i)}
            f.write(orjson.dumps(line) + b"\n")
    location = "s3://ledgers/bench/"
    env = environment(A2IBATCH_LEASE_SECONDS=str(lease))
    command = submit_command(url, manifest, location, "--work-dir", str(folder / "first"))
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    target = int(items * 0.95)
    while emulator_get(url, "stats")["calls"].get("StartHumanLoop", 0) < target:
        if process.poll() is not None:
            raise SystemExit("the first run ended before it was killed")
        time.sleep(0.05)
    if stop == "kill":
        process.kill()  # a lost container: its lease must lapse before another takes over
    else:
        process.terminate()  # a graceful stop: the run ends its calls and frees its lease
    process.wait()
    print(f"S3 ledger: {items:,} items, {stop} after {target:,} calls "
          f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    with manifest.open("ab") as f:
        for i in range(items, items + new):
            line = {"id": f"item-{i:08d}", "input_content": input_content(i)}
            f.write(orjson.dumps(line) + b"\n")
    first, total = first_call_seconds(
        url, manifest, location, "--work-dir", str(folder / "second"), env=env
    )
    records = 2 * target
    print("| rerun in a new empty folder | ledger records | first call | whole rerun |")
    print("|---|---:|---:|---:|")
    how = f"after a kill, lease {lease:g} s" if stop == "kill" else "after a graceful stop"
    print(f"| {how} | about {records:,} | {first:.2f} s | "
          f"{total:.2f} s |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--done", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--tail", type=int, default=3000)
    parser.add_argument("--s3", type=int, default=0, metavar="ITEMS")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--stop", choices=("kill", "term"), default="kill")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, run_subprocess(EmulatorConfig()) as url:
        folder = Path(tmp)
        if args.s3:
            s3_scenario(url, folder, args.s3, args.new, args.lease, args.stop)
            return
        started = time.perf_counter()
        manifest, ledger = write_job(folder, args.done, args.new)
        print(
            f"job of {args.done:,} done + {args.new} new items written in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        floor_ledger = time.perf_counter()
        loads_every_line(str(ledger), orjson.loads)
        floor_ledger = time.perf_counter() - floor_ledger
        floor_manifest = time.perf_counter()
        loads_every_line(str(manifest), orjson.loads)
        floor_manifest = time.perf_counter() - floor_manifest
        legacy = first_call_seconds(url, manifest, ledger)
        grow_job(manifest, ledger, args.done + args.new, args.tail, args.new)
        killed = first_call_seconds(url, manifest, ledger)
        again, _ = first_call_seconds(url, manifest, ledger)  # nothing left: the whole rerun
        print(
            f"orjson.loads over the ledger {floor_ledger:.2f} s, over the manifest "
            f"{floor_manifest:.2f} s (both: {floor_ledger + floor_manifest:.2f} s)"
        )
        print("| rerun | first new call | whole rerun |")
        print("|---|---:|---:|")
        print(f"| no resume point (whole ledger and manifest read) | {legacy[0]:.2f} s | "
              f"{legacy[1]:.2f} s |")  # fmt: skip
        print(f"| after a kill: resume point + {args.tail:,} items after it | {killed[0]:.2f} s "
              f"| {killed[1]:.2f} s |")  # fmt: skip
        print(f"| nothing left | - | {again:.2f} s |")
        print(f"after a kill vs no resume point: {legacy[0] / killed[0]:.1f}x sooner")


if __name__ == "__main__":
    main()
