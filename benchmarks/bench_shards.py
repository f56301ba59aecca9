"""One job as 1, 2, 4 and 8 shards, each its own OS process, against one account quota.

A job on AWS Batch or Kubernetes runs as shards that never talk to each other: each is an
``a2ibatch submit ... --shards N --shard-index K`` process with a rate controller of its
own, and all of them share the account's StartHumanLoop quota.  This benchmark runs exactly
that: N processes of the real command line (custom task, a directory ledger, a shard
ledger each) against ONE emulator in a child process with ONE token bucket (the quota,
burst 5, 3±2 ms network each way, 40±20 ms processing), and reads the figures from the
emulator, not from the clients:

* **goodput**: loops created per second over the steady window, as a fraction of the
  quota.  The steady window is the time when every shard is sending: from the last
  shard's first loop (plus `--warmup` seconds, the slow start) to the first shard's last
  loop.  The loops are the emulator's own list (``GET /_emulator/loops``, creation times);
  each is given to its shard by the same stable hash of its item id the job uses;
* **throttled**: the share of StartHumanLoop calls the emulator refused in that window
  (its per-second histogram);
* **Jain's fairness index** over the shards' goodput in the window, (Σx)² / (n·Σx²): 1 when
  every shard gets the same share, 1/n when one gets everything;
* the whole run: wall time from the first process started to the last one ended, and the
  ideal (items at the quota).

Each configuration runs with the shards finding the quota by pacing
(``--no-service-quotas``) and reading it from the emulator's Service Quotas (the default:
each shard starts at 1/N of it); ``--told`` adds each shard given ``--rate quota/N``.  One
process (1 shard) is the baseline.  The targets: 4 shards together at least 0.93 of the
quota, at most 3% throttled, fairness at least 0.95.

    python benchmarks/bench_shards.py                    # 1, 2, 4, 8 shards; about 8 minutes
    python benchmarks/bench_shards.py --quota 100 --items 3000 --shards 4
    python benchmarks/bench_shards.py --told             # also each shard given --rate quota/N

Writes ``benchmarks/out/shards.{md,json}``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from _common import CREDENTIALS, FLOW, REGION, emulator_get, input_content, reset_emulator

from a2ibatch._plan import shard_of
from a2ibatch.emulator import EmulatorConfig, run_subprocess

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"

OPERATION = "StartHumanLoop"
NETWORK_MS = 3.0
NETWORK_JITTER_MS = 2.0
PROCESSING_MS = 40.0
PROCESSING_JITTER_MS = 20.0
BURST = 5

#: how each shard learns its rate: found by pacing (``--no-service-quotas``), read from
#: Service Quotas (the default; each shard starts at 1/N of it), or told (``--rate Q/N``)
FOUND, READ, TOLD = "found", "Service Quotas", "told"

#: the issue's targets for 4 shards
TARGET_GOODPUT = 0.93
TARGET_THROTTLED = 0.03
TARGET_FAIRNESS = 0.95


@dataclass
class Run:
    """One configuration: `shards` processes over `items` items."""

    shards: int
    how: str  # how each shard learns its rate: FOUND, READ or TOLD
    quota: float
    items: int
    wall: float  # first process started -> last process ended
    started: int  # loops the shards' summaries report
    exit_codes: list[int]
    window: tuple[float, float]  # steady window, seconds since the first process started
    per_shard: list[float]  # loops per second in the window, per shard
    calls_in_window: int
    throttled_in_window: int
    calls: int  # whole run, StartHumanLoop
    throttled: int  # whole run
    duplicates: int  # inputs with more than one loop (must be 0)
    #: per shard: (first loop, last loop), seconds since the first process started
    spans: list[tuple[float, float]] = field(default_factory=list)
    #: loops per second of each shard, in 1 s bins since the first process started
    series: list[list[int]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return max(0.0, self.window[1] - self.window[0])

    @property
    def goodput(self) -> float:
        """The shards' loops per second in the window, together, as a fraction of the quota."""
        return sum(self.per_shard) / self.quota

    @property
    def throttled_share(self) -> float:
        return self.throttled_in_window / self.calls_in_window if self.calls_in_window else 0.0

    @property
    def fairness(self) -> float:
        """Jain's index over the shards' goodput: (Σx)² / (n·Σx²)."""
        xs = self.per_shard
        square = sum(x * x for x in xs)
        return sum(xs) ** 2 / (len(xs) * square) if square else 0.0

    @property
    def whole(self) -> float:
        """The ideal time (items at the quota) over the wall time."""
        return self.items / self.quota / self.wall if self.wall else 0.0


def write_manifest(path: Path, items: int) -> None:
    with path.open("wb") as f:
        for i in range(items):
            line = {"id": f"item-{i:06d}", "input_content": input_content(i)}
            f.write(orjson.dumps(line) + b"\n")


def command(
    url: str, manifest: Path, ledger: Path, shards: int, k: int, rate: float | None, read: bool
) -> list[str]:
    argv = [
        sys.executable, "-m", "a2ibatch", "submit", str(manifest),
        "--task", "custom", "--flow-definition-arn", FLOW,
        "--ledger", f"{ledger}/", "--name-prefix", f"s{shards}",
        "--endpoint-url", url, "--region", REGION,
        "--no-preflight", "--no-progress", "--json", "--log-format", "json",
        "--log-level", "warning",
    ]  # fmt: skip
    if shards > 1:
        argv += ["--shards", str(shards), "--shard-index", str(k)]
    if rate is not None:
        argv += ["--rate", f"{rate:g}"]
    if not read:
        argv.append("--no-service-quotas")
    return argv


def run_config(
    url: str,
    manifest: Path,
    tmp: Path,
    shards: int,
    items: int,
    quota: float,
    *,
    how: str,
    warmup: float,
) -> Run:
    reset_emulator(url)
    time.sleep(0.3)  # the fresh bucket fills its burst, as after any idle spell
    ledger = tmp / f"ledger-{shards}-{how}"
    rate = quota / shards if how == TOLD else None
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
    }
    for name in ("AWS_BATCH_JOB_ARRAY_INDEX", "JOB_COMPLETION_INDEX"):
        env.pop(name, None)
    began = time.time()
    processes = [
        subprocess.Popen(
            command(url, manifest, ledger, shards, k, rate, read=how != FOUND),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        for k in range(shards)
    ]
    outputs = [p.communicate() for p in processes]
    wall = time.time() - began
    codes = [p.returncode for p in processes]
    started = 0
    for (out, err), code in zip(outputs, codes, strict=True):
        if code != 0:
            sys.stderr.write(err.decode(errors="replace")[-2000:])
        for line in out.splitlines():
            record = orjson.loads(line)
            if "summary" in record:
                started += int(record["summary"].get("started", 0))

    loops = emulator_get(url, "loops")
    stats = emulator_get(url, "stats")
    histogram = emulator_get(url, "accepted")
    times: list[list[float]] = [[] for _ in range(shards)]
    for loop in loops:
        index = int(orjson.loads(loop["input_content"])["index"])
        times[shard_of(f"item-{index:06d}", shards)].append(float(loop["created_at"]) - began)
    for ts in times:
        ts.sort()
    spans = [(ts[0], ts[-1]) if ts else (0.0, 0.0) for ts in times]
    start = max(s[0] for s in spans) + warmup
    end = min(s[1] for s in spans)
    per_shard = [
        sum(1 for t in ts if start <= t < end) / (end - start) if end > start else 0.0
        for ts in times
    ]
    # Throttles: whole seconds of the emulator's histogram inside the window.
    offset = began - float(histogram["started"])
    calls_in = throttled_in = 0
    for row in histogram["seconds"]:
        t = row["second"] - offset
        if t >= start and t + 1.0 <= end:
            calls_in += int(row["accepted"]) + int(row["throttled"])
            throttled_in += int(row["throttled"])
    last = int(max((s[1] for s in spans), default=0.0)) + 1
    series = [[0] * last for _ in range(shards)]
    for k, ts in enumerate(times):
        for t in ts:
            if 0 <= t < last:
                series[k][int(t)] += 1
    return Run(
        shards=shards,
        how=how,
        quota=quota,
        items=items,
        wall=wall,
        started=started,
        exit_codes=codes,
        window=(start, end),
        per_shard=per_shard,
        calls_in_window=calls_in,
        throttled_in_window=throttled_in,
        calls=int(stats["calls"].get(OPERATION, 0)),
        throttled=int(stats["throttled"]),
        duplicates=int(stats["inputs_with_multiple_loops"]),
        spans=spans,
        series=series,
    )


def table(runs: list[Run]) -> str:
    base = {r.how: r for r in runs if r.shards == 1}
    lines = [
        "| shards | --rate per shard | steady window s | goodput (x quota) | vs 1 process "
        "| throttled | Jain's fairness | shards' goodput /s | whole run (x quota) | wall s "
        "| started | duplicates |",
        "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in runs:
        one = base.get(r.how)
        ratio = f"{r.goodput / one.goodput:.3f}" if one and one.goodput else ""
        rate = f"{r.quota / r.shards:g} (quota / N)" if r.how == TOLD else f"none ({r.how})"
        shares = " ".join(f"{x:.1f}" for x in r.per_shard)
        lines.append(
            f"| {r.shards} | {rate} | {r.seconds:.1f} | {r.goodput:.3f} | {ratio} "
            f"| {100 * r.throttled_share:.1f}% | {r.fairness:.3f} | {shares} | {r.whole:.3f} "
            f"| {r.wall:.1f} | {r.started} | {r.duplicates} |"
        )
    return "\n".join(lines)


def verdict(runs: list[Run]) -> list[str]:
    notes = []
    for r in runs:
        if r.shards != 4:
            continue
        checks = [
            ("goodput", r.goodput, f">= {TARGET_GOODPUT}", r.goodput >= TARGET_GOODPUT),
            (
                "throttled",
                r.throttled_share,
                f"<= {TARGET_THROTTLED:.0%}",
                r.throttled_share <= TARGET_THROTTLED,
            ),
            ("fairness", r.fairness, f">= {TARGET_FAIRNESS}", r.fairness >= TARGET_FAIRNESS),
        ]
        for name, value, target, ok in checks:
            shown = f"{value:.1%}" if name == "throttled" else f"{value:.3f}"
            result = "met" if ok else "MISSED"
            notes.append(f"4 shards ({r.how}): {name} {shown}, target {target}: {result}")
    for r in runs:
        if any(r.exit_codes) or r.started != r.items or r.duplicates:
            notes.append(
                f"{r.shards} shards: exit codes {r.exit_codes}, {r.started} of {r.items} "
                f"started, {r.duplicates} inputs with more than one loop"
            )
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quota", type=float, default=50.0, help="StartHumanLoop calls/s")
    parser.add_argument(
        "--items", type=int, default=1500, help="items per configuration (default 1500: 30 s)"
    )
    parser.add_argument("--shards", default="1,2,4,8", help="configurations (default 1,2,4,8)")
    parser.add_argument(
        "--told", action="store_true", help="also run each with --rate quota/N per shard"
    )
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of slow start left out (default 3)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    counts = [int(n) for n in args.shards.split(",")]
    config = EmulatorConfig(
        quota=args.quota,
        burst=BURST,
        network_ms=NETWORK_MS,
        network_jitter_ms=NETWORK_JITTER_MS,
        processing_ms=PROCESSING_MS,
        processing_jitter_ms=PROCESSING_JITTER_MS,
        seed=args.seed,
        s3=False,
    )
    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-shards-") as folder,
        run_subprocess(config) as url,
    ):
        tmp = Path(folder)
        manifest = tmp / "manifest.jsonl"
        write_manifest(manifest, args.items)
        for how in (FOUND, READ, TOLD) if args.told else (FOUND, READ):
            for n in counts:
                run = run_config(
                    url, manifest, tmp, n, args.items, args.quota, how=how, warmup=args.warmup
                )
                runs.append(run)
                print(
                    f"{n} shard(s), {how}: goodput {run.goodput:.3f} x quota, "
                    f"throttled {run.throttled_share:.1%}, fairness {run.fairness:.3f}, "
                    f"wall {run.wall:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    head = (
        f"quota {args.quota:g}/s (burst {BURST}), {args.items} custom items per configuration, "
        f"{NETWORK_MS:g}±{NETWORK_JITTER_MS:g} ms network each way, "
        f"{PROCESSING_MS:g}±{PROCESSING_JITTER_MS:g} ms processing; "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    text = "\n".join([head, "", table(runs), "", *verdict(runs)])
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "shards.md").write_text(text + "\n")
    (OUT / "shards.json").write_bytes(
        orjson.dumps(
            {
                "at": datetime.now(UTC).isoformat(),
                "settings": vars(args),
                "runs": [
                    {
                        **asdict(r),
                        "goodput": r.goodput,
                        "throttled_share": r.throttled_share,
                        "fairness": r.fairness,
                        "whole": r.whole,
                    }
                    for r in runs
                ],
            },
            option=orjson.OPT_INDENT_2,
        )
    )


if __name__ == "__main__":
    main()
