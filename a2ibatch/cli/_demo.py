"""`a2ibatch demo`: the whole walk of a job against the built-in emulator, in one command.

It starts the emulator in a child process with a realistic quota, latency, a few faults and
lost answers, and loops that the emulated reviewers finish after a few seconds; writes a
manifest of a few thousand items; then runs what a user runs, through the same public API:
submit (progress bar and summary), track until every loop is final, and results (the
reviewers' answers in a file).  It ends with the emulator's own count of loops per input, so
the exactly-once promise is checked by the server itself.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import random
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import orjson

from .. import AwsSettings, SubmitSettings, TaskType, results, track
from . import _logging
from ._output import Output
from ._submit import run_job

DEMO_FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/demo-review"
DEMO_REGION = "us-east-1"
#: the buckets the demo's Textract and Rekognition items name
DEMO_BUCKETS = {TaskType.TEXTRACT: "demo-documents", TaskType.REKOGNITION: "demo-images"}
#: seconds until the emulated reviewers finish a loop
REVIEW_SECONDS = 4.0


def write_manifest(path: Path, items: int, task: TaskType, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("wb") as f:
        for i in range(items):
            item_id = f"item-{i:06d}"
            record: dict[str, Any] = {"id": item_id}
            if task is TaskType.CUSTOM:
                record["input"] = {
                    "text": f"Sample claim {i} for review",
                    "score": round(rng.random(), 3),
                }
            elif task is TaskType.TEXTRACT:
                record["document"] = f"s3://{DEMO_BUCKETS[task]}/forms/{item_id}.png"
            else:
                record["image"] = f"s3://{DEMO_BUCKETS[task]}/uploads/{item_id}.jpg"
            f.write(orjson.dumps(record) + b"\n")


def _stats(url: str) -> Any:
    with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=10) as response:
        return orjson.loads(response.read())


async def _buckets(url: str, task: TaskType, session: Any) -> None:
    """The demo's input bucket, with the CORS rule A2I's worker UI needs (as a user makes)."""
    bucket = DEMO_BUCKETS.get(task)
    if bucket is None:
        return
    async with session.client("s3", endpoint_url=url, region_name=DEMO_REGION) as s3:
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            await s3.create_bucket(Bucket=bucket)
        rule = {"AllowedHeaders": [], "AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}
        await s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule]})


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code of the first step that needs attention."""
    import aioboto3

    from ..emulator import EmulatorConfig, run_subprocess

    _logging.configure(args.log_format, args.log_level)
    out = Output(text=True)  # a tour for people, wherever its output goes
    task = TaskType(args.task)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"{task}-manifest.jsonl"
    ledger = folder / f"{task}-ledger.jsonl"
    answers = folder / f"{task}-answers.jsonl"
    for old in (ledger, Path(f"{ledger}.responses.jsonl"), answers):
        old.unlink(missing_ok=True)
    write_manifest(manifest, args.items, task)
    config = EmulatorConfig(
        quota=200.0,
        burst=5,
        latency_ms=30.0,
        jitter_ms=15.0,
        fault_rate=0.01,
        lost_response_rate=0.003,
        activation_rate=0.6,
        complete_after=REVIEW_SECONDS,
        seed=7,
    )
    out.line((f"a2ibatch demo: {args.items} {task} items against the built-in emulator", "bold"),
             " (quota 200 req/s, 30±15 ms latency, 1% server errors, 0.3% lost answers; the "
             f"emulated reviewers answer {REVIEW_SECONDS:g} s after a loop starts)")
    session = aioboto3.Session(
        aws_access_key_id="demo", aws_secret_access_key="demo", region_name=DEMO_REGION
    )
    with run_subprocess(config) as url:
        aws = AwsSettings(endpoint_url=url, region=DEMO_REGION)
        settings = SubmitSettings(
            task=task,
            flow_definition_arn=DEMO_FLOW,
            ledger=ledger,
            manifest=str(manifest),
            aws=aws,
            preflight=task is TaskType.CUSTOM,
        )
        out.line(("\n1. submit", "bold"), f"  a2ibatch submit {manifest} --task {task} ...")
        code = run_job(settings, out, progress=not args.no_progress, session=session)
        if args.walk:
            code = max(code, _walk(out, ledger, answers, aws, session))
        stats = _stats(url)
    out.line()
    out.line(
        f"emulator: {stats['loops_created']} loops created for {stats['inputs']} inputs; "
        f"inputs with more than one loop: {stats['inputs_with_multiple_loops']}; "
        f"throttled {stats['throttled']}, server errors injected {stats['faults']}, "
        f"answers lost {stats['lost_responses']}"
    )
    out.line("files: ", str(manifest), ", ", str(ledger), ", ", str(answers))
    out.line("next: .venv/bin/a2ibatch status ", str(ledger), "   (or activate the venv first)")
    return code


def _walk(out: Output, ledger: Path, answers: Path, aws: AwsSettings, session: Any) -> int:
    out.line(("\n2. track until every loop is final", "bold"), f"  a2ibatch track {ledger} --watch")
    tracked = anyio.run(
        functools.partial(
            track, ledger, aws=aws, session=session, watch=True, interval=1.0, timeout=120.0
        ),
        backend="asyncio",
    )
    out.pairs(sorted(tracked.counts.items()))
    out.line(("\n3. results", "bold"), f"  a2ibatch results {ledger} --out {answers}")
    report = anyio.run(
        functools.partial(results, ledger, answers, aws=aws, session=session), backend="asyncio"
    )
    out.pairs(
        [
            ("answer rows written", report.written),
            ("completed loops", report.completed),
            ("outputs not found", report.missing),
        ]
    )
    return max(tracked.exit_code, report.exit_code)
