"""How fast the emulator answers its loop-starting calls, next to the simplest possible server.

Both servers run in child processes (so their CPU is not the client's):

* the emulator (``python -m a2ibatch.emulator``, no latency, no quota), and
* a stand-in: the standard library's threaded ``http.server`` answering each operation
  with a fixed answer (an ARN, an empty analysis) and doing nothing else.

Each is driven with N calls of one operation (StartHumanLoop by default; AnalyzeDocument
and DetectModerationLabels with ``--operation``, all three with ``--operation all``)
through real clients: aioboto3 with 32 calls in flight, boto3 from a pool of 32 threads,
and (to show the servers' own limits rather than the clients') unsigned-looking requests
straight from aiohttp.  The table shows calls per second and the emulator/stand-in ratio;
the client is usually the bottleneck, so a ratio near 1 means the emulator costs about as
much as a server that does no work at all.

Where ``/proc`` exists (Linux) the table also shows each server's CPU time per call, read
from its process: unlike calls per second it hardly moves when other processes compete
for the cores, so it is the figure to compare between two versions of the emulator.

    python benchmarks/bench_emulator.py [--calls N] [--concurrency C] [--no-boto3]
                                        [--operation {StartHumanLoop,...,all}]
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from a2ibatch.emulator import EmulatorConfig, run_subprocess

FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/bench"
CREDENTIALS = {
    "aws_access_key_id": "bench",
    "aws_secret_access_key": "bench",
    "region_name": "us-east-1",
}
WARMUP = 64


# -- the operations -----------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One loop-starting operation: its client, method, wire form and request."""

    name: str
    service: str  # boto3 service name
    method: str  # client method
    signing_name: str  # the service in the SigV4 scope
    target: str | None  # X-Amz-Target (JSON 1.1), None for rest-json

    def request(self, prefix: str, i: int) -> dict[str, Any]:
        loop = {"HumanLoopName": f"{prefix}-{i}", "FlowDefinitionArn": FLOW}
        if self.name == "StartHumanLoop":
            content = {"InputContent": f'{{"run": "{prefix}", "n": {i}}}'}
            return {**loop, "HumanLoopInput": content}
        if self.name == "AnalyzeDocument":
            document = {"S3Object": {"Bucket": "scans", "Name": f"{prefix}/{i}.png"}}
            return {"Document": document, "FeatureTypes": ["FORMS"], "HumanLoopConfig": loop}
        image = {"S3Object": {"Bucket": "uploads", "Name": f"{prefix}/{i}.jpg"}}
        return {"Image": image, "HumanLoopConfig": loop}

    @property
    def path(self) -> str:
        return "/" if self.target else "/human-loops"


OPERATIONS = {
    op.name: op
    for op in (
        Operation("StartHumanLoop", "sagemaker-a2i-runtime", "start_human_loop", "sagemaker", None),
        Operation(
            "AnalyzeDocument",
            "textract",
            "analyze_document",
            "textract",
            "Textract.AnalyzeDocument",
        ),
        Operation(
            "DetectModerationLabels",
            "rekognition",
            "detect_moderation_labels",
            "rekognition",
            "RekognitionService.DetectModerationLabels",
        ),
    )
}


# -- the stand-in server ------------------------------------------------------------------


class StandIn(http.server.BaseHTTPRequestHandler):
    """Answers the three operations like the services would, and nothing else."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the emulator and AWS do
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def do_POST(self) -> None:
        body = orjson.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        target = self.headers.get("X-Amz-Target")
        if target is None:
            name = body.get("HumanLoopName", "loop")
            answer: dict[str, Any] = {
                "HumanLoopArn": f"arn:aws:sagemaker:us-east-1:123456789012:human-loop/{name}"
            }
            content_type = "application/json"
        else:
            if target.endswith("AnalyzeDocument"):
                answer = {"DocumentMetadata": {"Pages": 1}, "Blocks": []}
            else:
                answer = {"ModerationLabels": [], "ModerationModelVersion": "7.0"}
            content_type = "application/x-amz-json-1.1"
        data = orjson.dumps(answer)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no line per request."""


def serve_stand_in() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()  # until the parent's SIGTERM


@contextmanager
def stand_in_subprocess() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-stand-in"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"stand-in did not start: {line!r}")
        yield line.removeprefix("listening on ")
    finally:
        process.terminate()
        process.wait(10)


# -- server CPU, from /proc ---------------------------------------------------------------


def child_cpu_seconds(marker: str) -> float | None:
    """User + system CPU seconds of this process's child whose command line has `marker`.

    None where there is no ``/proc`` (or no such child): the column then shows "-".
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != os.getpid():  # the parent pid
                continue
            if marker not in (entry / "cmdline").read_bytes().decode(errors="replace"):
                continue
            return (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return None


# -- the clients --------------------------------------------------------------------------


def _client_config(concurrency: int) -> Any:
    import botocore.config

    return botocore.config.Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=concurrency,
    )


Driver = Callable[[Operation, str, int, int, str], float]


async def _aioboto3_run(
    op: Operation, url: str, calls: int, concurrency: int, prefix: str
) -> float:
    import aioboto3

    session = aioboto3.Session(**CREDENTIALS)
    config = _client_config(concurrency)
    async with session.client(op.service, endpoint_url=url, config=config) as client:
        call = getattr(client, op.method)
        for i in range(WARMUP):
            await call(**op.request(prefix + "-warm", i))
        queue = iter(range(calls))

        async def worker() -> None:
            for i in queue:
                await call(**op.request(prefix, i))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return calls / (time.perf_counter() - started)


def aioboto3_rate(op: Operation, url: str, calls: int, concurrency: int, prefix: str) -> float:
    return asyncio.run(_aioboto3_run(op, url, calls, concurrency, prefix))


def boto3_rate(op: Operation, url: str, calls: int, concurrency: int, prefix: str) -> float:
    import boto3

    client = boto3.Session(**CREDENTIALS).client(
        op.service, endpoint_url=url, config=_client_config(concurrency)
    )
    call = getattr(client, op.method)
    for i in range(WARMUP):
        call(**op.request(prefix + "-warm", i))
    with ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        list(pool.map(lambda i: call(**op.request(prefix, i)), range(calls)))
        return calls / (time.perf_counter() - started)


async def _aiohttp_run(op: Operation, url: str, calls: int, concurrency: int, prefix: str) -> float:
    import aiohttp

    headers = {
        "Content-Type": "application/x-amz-json-1.1" if op.target else "application/json",
        "Authorization": f"AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/"
        f"{op.signing_name}/aws4_request, SignedHeaders=host, Signature=0",
    }
    if op.target:
        headers["X-Amz-Target"] = op.target
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http_session:

        async def call(i: int, prefix: str = prefix) -> None:
            body = orjson.dumps(op.request(prefix, i))
            async with http_session.post(url + op.path, data=body) as response:
                await response.read()
                assert response.status == 200, response.status

        for i in range(WARMUP):
            await call(i, prefix + "-warm")
        queue = iter(range(calls))

        async def worker() -> None:
            for i in queue:
                await call(i)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return calls / (time.perf_counter() - started)


def aiohttp_rate(op: Operation, url: str, calls: int, concurrency: int, prefix: str) -> float:
    """Requests straight from aiohttp, signed in form only: closer to the servers' limits."""
    return asyncio.run(_aiohttp_run(op, url, calls, concurrency, prefix))


def _reset(url: str) -> None:
    request = urllib.request.Request(f"{url}/_emulator/reset", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=10) as response:
        stats: dict[str, Any] = orjson.loads(response.read())
        return stats


# -- main ---------------------------------------------------------------------------------


@dataclass
class Row:
    operation: str
    client: str
    emulated: float  # calls per second
    plain: float
    emulator_cpu: float | None  # CPU microseconds per call
    stand_in_cpu: float | None


def measure(
    op: Operation, rate: Driver, url: str, args: argparse.Namespace, prefix: str, marker: str
) -> tuple[float, float | None]:
    """Calls per second, and the server's CPU microseconds per call (warm-up included)."""
    before = child_cpu_seconds(marker)
    calls_per_second = rate(op, url, args.calls, args.concurrency, prefix)
    after = child_cpu_seconds(marker)
    if before is None or after is None:
        return calls_per_second, None
    return calls_per_second, (after - before) / (args.calls + WARMUP) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4000, help="calls per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-boto3", dest="boto3", action="store_false")
    parser.add_argument(
        "--operation", choices=[*OPERATIONS, "all"], default="StartHumanLoop", help="what to call"
    )
    parser.add_argument("--serve-stand-in", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stand_in:
        serve_stand_in()
        return 0

    drivers: list[tuple[str, Driver]] = [(f"aioboto3, {args.concurrency} in flight", aioboto3_rate)]
    if args.boto3:
        drivers.append((f"boto3, {args.concurrency} threads", boto3_rate))
    drivers.append((f"raw aiohttp, {args.concurrency} in flight", aiohttp_rate))
    operations = (
        list(OPERATIONS.values()) if args.operation == "all" else [OPERATIONS[args.operation]]
    )
    rows: list[Row] = []
    with run_subprocess(EmulatorConfig()) as emulator_url, stand_in_subprocess() as stand_in_url:
        for op in operations:
            for label, rate in drivers:
                _reset(emulator_url)
                emulated, emulator_cpu = measure(
                    op, rate, emulator_url, args, "emu", "a2ibatch.emulator"
                )
                stats = _stats(emulator_url)
                assert stats["calls"] == {op.name: args.calls + WARMUP}, stats
                assert stats["inputs_with_multiple_loops"] == 0, stats
                if op.name == "StartHumanLoop":
                    assert stats["loops_created"] == args.calls + WARMUP, stats
                plain, stand_in_cpu = measure(
                    op, rate, stand_in_url, args, "plain", "--serve-stand-in"
                )
                rows.append(Row(op.name, label, emulated, plain, emulator_cpu, stand_in_cpu))

    print(f"{args.calls} calls per run, no latency, no quota\n")
    header = (
        f"{'operation':<23} {'client':<27} {'emulator calls/s':>16} {'stand-in calls/s':>16} "
        f"{'ratio':>6} {'emulator CPU us/call':>20} {'stand-in CPU us/call':>20}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        cpu = [f"{x:,.0f}" if x is not None else "-" for x in (row.emulator_cpu, row.stand_in_cpu)]
        print(
            f"{row.operation:<23} {row.client:<27} {row.emulated:>16,.0f} {row.plain:>16,.0f} "
            f"{row.emulated / row.plain:>6.2f} {cpu[0]:>20} {cpu[1]:>20}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
