"""Track, results, stop, delete and reconcile in pages, next to a call per loop.

    python benchmarks/bench_lifecycle.py [--loops 100000] [--others 20000]

The emulator runs in a child process with no rate quota.  On one flow definition it gets
`--others` loops of another job, then the benchmarked job's `--loops` loops (started by
``a2ibatch.submit``), then `--others` more of a third job, so the job's creation window is
bounded by strangers on both sides.  Then, counting every call the emulator answers:

* track, one pass while the loops are in progress, and a watch until every loop is final
  (the emulated reviewers finish each loop `--review` seconds after it starts);
* results: every completed loop's output.json into a JSONL file;
* delete: every finished loop;
* stop: the in-progress loops of a fourth job (`--stop` loops);
* reconcile: the job's ledger against the service's list;

and the per-loop way next to each: DescribeHumanLoop for every loop (track), a describe to
find each output (results: the GetObjects are the same either way), a describe then the
action (stop, delete).  Figures: A2I and SageMaker calls per loop (S3 GetObjects, one per output
either way, are not counted), wall seconds, and whether the statuses recorded from pages
are the ones a describe of every loop sees.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aioboto3
import anyio
from _common import CREDENTIALS, FLOW, REGION, configure_emulator, emulator_get, input_content

from a2ibatch import (
    AwsSettings,
    Item,
    SubmitSettings,
    delete_loops,
    reconcile,
    results,
    stop_loops,
    submit,
    track,
)
from a2ibatch.emulator import EmulatorConfig, run_subprocess
from a2ibatch.ledger import load_ledger

A2I = "sagemaker-a2i-runtime"


def calls(url: str) -> dict[str, int]:
    return dict(emulator_get(url, "stats")["calls"])


def spent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {op: after[op] - before.get(op, 0) for op in after if after[op] != before.get(op, 0)}


async def bare_loops(url: str, prefix: str, count: int, workers: int = 64) -> None:
    """Another job's loops, started with plain calls."""
    session = aioboto3.Session(**CREDENTIALS)
    numbers = iter(range(count))
    async with session.client(A2I, endpoint_url=url) as a2i:

        async def worker() -> None:
            for i in numbers:
                await a2i.start_human_loop(
                    HumanLoopName=f"{prefix}-{i}",
                    FlowDefinitionArn=FLOW,
                    HumanLoopInput={"InputContent": input_content(i)},
                )

        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)


async def job_loops(url: str, folder: Path, prefix: str, count: int) -> Path:
    """A job of `count` loops through a2ibatch; its ledger."""
    ledger = folder / f"{prefix}-ledger.jsonl"
    settings = SubmitSettings(
        task="custom",  # type: ignore[arg-type]  # coerced to TaskType
        flow_definition_arn=FLOW,
        ledger=ledger,
        name_prefix=prefix,
        aws=AwsSettings(endpoint_url=url, region=REGION),
        preflight=False,
    )
    items = (
        Item(id=f"{prefix}-{i}", line=i + 1, input_content=input_content(i)) for i in range(count)
    )
    summary = await submit(settings, items=items, session=aioboto3.Session(**CREDENTIALS))
    assert summary.counts["started"] == count, summary.counts
    return ledger


async def per_loop(
    url: str, names: list[str], action: str | None, workers: int = 64
) -> dict[str, str]:
    """The per-loop way: a describe for every loop, then the action (or a GetObject); the
    statuses the describes saw."""
    session = aioboto3.Session(**CREDENTIALS)
    queue = iter(names)
    seen: dict[str, str] = {}
    async with session.client(A2I, endpoint_url=url) as a2i, session.client(
        "s3", endpoint_url=url, region_name=REGION
    ) as s3:

        async def worker() -> None:
            for name in queue:
                found = await a2i.describe_human_loop(HumanLoopName=name)
                seen[name] = found["HumanLoopStatus"]
                if action == "stop" and found["HumanLoopStatus"] == "InProgress":
                    await a2i.stop_human_loop(HumanLoopName=name)
                elif action == "delete" and found["HumanLoopStatus"] in ("Completed", "Failed"):
                    await a2i.delete_human_loop(HumanLoopName=name)
                elif action == "get":
                    uri = found["HumanLoopOutput"]["OutputS3Uri"]
                    bucket, key = uri[5:].split("/", 1)
                    answer = await s3.get_object(Bucket=bucket, Key=key)
                    await answer["Body"].read()

        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
    return seen


def loop_names(url: str, prefix: str) -> list[str]:
    return [loop["name"] for loop in emulator_get(url, "loops") if loop["name"].startswith(prefix)]


def agree(ledger: Path, described: dict[str, str]) -> None:
    """The statuses the pages recorded are the ones a describe of every loop sees."""
    loops = load_ledger(ledger, loops=True).loops
    same = sum(loops[name].status == status for name, status in described.items())
    print(f"  statuses recorded from pages = a describe of every loop: {same:,} of "
          f"{len(described):,}", flush=True)
    if same != len(described):
        raise SystemExit("the statuses disagree (did loops finish between the two passes?)")


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, int, int, dict[str, int], float]] = []

    def add(self, step: str, way: str, loops: int, cost: dict[str, int], wall: float) -> None:
        self.rows.append((step, way, loops, sum(cost.values()), cost, wall))
        self.print_last()

    def print_last(self) -> None:
        step, way, loops, total, cost, wall = self.rows[-1]
        detail = ", ".join(f"{op} {n}" for op, n in sorted(cost.items()))
        print(f"{step:<22} {way:<12} {loops:>8} loops  {total:>8} calls  "
              f"{total / max(loops, 1):8.4f}/loop  {wall:7.1f} s   ({detail})", flush=True)

    def markdown(self) -> str:
        lines = [
            "| step | way | loops | calls | calls per loop | wall s | by operation |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for step, way, loops, total, cost, wall in self.rows:
            detail = ", ".join(f"{op} {n}" for op, n in sorted(cost.items()))
            lines.append(
                f"| {step} | {way} | {loops:,} | {total:,} | {total / max(loops, 1):.4f} | "
                f"{wall:.1f} | {detail} |"
            )
        return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    config = EmulatorConfig(complete_after=args.review)
    table = Table()
    with tempfile.TemporaryDirectory() as tmp, run_subprocess(config) as url:
        aws = AwsSettings(endpoint_url=url, region=REGION)
        session = aioboto3.Session(**CREDENTIALS)
        folder = Path(tmp)
        began = time.monotonic()
        await bare_loops(url, "before", args.others)
        ledger = await job_loops(url, folder, "bench", args.loops)
        await bare_loops(url, "after", args.others)
        created = time.monotonic() - began
        print(f"set-up: {args.others:,} + {args.loops:,} + {args.others:,} loops in "
              f"{created:.0f} s", flush=True)
        names = loop_names(url, "bench-")

        async def measured(step: str, way: str, loops: int, run: Any) -> Any:
            before, start = calls(url), time.monotonic()
            value = await run()
            table.add(step, way, loops, spent(before, calls(url)), time.monotonic() - start)
            return value

        await measured("track, one pass", "pages", args.loops,
                       lambda: track(ledger, aws=aws, session=session))
        described = await measured("track, one pass", "per loop", args.loops,
                                   lambda: per_loop(url, names, None))
        agree(ledger, described)
        await asyncio.sleep(max(0.0, args.review - (time.monotonic() - began)))
        await measured("track, watch to final", "pages", args.loops,
                       lambda: track(ledger, aws=aws, session=session, watch=True,
                                     interval=5.0, timeout=3600))
        agree(ledger, await per_loop(url, names, None))
        out = folder / "answers.jsonl"
        report = await measured("results", "computed", args.loops,
                                lambda: results(ledger, out, aws=aws, session=session))
        assert report.written == args.loops, report
        await measured("results", "per loop", args.loops, lambda: per_loop(url, names, "get"))
        await measured("reconcile", "pages", args.loops,
                       lambda: reconcile(ledger, aws=aws, session=session))
        await measured("delete", "pages", args.loops,
                       lambda: delete_loops(ledger, aws=aws, session=session))
        after = loop_names(url, "after-")
        await measured("delete", "per loop", len(after), lambda: per_loop(url, after, "delete"))
        # Jobs whose loops stay in progress, for stop.
        configure_emulator(url, complete_after=None)
        stop_ledger = await job_loops(url, folder, "stopjob", args.stop)
        await measured("stop", "pages", args.stop,
                       lambda: stop_loops(stop_ledger, aws=aws, session=session))
        await job_loops(url, folder, "stopother", args.stop)
        others = loop_names(url, "stopother-")
        await measured("stop", "per loop", len(others), lambda: per_loop(url, others, "stop"))
        print()
        print(table.markdown())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=100_000)
    parser.add_argument("--others", type=int, default=20_000)
    parser.add_argument("--stop", type=int, default=20_000)
    parser.add_argument("--review", type=float, default=600.0,
                        help="seconds until the emulated reviewers finish a loop (long enough "
                        "that none finishes during the first passes)")
    anyio.run(main, parser.parse_args(), backend="asyncio")
