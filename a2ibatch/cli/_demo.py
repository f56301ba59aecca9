"""`a2ibatch demo`: a real job against the built-in emulator, in one command.

It starts the emulator in a child process with a realistic quota, latency, a few faults and
lost answers, writes a manifest of a few thousand items, runs the same code path as
`a2ibatch submit` (progress bar and summary included), and finishes with the emulator's own
count of loops per input, so the exactly-once promise is checked by the server itself.
"""

from __future__ import annotations

import random
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from .._config import AwsSettings, SubmitSettings
from .._models import TaskType

DEMO_FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/demo-review"


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
                record["document"] = f"s3://demo-documents/forms/{item_id}.png"
            else:
                record["image"] = f"s3://demo-images/uploads/{item_id}.jpg"
            f.write(orjson.dumps(record) + b"\n")


def run_demo(
    items: int,
    task: str,
    out: Path,
    *,
    progress: bool,
    run: Callable[..., int],
) -> int:
    """Run the demo job; returns the job's exit code."""
    import aioboto3

    from ..emulator import EmulatorConfig, run_subprocess

    console = Console(highlight=False)
    task_type = TaskType(task)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / f"{task}-manifest.jsonl"
    ledger = out / f"{task}-ledger.jsonl"
    for old in (ledger, Path(f"{ledger}.responses.jsonl")):
        old.unlink(missing_ok=True)
    write_manifest(manifest, items, task_type)
    config = EmulatorConfig(
        quota=200.0,
        burst=5,
        latency_ms=30.0,
        jitter_ms=15.0,
        fault_rate=0.01,
        lost_response_rate=0.003,
        activation_rate=0.6,
        seed=7,
    )
    console.print(
        f"[bold]a2ibatch demo[/]: {items} {task} items against the built-in emulator "
        "(quota 200 req/s, 30±15 ms latency, 1% server errors, 0.3% lost answers)"
    )
    with run_subprocess(config) as url:
        settings = SubmitSettings(
            task=task_type,
            flow_definition_arn=DEMO_FLOW,
            ledger=ledger,
            manifest=str(manifest),
            aws=AwsSettings(endpoint_url=url, region="us-east-1"),
            # The emulator has no S3 for the bucket checks of built-in task types.
            preflight=task_type is TaskType.CUSTOM,
        )
        session = aioboto3.Session(
            aws_access_key_id="demo", aws_secret_access_key="demo", region_name="us-east-1"
        )
        code = run(settings, progress=progress, session=session)
        with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=10) as response:
            stats = orjson.loads(response.read())
    console.print(
        f"emulator: {stats['loops_created']} loops created for {stats['inputs']} inputs; "
        f"inputs with more than one loop: {stats['inputs_with_multiple_loops']}; "
        f"throttled {stats['throttled']}, server errors injected {stats['faults']}, "
        f"answers lost {stats['lost_responses']}"
    )
    console.print(f"manifest {manifest}, ledger {ledger}; try: a2ibatch status {ledger}")
    return code
