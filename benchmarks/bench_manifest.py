"""How fast the manifest reader checks a large manifest, and how much memory it takes.

Writes a custom-task and a textract-task JSONL manifest of N lines (1,000,000 by default)
into a temporary directory, then times, each in a fresh process so that its peak memory is
its own:

* ``json.loads`` over every line (the standard library's parse: the reference),
* ``orjson.loads`` over every line (the floor for parsing the file),
* ``read_manifest`` consuming every entry, as ``--dry-run`` does (read, split, parse,
  check, refuse duplicate ids, build the items).

The target is ``read_manifest`` within about 2x of ``json.loads`` and well under 150 MiB.

    python benchmarks/bench_manifest.py [--lines N] [--repeat K]
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

import orjson
from _common import child_result, loads_every_line

TASKS = ("custom", "textract")


# -- manifests -----------------------------------------------------------------------------


def custom_line(n: int) -> dict[str, Any]:
    """A plausible custom-task line: an id, a small review payload, a metadata column."""
    return {
        "id": f"claim-{n:09d}",
        "input": {
            "text": f"Claim {n}: the parcel arrived damaged, photos attached",
            "amount": round(n * 0.37 % 5000, 2),
            "tags": ["parcel", "damage"],
        },
        "batch": "2026-11",
    }


def textract_line(n: int) -> dict[str, Any]:
    """A plausible textract-task line: an id, a document, feature types."""
    return {
        "id": f"form-{n:09d}",
        "document": f"s3://acme-scans/intake/2026/11/form-{n:09d}.png",
        "feature_types": ["FORMS", "TABLES"],
    }


def build(path: str, task: str, lines: int) -> int:
    """Write a manifest of `lines` lines; its size in bytes.

    One line at a time: holding many ``orjson.dumps`` results at once would raise this
    process's peak memory, which its children inherit as their starting ``ru_maxrss``.
    """
    make = custom_line if task == "custom" else textract_line
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE
    with open(path, "wb") as f:
        for n in range(lines):
            f.write(dumps(make(n), option=newline))
    return os.path.getsize(path)


# -- measured in a child process -----------------------------------------------------------


def _read_manifest(path: str, task: str) -> int:
    import anyio

    from a2ibatch import Item, TaskType
    from a2ibatch.manifest import read_manifest

    async def consume() -> int:
        items = 0
        async for entry in read_manifest(path, TaskType(task)):
            if isinstance(entry, Item):
                items += 1
        return items

    return anyio.run(consume)


MODES: dict[str, Callable[[str, str], int]] = {
    "json.loads": lambda path, task: loads_every_line(path, json.loads),
    "orjson.loads": lambda path, task: loads_every_line(path, orjson.loads),
    "read_manifest": _read_manifest,
}


def max_rss() -> int:
    """This process's peak resident memory in bytes: ``ru_maxrss`` (KiB on Linux).

    On Linux a child's ``ru_maxrss`` starts from its parent's peak (it survives ``exec``),
    so the parent keeps itself small: it writes the manifests line by line.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def child(mode: str, path: str, task: str) -> None:
    if mode == "read_manifest":  # its imports count towards the base, not the run
        import anyio  # noqa: F401

        import a2ibatch.manifest  # noqa: F401
    base = max_rss()
    start = time.perf_counter()
    count = MODES[mode](path, task)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak": max_rss(), "base": base, "count": count}))


def measure(mode: str, path: str, task: str) -> dict[str, float]:
    return child_result(__file__, mode, path, task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of K runs per mode")
    parser.add_argument(
        "--child", nargs=3, metavar=("MODE", "PATH", "TASK"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    with tempfile.TemporaryDirectory() as tmp:
        for task in TASKS:
            path = os.path.join(tmp, f"{task}.jsonl")
            size = build(path, task, args.lines)
            print(f"{task} manifest: {args.lines:,} lines, {size / 2**20:.1f} MiB")
            results: dict[str, dict[str, float]] = {}
            for mode in MODES:
                runs = [measure(mode, path, task) for _ in range(args.repeat)]
                results[mode] = min(runs, key=lambda r: r["seconds"])
                assert results[mode]["count"] == args.lines, (mode, results[mode])
            reference = results["json.loads"]["seconds"]
            head = f"{'mode':<16}{'seconds':>9}{'vs json':>9}{'lines/s':>12}{'peak RSS':>13}"
            print(f"  {head}{'+ MiB':>8}")
            for mode, r in results.items():
                print(
                    f"{'':2}{mode:<16}{r['seconds']:>9.3f}{r['seconds'] / reference:>8.2f}x"
                    f"{args.lines / r['seconds']:>12,.0f}{r['peak'] / 2**20:>9.1f} MiB"
                    f"{(r['peak'] - r['base']) / 2**20:>8.1f}"
                )
            print()
        print(
            f"(best of {args.repeat}, each in a fresh process; peak RSS from ru_maxrss; "
            "+ MiB: above the process after its imports)"
        )


if __name__ == "__main__":
    main()
