"""How fast the emulator answers StartHumanLoop, next to the simplest possible server.

Both servers run in child processes (so their CPU is not the client's):

* the emulator (``python -m a2ibatch.emulator``, no latency, no quota), and
* a stand-in: the standard library's threaded ``http.server`` answering
  ``POST /human-loops`` with a fixed ARN and doing nothing else.

Each is driven with N StartHumanLoop calls through real clients: aioboto3 with 32 calls in
flight, boto3 from a pool of 32 threads, and (to show the servers' own limits rather than
the clients') unsigned requests straight from aiohttp.  The table shows calls per second and the
emulator/stand-in ratio; the client is usually the bottleneck, so a ratio near 1 means the
emulator costs about as much as a server that does no work at all.

    python benchmarks/bench_emulator.py [--calls N] [--concurrency C] [--no-boto3]
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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


# -- the stand-in server ------------------------------------------------------------------


class StandIn(http.server.BaseHTTPRequestHandler):
    """Answers StartHumanLoop like the service would, and nothing else."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the emulator and AWS do
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        name = orjson.loads(body).get("HumanLoopName", "loop")
        answer = orjson.dumps(
            {"HumanLoopArn": f"arn:aws:sagemaker:us-east-1:123456789012:human-loop/{name}"}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

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


# -- the clients --------------------------------------------------------------------------


def _client_config(concurrency: int) -> Any:
    import botocore.config

    return botocore.config.Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=concurrency,
    )


def _request(prefix: str, i: int) -> dict[str, Any]:
    return {
        "HumanLoopName": f"{prefix}-{i}",
        "FlowDefinitionArn": FLOW,
        "HumanLoopInput": {"InputContent": f'{{"run": "{prefix}", "n": {i}}}'},
    }


async def _aioboto3_run(url: str, calls: int, concurrency: int, prefix: str) -> float:
    import aioboto3

    session = aioboto3.Session(**CREDENTIALS)
    config = _client_config(concurrency)
    async with session.client("sagemaker-a2i-runtime", endpoint_url=url, config=config) as a2i:
        for i in range(WARMUP):
            await a2i.start_human_loop(**_request(prefix + "-warm", i))
        queue = iter(range(calls))

        async def worker() -> None:
            for i in queue:
                await a2i.start_human_loop(**_request(prefix, i))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return calls / (time.perf_counter() - started)


def aioboto3_rate(url: str, calls: int, concurrency: int, prefix: str) -> float:
    return asyncio.run(_aioboto3_run(url, calls, concurrency, prefix))


def boto3_rate(url: str, calls: int, concurrency: int, prefix: str) -> float:
    import boto3

    a2i = boto3.Session(**CREDENTIALS).client(
        "sagemaker-a2i-runtime", endpoint_url=url, config=_client_config(concurrency)
    )
    for i in range(WARMUP):
        a2i.start_human_loop(**_request(prefix + "-warm", i))
    with ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        list(pool.map(lambda i: a2i.start_human_loop(**_request(prefix, i)), range(calls)))
        return calls / (time.perf_counter() - started)


async def _aiohttp_run(url: str, calls: int, concurrency: int, prefix: str) -> float:
    import aiohttp

    headers = {
        "Content-Type": "application/json",
        "Authorization": "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/sagemaker/"
        "aws4_request, SignedHeaders=host, Signature=0",
    }
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http_session:

        async def call(i: int, prefix: str = prefix) -> None:
            body = orjson.dumps(_request(prefix, i))
            async with http_session.post(f"{url}/human-loops", data=body) as response:
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


def aiohttp_rate(url: str, calls: int, concurrency: int, prefix: str) -> float:
    """Unsigned requests straight from aiohttp: closer to the servers' own limits."""
    return asyncio.run(_aiohttp_run(url, calls, concurrency, prefix))


def _reset(url: str) -> None:
    request = urllib.request.Request(f"{url}/_emulator/reset", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=10) as response:
        stats: dict[str, Any] = orjson.loads(response.read())
        return stats


# -- main ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4000, help="calls per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-boto3", dest="boto3", action="store_false")
    parser.add_argument("--serve-stand-in", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stand_in:
        serve_stand_in()
        return 0

    drivers: list[tuple[str, Callable[[str, int, int, str], float]]] = [
        (f"aioboto3, {args.concurrency} in flight", aioboto3_rate)
    ]
    if args.boto3:
        drivers.append((f"boto3, {args.concurrency} threads", boto3_rate))
    drivers.append((f"raw aiohttp, {args.concurrency} in flight", aiohttp_rate))
    results: list[tuple[str, float, float]] = []
    with run_subprocess(EmulatorConfig()) as emulator_url, stand_in_subprocess() as stand_in_url:
        for label, rate in drivers:
            _reset(emulator_url)
            emulated = rate(emulator_url, args.calls, args.concurrency, "emu")
            stats = _stats(emulator_url)
            assert stats["loops_created"] == args.calls + WARMUP, stats
            assert stats["inputs_with_multiple_loops"] == 0, stats
            plain = rate(stand_in_url, args.calls, args.concurrency, "plain")
            results.append((label, emulated, plain))

    print(f"StartHumanLoop, {args.calls} calls per run, no latency, no quota\n")
    header = f"{'client':<28} {'emulator calls/s':>17} {'stand-in calls/s':>17} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for label, emulated, plain in results:
        print(f"{label:<28} {emulated:>17,.0f} {plain:>17,.0f} {emulated / plain:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
