"""Helpers shared by the benchmarks: the emulator's introspection endpoints, credentials,
items, and measuring a client's wall and CPU time.

The benchmarks run the emulator in a child process, so the CPU time measured here
(`time.process_time`, every thread of this process) is the client's alone.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/bench"
REGION = "us-east-1"
CREDENTIALS = {
    "aws_access_key_id": "bench",
    "aws_secret_access_key": "bench",
    "region_name": REGION,
}

T = TypeVar("T")


# -- the emulator's introspection endpoints ------------------------------------------------


def emulator_get(url: str, path: str) -> Any:
    """GET ``{url}/_emulator/{path}`` and decode its JSON."""
    with urllib.request.urlopen(f"{url}/_emulator/{path}", timeout=10) as answer:
        return orjson.loads(answer.read())


def emulator_post(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """POST a JSON object to ``{url}/_emulator/{path}`` and decode the answer."""
    request = urllib.request.Request(
        f"{url}/_emulator/{path}",
        data=orjson.dumps(body or {}),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return orjson.loads(answer.read())


def configure_emulator(url: str, **changes: Any) -> None:
    emulator_post(url, "config", changes)


def reset_emulator(url: str) -> None:
    """Forget every loop, counter and token bucket (the histogram restarts at 0 s)."""
    emulator_post(url, "reset")


# -- inputs ---------------------------------------------------------------------------------


def input_content(i: int) -> str:
    """A small custom-task input document, distinct per item."""
    return orjson.dumps({"text": f"document {i} to review", "index": i}).decode()


def start_kwargs(prefix: str, i: int) -> dict[str, Any]:
    """StartHumanLoop's arguments for item `i` under a run's unique loop-name prefix."""
    return {
        "HumanLoopName": f"{prefix}-{i}",
        "FlowDefinitionArn": FLOW,
        "HumanLoopInput": {"InputContent": input_content(i)},
    }


# -- measuring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """Wall-clock and process CPU seconds of one call, and what it returned."""

    wall: float
    cpu: float
    value: Any


def measure(run: Callable[[], T]) -> Measured:
    """Run `run()` and time it: wall clock and CPU of the whole process (all threads)."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    value = run()
    return Measured(time.perf_counter() - wall0, time.process_time() - cpu0, value)


def loads_every_line(path: str, loads: Callable[[bytes], Any]) -> int:
    """Parse every line of `path` with `loads`, the baseline a reader is measured against;
    how many lines there were."""
    count = 0
    with open(path, "rb") as f:
        for line in f:
            loads(line)
            count += 1
    return count


def child_result(script: str, *args: str) -> dict[str, float]:
    """Run ``script --child ARGS`` in a fresh interpreter (its own memory peak); the JSON
    object it prints."""
    out = subprocess.run(
        [sys.executable, script, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = orjson.loads(out)
    return result
