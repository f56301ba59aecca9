"""How fast the ledger loads and writes.

Builds a ledger shaped like a real run (a job record, then an intent and an outcome per item,
outcomes trailing their intents by a window of concurrent calls) and times, each in a fresh
process so that peak memory is its own:

* ``load_ledger`` (index for a rerun),
* a bare ``for line in f: orjson.loads(line)`` loop (the floor for parsing the file),
* the same loop with the standard library's ``json.loads``.

Then times the writer: 64 concurrent producers each writing an intent and an outcome per
item.

    python benchmarks/bench_ledger.py [--records N] [--writer-records N] [--repeat K]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import anyio
import orjson
from _common import child_result, loads_every_line

from a2ibatch import ErrorInfo, Outcome, Status, TaskType
from a2ibatch.ledger import JobHeader, LedgerWriter, load_ledger, open_writer, outcome_record

FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/invoice-review"
WINDOW = 256  # calls in flight: how far outcomes trail their intents


def header() -> JobHeader:
    return JobHeader(TaskType.CUSTOM, FLOW, "a2ib", "s3://bucket/manifest.jsonl", {"a2ibatch": "0"})


def item_outcome(n: int) -> Outcome:
    """A plausible outcome for item `n`: mostly started, some not activated, failed, invalid."""
    item_id = f"invoice-{n:09d}"
    name = f"a2ib-{n:026d}"[:31]
    kind = n % 100
    at = "2026-11-25T06:00:00.123Z"
    if kind < 90:
        arn = f"arn:aws:sagemaker:us-east-1:123456789012:human-loop/{name}"
        return Outcome(item_id, n, Status.STARTED, name, arn, attempts=1, at=at)
    if kind < 95:
        return Outcome(item_id, n, Status.NOT_ACTIVATED, name, attempts=1, at=at)
    if kind < 99:
        error = ErrorInfo("ServiceQuotaExceededException", "too many human loops in progress")
        return Outcome(item_id, n, Status.FAILED, name, attempts=5, error=error, at=at)
    return Outcome(item_id, n, Status.INVALID, None, error=ErrorInfo("invalid", "no text"), at=at)


def build(path: str, records: int) -> int:
    """Write a ledger of about `records` records; its size in bytes."""
    items = max(1, (records - 1) // 2)
    dumps = orjson.dumps
    with open(path, "wb") as f:
        f.write(dumps(header().to_record()) + b"\n")
        chunk: list[bytes] = []
        for n in range(items + WINDOW):
            if n < items:
                intent = {
                    "event": "intent",
                    "id": f"invoice-{n:09d}",
                    "line": n,
                    "loop_name": f"a2ib-{n:026d}"[:31],
                    "at": "2026-11-25T06:00:00.123Z",
                }
                chunk.append(dumps(intent))
            if n >= WINDOW:
                chunk.append(dumps(outcome_record(item_outcome(n - WINDOW))))
            if len(chunk) >= 10_000:
                f.write(b"\n".join(chunk) + b"\n")
                chunk.clear()
        if chunk:
            f.write(b"\n".join(chunk) + b"\n")
    return os.path.getsize(path)


# -- measured in a child process ---------------------------------------------------------


def _load(path: str) -> None:
    index = load_ledger(path)
    assert index.records > 0


MODES: dict[str, Callable[[str], object]] = {
    "load_ledger": _load,
    "orjson loop": lambda path: loads_every_line(path, orjson.loads),
    "json loop": lambda path: loads_every_line(path, json.loads),
}


def peak_rss() -> int:
    """This process's peak resident memory in bytes.

    Linux's VmHWM belongs to the process image, while ``ru_maxrss`` survives ``exec`` and so
    can report the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, else KiB


def child(mode: str, path: str) -> None:
    before = peak_rss()
    start = time.perf_counter()
    MODES[mode](path)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak": peak_rss(), "base": before}))


def measure(mode: str, path: str) -> dict[str, float]:
    return child_result(__file__, mode, path)


# -- the writer --------------------------------------------------------------------------


async def write_concurrently(path: str, items: int, producers: int) -> float:
    """Seconds to write `items` outcomes, each after its intent as the runner writes them (an
    invalid item has none: it is never sent), from `producers` concurrent tasks."""
    outcomes = [item_outcome(n) for n in range(items)]

    async def produce(writer: LedgerWriter, first: int) -> None:
        for n in range(first, items, producers):
            o = outcomes[n]
            if o.status is not Status.INVALID:
                await writer.intent(o.id or "", n, o.loop_name or "")
            await writer.outcome(o)

    start = time.perf_counter()
    async with open_writer(path, header()) as writer, anyio.create_task_group() as tg:
        for p in range(producers):
            tg.start_soon(produce, writer, p)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--writer-records", type=int, default=400_000)
    parser.add_argument("--producers", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="best of K runs per reader")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ledger.jsonl")
        start = time.perf_counter()
        size = build(path, args.records)
        with open(path, "rb") as f:
            lines = sum(1 for _ in f)
        print(
            f"ledger: {lines:,} records, {size / 2**20:.1f} MiB "
            f"(built in {time.perf_counter() - start:.1f} s)\n"
        )
        results: dict[str, dict[str, Any]] = {}
        for mode in MODES:
            runs = [measure(mode, path) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            results[mode] = best
        floor = results["orjson loop"]["seconds"]
        print(
            f"{'reader':<14}{'seconds':>9}{'ratio':>8}{'records/s':>13}{'peak RSS':>11}{'+ MiB':>8}"
        )
        for mode, r in results.items():
            print(
                f"{mode:<14}{r['seconds']:>9.3f}{r['seconds'] / floor:>8.2f}"
                f"{lines / r['seconds']:>13,.0f}{r['peak'] / 2**20:>8.1f} MiB"
                f"{(r['peak'] - r['base']) / 2**20:>8.1f}"
            )
        print("(ratio: to the bare orjson loop; + MiB: peak RSS above the process at start)\n")

        wpath = os.path.join(tmp, "written.jsonl")
        items = max(1, args.writer_records // 2)
        seconds = anyio.run(write_concurrently, wpath, items, args.producers)
        invalid = sum(1 for n in range(items) if item_outcome(n).status is Status.INVALID)
        written = 2 * items - invalid + 1
        index = load_ledger(wpath)
        assert index.records == written and index.pending == 0
        print(
            f"writer: {written:,} records from {args.producers} producers in {seconds:.2f} s: "
            f"{written / seconds:,.0f} records/s ({items / seconds:,.0f} items/s)"
        )


if __name__ == "__main__":
    main()
