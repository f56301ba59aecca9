"""Goodput at the quota: a2ibatch next to the usual ways of starting human loops.

Every client starts custom-task human loops (StartHumanLoop) on the emulator, which runs in
a child process (its CPU is not the client's) with a token-bucket quota and a latency:

* ``a2ibatch``: the library, ``a2ibatch.submit(...)``, ledger and all;
* ``boto3 threads``: boto3 in a ThreadPoolExecutor(64), botocore's ``adaptive`` retry mode
  (10 attempts), the usual answer to "botocore, make it fast and handle throttling";
* ``aioboto3 gather``: aioboto3, ``asyncio.gather`` under a Semaphore(64), ``standard``
  retries (10 attempts);
* ``sequential``: one boto3 call after another, as in the AWS sample notebooks (run on
  fewer items; its goodput does not depend on the count).

Scenarios: the quota untold (a2ibatch's ``--rate`` a high ceiling) and told (``--rate`` =
the quota; a2ibatch only, the others have no such setting), latencies of 20 ms and 2 s
(a lower quota and fewer items for 2 s; a2ibatch's defaults are the same for all), 1% of
calls answered 500, and a quota that halves at 40% of the ideal time.

Figures are whole-run: goodput is the ideal time (items at the quota, with the halving
accounted for) over the wall time from the client's first line to its last answer, client
creation and slow start included; "throttled" is the share of the StartHumanLoop calls the
emulator refused; CPU is this process's CPU time (all threads) per item.  The bare
aiobotocore line is a tight loop of ``start_human_loop`` on one client against the
emulator with no quota and no latency, the floor a library built on aiobotocore stands on.

    python benchmarks/bench_throughput.py            # full run, about 17 minutes
    python benchmarks/bench_throughput.py --repeat 1 # a2ibatch once per scenario, not 3 times
    python benchmarks/bench_throughput.py --quick    # smaller, under 2 minutes

Writes ``benchmarks/out/throughput.{md,json,png}`` and ``docs/throughput.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import math
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from _common import (
    CREDENTIALS,
    FLOW,
    REGION,
    configure_emulator,
    emulator_get,
    input_content,
    measure,
    reset_emulator,
    start_kwargs,
)

from a2ibatch.emulator import EmulatorConfig, run_subprocess

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
DOCS_CHART = ROOT / "docs" / "throughput.png"

WORKERS = 64  # the baselines' threads / semaphore
MAX_ATTEMPTS = 10  # the baselines' botocore retries
OPERATION = "StartHumanLoop"
RECOVERY_SHARE = 0.9  # "back at 90% of the new quota"

A2IBATCH = "a2ibatch"
THREADS = "boto3 threads (adaptive)"
GATHER = "aioboto3 gather (standard)"
SEQUENTIAL = "sequential boto3"
CLIENTS = (A2IBATCH, THREADS, GATHER, SEQUENTIAL)


#: the emulator's one-way network delay in every scenario: a client in the service's region
NETWORK_MS = 3.0
NETWORK_JITTER_MS = 2.0

UNTOLD = "untold"  # a2ibatch gets a high ceiling (--rate 1000) and finds the quota
TOLD = "told"  # a2ibatch gets --rate = the quota
SERVICE_QUOTAS = "service-quotas"  # a2ibatch reads the quota from Service Quotas first


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    quota: float
    items: int
    sequential_items: int
    latency_ms: float = 40.0  # the service's processing time, after admission
    jitter_ms: float = 20.0
    fault_rate: float = 0.0
    halve_at: float | None = None  # fraction of the ideal time at which the quota halves
    quota_source: str = UNTOLD  # how a2ibatch learns the quota
    clients: tuple[str, ...] = CLIENTS

    @property
    def round_trip(self) -> float:
        """Seconds of a call's mean round trip: network both ways and processing."""
        return (self.latency_ms + 2 * NETWORK_MS) / 1000.0

    def ideal_for(self, items: int) -> float:
        """The least wall time any client can take for `items`: every call admitted at the
        quota (the halving accounted for), then the last one's round trip.

        The round trip matters at seconds per call: 400 items at 20/s take 20 s to admit and
        the last answer comes 2 s later, so a bound of items / quota alone would put
        0.91 x quota out of any client's reach.
        """
        plain = items / self.quota
        if self.halve_at is not None:
            at = self.halve_at * plain
            plain = at + (items - self.quota * at) / (self.quota / 2)
        return plain + self.round_trip

    def emulator(self, seed: int) -> EmulatorConfig:
        return EmulatorConfig(
            quota=self.quota,
            burst=5,
            network_ms=NETWORK_MS,
            network_jitter_ms=NETWORK_JITTER_MS,
            processing_ms=self.latency_ms,
            processing_jitter_ms=self.jitter_ms,
            fault_rate=self.fault_rate,
            seed=seed,
        )


def scenarios(quick: bool) -> list[Scenario]:
    n, seq = (300, 30) if quick else (2000, 200)
    slow_n, slow_seq = (60, 2) if quick else (400, 10)
    only = (A2IBATCH,)
    slow = ("quota untold, 20/s, 2±0.5 s", 20.0, slow_n, slow_seq, 2000.0, 500.0)
    return [
        Scenario("untold", "quota untold, 150/s, 40±20 ms", 150.0, n, seq),
        Scenario(
            "told", "quota told, 150/s, 40±20 ms", 150.0, n, seq, quota_source=TOLD, clients=only
        ),
        Scenario(
            "sq",
            "quota from Service Quotas, 150/s, 40±20 ms",
            150.0,
            n,
            seq,
            quota_source=SERVICE_QUOTAS,
            clients=only,
        ),
        Scenario("fast", "quota untold, 150/s, 20±10 ms", 150.0, n, seq, 20.0, 10.0),
        Scenario("slow", *slow),
        Scenario(
            "slow-sq",
            "quota from Service Quotas, 20/s, 2±0.5 s",
            *slow[1:],
            quota_source=SERVICE_QUOTAS,
            clients=only,
        ),
        Scenario("faults", "quota untold, 150/s, 1% 5xx", 150.0, n, seq, fault_rate=0.01),
        # The sequential loop runs far below either quota: nothing to see in this one.
        Scenario(
            "halving",
            "quota 150/s halves to 75/s at 40%",
            150.0,
            n,
            seq,
            halve_at=0.4,
            clients=(A2IBATCH, THREADS, GATHER),
        ),
    ]


@dataclass
class Result:
    client: str
    scenario: str
    title: str
    quota: float
    items: int
    done: int
    failed: int
    wall: float
    cpu: float
    ideal: float  # for `items`
    calls: int
    throttled: int
    faults: int
    #: seconds since the client started -> accepted, throttled StartHumanLoop calls
    accepted: list[tuple[float, int, int]] = field(default_factory=list)
    change_at: float | None = None  # seconds since the client started
    recovery: float | None = None  # seconds from the halving until back at 90% for good
    #: seconds from the client's first line to its first StartHumanLoop's arrival: session,
    #: client creation, the job's set-up, one network crossing
    startup: float | None = None

    @property
    def goodput(self) -> float:
        """Ideal time over wall time: items done per second as a fraction of the quota."""
        return self.ideal / self.wall * (self.done / self.items)

    @property
    def from_first_call(self) -> float | None:
        """Goodput with start-up left out: the ideal over the wall time from the first call's
        arrival, what the rate control alone achieved."""
        if self.startup is None:
            return None
        return self.ideal / (self.wall - self.startup) * (self.done / self.items)

    @property
    def steady(self) -> float | None:
        """Accepted calls per second over the run's middle, as a fraction of the quota.

        The middle: from 2 s after the start (slow start, first connections) to the tail
        (less than a second's worth of items left).  Whole seconds of the emulator's
        histogram only; None for a run too short or a quota that changed.
        """
        if self.change_at is not None:
            return None
        tail = tail_start(self, self.quota)
        rows = [a for t, a, _ in self.accepted if t >= 2.0 and t + 1.0 <= tail]
        return sum(rows) / len(rows) / self.quota if len(rows) >= 3 else None

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.calls if self.calls else 0.0

    @property
    def cpu_ms_per_item(self) -> float:
        return 1000.0 * self.cpu / max(self.done, 1)


@dataclass
class Row:
    """One client in one scenario: its runs (several for a2ibatch), summarised as the worst
    and the median, because a user sees the bad run, not the typical one."""

    runs: list[Result]

    @property
    def median(self) -> Result:
        """The run of median goodput: it stands for the client in the chart."""
        return sorted(self.runs, key=lambda r: r.goodput)[len(self.runs) // 2]

    @property
    def worst(self) -> Result:
        return min(self.runs, key=lambda r: r.goodput)

    def median_of(self, value: Callable[[Result], float]) -> float:
        return _median([value(r) for r in self.runs])

    def median_of_known(self, value: Callable[[Result], float | None]) -> float | None:
        """The median of `value` over the runs that have one (None if none has)."""
        known = [v for v in map(value, self.runs) if v is not None]
        return _median(known) if known else None


def _median(values: list[float]) -> float:
    """The middle value, or the mean of the two middle ones (at least one value)."""
    ordered, n = sorted(values), len(values)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


# -- the clients ----------------------------------------------------------------------------


def run_a2ibatch(url: str, sc: Scenario, n: int, prefix: str, tmp: Path) -> tuple[int, int]:
    import aioboto3

    from a2ibatch import AwsSettings, Item, Job, SubmitSettings

    items = [Item(id=f"item-{i}", line=i + 1, input_content=input_content(i)) for i in range(n)]
    settings = SubmitSettings(
        task="custom",  # type: ignore[arg-type]  # coerced to TaskType
        flow_definition_arn=FLOW,
        ledger=tmp / f"{prefix}.jsonl",
        name_prefix=prefix,
        preflight=False,
        rate=sc.quota if sc.quota_source == TOLD else 1000.0,
        # Untold and told find the quota by pacing; the Service Quotas scenarios read it
        # from the emulator (before the first start call, in the client's wall time).
        service_quotas=sc.quota_source == SERVICE_QUOTAS,
        aws=AwsSettings(endpoint_url=url, region=REGION),
    )
    session = aioboto3.Session(**CREDENTIALS)

    async def main() -> Any:
        return await Job(settings, session=session, items=items).run()

    summary = asyncio.run(main())
    if sc.quota_source == SERVICE_QUOTAS and "from Service Quotas" not in summary.rates[0]:
        raise RuntimeError(f"the job did not read the quota: {summary.rates}")
    return int(summary.counts["started"]), int(summary.counts["failed"])


def run_threads(url: str, sc: Scenario, n: int, prefix: str, tmp: Path) -> tuple[int, int]:
    import boto3
    import botocore.config
    import botocore.exceptions

    config = botocore.config.Config(
        retries={"mode": "adaptive", "max_attempts": MAX_ATTEMPTS},
        max_pool_connections=WORKERS,
    )
    a2i = boto3.Session(**CREDENTIALS).client(
        "sagemaker-a2i-runtime", endpoint_url=url, config=config
    )

    def one(i: int) -> bool:
        try:
            a2i.start_human_loop(**start_kwargs(prefix, i))
        except botocore.exceptions.ClientError:
            return False
        return True

    with ThreadPoolExecutor(WORKERS) as pool:
        ok = sum(pool.map(one, range(n)))
    return ok, n - ok


def run_gather(url: str, sc: Scenario, n: int, prefix: str, tmp: Path) -> tuple[int, int]:
    import aioboto3
    import botocore.exceptions
    from aiobotocore.config import AioConfig

    async def main() -> int:
        config = AioConfig(
            retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
            max_pool_connections=WORKERS,
        )
        session = aioboto3.Session(**CREDENTIALS)
        async with session.client("sagemaker-a2i-runtime", endpoint_url=url, config=config) as a2i:
            gate = asyncio.Semaphore(WORKERS)

            async def one(i: int) -> bool:
                async with gate:
                    try:
                        await a2i.start_human_loop(**start_kwargs(prefix, i))
                    except botocore.exceptions.ClientError:
                        return False
                    return True

            return sum(await asyncio.gather(*(one(i) for i in range(n))))

    ok = asyncio.run(main())
    return ok, n - ok


def run_sequential(url: str, sc: Scenario, n: int, prefix: str, tmp: Path) -> tuple[int, int]:
    import boto3
    import botocore.config
    import botocore.exceptions

    config = botocore.config.Config(retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS})
    a2i = boto3.Session(**CREDENTIALS).client(
        "sagemaker-a2i-runtime", endpoint_url=url, config=config
    )
    ok = 0
    for i in range(n):
        try:
            a2i.start_human_loop(**start_kwargs(prefix, i))
            ok += 1
        except botocore.exceptions.ClientError:
            pass
    return ok, n - ok


Runner = Callable[[str, Scenario, int, str, Path], tuple[int, int]]
RUNNERS: dict[str, Runner] = {
    A2IBATCH: run_a2ibatch,
    THREADS: run_threads,
    GATHER: run_gather,
    SEQUENTIAL: run_sequential,
}


def run_client(url: str, sc: Scenario, client: str, prefix: str, tmp: Path) -> Result:
    n = sc.sequential_items if client == SEQUENTIAL else sc.items
    configure_emulator(url, quota=sc.quota)
    reset_emulator(url)
    time.sleep(0.3)  # the fresh token bucket fills its burst, as after any idle spell
    # The last run's garbage (its botocore session's models, cyclic) is collected now, not
    # on this run's clock: a full collection over it took 150 ms of a start-up.
    gc.collect()
    changed: list[float] = []
    timer: threading.Timer | None = None
    if sc.halve_at is not None:
        delay = sc.halve_at * sc.items / sc.quota

        def halve() -> None:
            configure_emulator(url, quota=sc.quota / 2)
            changed.append(time.time())

        timer = threading.Timer(delay, halve)
    began = time.time()
    if timer is not None:
        timer.start()
    measured = measure(lambda: RUNNERS[client](url, sc, n, prefix, tmp))
    if timer is not None:
        timer.cancel()
    done, failed = measured.value
    stats = emulator_get(url, "stats")
    histogram = emulator_get(url, "accepted")
    offset = began - float(histogram["started"])
    accepted = [
        (row["second"] - offset, int(row["accepted"]), int(row["throttled"]))
        for row in histogram["seconds"]
    ]
    ideal = sc.ideal_for(n)
    result = Result(
        client=client,
        scenario=sc.key,
        title=sc.title,
        quota=sc.quota,
        items=n,
        done=done,
        failed=failed,
        wall=measured.wall,
        cpu=measured.cpu,
        ideal=ideal,
        calls=int(stats["calls"].get(OPERATION, 0)),
        throttled=int(stats["throttled"]),
        faults=int(stats["faults"]),
        accepted=accepted,
    )
    if histogram.get("first") is not None:
        result.startup = float(histogram["first"]) - began
    if changed:
        result.change_at = changed[0] - began
        result.recovery = recovery_time(result, sc.quota / 2)
    return result


def tail_start(result: Result, quota: float) -> float:
    """When (seconds since the client started) less than a second's worth of items was left."""
    total = 0
    for start, accepted, _ in result.accepted:
        total += accepted
        if total >= result.done - quota:
            return start
    return math.inf


def recovery_time(result: Result, new_quota: float) -> float:
    """Seconds from the quota change until accepted calls are back at 90% of the new quota.

    Read from the emulator's per-second histogram (1 s resolution): the first second after
    the change whose accepted calls fall below 90% starts the dip, the next second at or
    above 90% ends it; 0 if no second falls below.  The run's tail, when less than a
    second's worth of items is left, is not a dip.
    """
    assert result.change_at is not None
    threshold = RECOVERY_SHARE * new_quota
    tail_from = tail_start(result, new_quota)
    dipped = False
    for start, accepted, _ in result.accepted:
        if start + 1.0 <= result.change_at or start >= tail_from:
            continue
        if accepted < threshold:
            dipped = True
        elif dipped:
            return max(0.0, start - result.change_at)
    return math.inf if dipped else 0.0


# -- the floor: a bare aiobotocore call ------------------------------------------------------


@dataclass(frozen=True)
class Bare:
    calls: int
    cpu_ms_per_call: float  # the floor: default client config, tight loop
    client_setup_cpu_ms: float
    fixed_agent_cpu_ms_per_call: float  # a2ibatch's client config (a fixed User-Agent)
    paced_cpu_ms_per_call: float  # default config, paced at 150/s over 40±20 ms


PACED_RATE = 150.0


def bare_aiobotocore(calls: int) -> Bare:
    """CPU per StartHumanLoop of plain aiobotocore, no retries, no ledger, no quota.

    Three figures: the floor the issue names (one client, a tight loop, no latency); the
    same with a2ibatch's client configuration (its fixed User-Agent), to show what of
    a2ibatch's figure is a cheaper call and what is overhead; and calls started at an even
    150/s against a 40±20 ms latency, each as its own task, which is what any client that
    paces its calls pays for event-loop wake-ups and calls in flight.
    """
    import aioboto3
    from aiobotocore.config import AioConfig

    from a2ibatch._aws import user_agent

    retries = {"total_max_attempts": 1, "mode": "standard"}

    async def tight(url: str, tag: str, **config: Any) -> tuple[float, float]:
        session = aioboto3.Session(**CREDENTIALS)
        setup0 = time.process_time()
        aio_config = AioConfig(retries=retries, **config)
        async with session.client(
            "sagemaker-a2i-runtime", endpoint_url=url, config=aio_config
        ) as a2i:
            setup = time.process_time() - setup0
            for i in range(50):
                await a2i.start_human_loop(**start_kwargs(f"{tag}-warm", i))
            cpu0 = time.process_time()
            for i in range(calls):
                await a2i.start_human_loop(**start_kwargs(tag, i))
            cpu = time.process_time() - cpu0
        return 1000.0 * cpu / calls, 1000.0 * setup

    async def paced(url: str, tag: str) -> float:
        session = aioboto3.Session(**CREDENTIALS)
        config = AioConfig(retries=retries, max_pool_connections=WORKERS)
        async with session.client("sagemaker-a2i-runtime", endpoint_url=url, config=config) as a2i:
            for i in range(50):
                await a2i.start_human_loop(**start_kwargs(f"{tag}-warm", i))
            cpu0 = time.process_time()
            began = time.monotonic()
            tasks = []
            for i in range(calls):
                delay = began + i / PACED_RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                call = a2i.start_human_loop(**start_kwargs(tag, i))
                tasks.append(asyncio.ensure_future(call))
            await asyncio.gather(*tasks)
            return 1000.0 * (time.process_time() - cpu0) / calls

    # Best of three: the floor is what the call can cost, not what a busy moment made it.
    with run_subprocess(EmulatorConfig(seed=1)) as url:
        floor, setup = min(asyncio.run(tight(url, f"bare{k}")) for k in range(3))
        agent = user_agent()
        fixed = min(asyncio.run(tight(url, f"agent{k}", user_agent=agent))[0] for k in range(3))
    paced_config = EmulatorConfig(
        seed=1,
        network_ms=NETWORK_MS,
        network_jitter_ms=NETWORK_JITTER_MS,
        processing_ms=40.0,
        processing_jitter_ms=20.0,
    )
    with run_subprocess(paced_config) as url:
        spread = min(asyncio.run(paced(url, f"paced{k}")) for k in range(3))
    return Bare(calls, floor, setup, fixed, spread)


# -- reporting ------------------------------------------------------------------------------


def table(rows: Sequence[Row], bare: Bare, chosen: Sequence[Scenario]) -> str:
    lines = [
        "| client | scenario | items | runs | goodput, worst (x quota) | goodput, median "
        "| from the first call, worst / median | start-up ms, median (worst run's) "
        "| steady state, median | throttled, worst | throttled, median | CPU ms/item, median "
        "| CPU vs bare call | wall s, median | ideal s | failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_key = {sc.key: sc for sc in chosen}
    for row in rows:
        r, runs = row.median, row.runs
        wall, ideal, items = f"{r.wall:.1f}", f"{r.ideal:.1f}", str(r.items)
        sc = by_key[r.scenario]
        if r.items != sc.items:  # sequential: the wall time scaled to the scenario's items
            n = sc.items
            wall = f"{r.wall:.1f} (≈{r.wall * n / r.items:.0f} for {n})"
            ideal = f"{r.ideal:.1f} ({sc.ideal_for(n):.1f})"
        extra = ""
        recoveries = [x.recovery for x in runs if x.recovery is not None]
        if recoveries:
            extra = f"; {_recovery(max(recoveries))}"
        median_steady = row.median_of_known(lambda x: x.steady)
        steady = "" if median_steady is None else f"{median_steady:.3f}"
        cpu = row.median_of(lambda x: x.cpu_ms_per_item)
        worst_throttled = max(x.throttled_share for x in runs)
        median_throttled = row.median_of(lambda x: x.throttled_share)
        firsts = [x.from_first_call for x in runs if x.from_first_call is not None]
        median_first = row.median_of_known(lambda x: x.from_first_call)
        first = "" if median_first is None else f"{min(firsts):.3f} / {median_first:.3f}"
        median_startup, worst_startup = row.median_of_known(lambda x: x.startup), row.worst.startup
        startup = ""
        if median_startup is not None and worst_startup is not None:
            startup = f"{1000 * median_startup:.0f} ({1000 * worst_startup:.0f})"
        lines.append(
            f"| {r.client} | {r.title}{extra} | {items} | {len(runs)} "
            f"| {row.worst.goodput:.3f} | {row.median_of(lambda x: x.goodput):.3f} "
            f"| {first} | {startup} | {steady} "
            f"| {100 * worst_throttled:.1f}% | {100 * median_throttled:.1f}% | {cpu:.2f} "
            f"| {cpu / bare.cpu_ms_per_call:.2f}x | {wall} | {ideal} "
            f"| {max(x.failed for x in runs)} |"
        )
    floor = bare.cpu_ms_per_call
    for client, how, cpu in (
        ("bare aiobotocore call", "tight loop, no quota, no latency", floor),
        (
            "bare aiobotocore call, a2ibatch's client config",
            "tight loop, fixed User-Agent",
            bare.fixed_agent_cpu_ms_per_call,
        ),
        (
            "bare aiobotocore calls, paced",
            f"{PACED_RATE:.0f}/s, 40±20 ms, no quota, a task per call",
            bare.paced_cpu_ms_per_call,
        ),
    ):
        lines.append(
            f"| {client} | {how} | {bare.calls} | | | | | | | | | {cpu:.2f} "
            f"| {cpu / floor:.2f}x | | | |"
        )
    return "\n".join(lines)


def _recovery(seconds: float) -> str:
    if math.isinf(seconds):
        return "not back at 90% before the end"
    return f"back at 90% in {seconds:.0f} s"


def chart(results: Sequence[Result], paths: Sequence[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("untold", "halving") if any(r.scenario == k for r in results)]
    if not panels:
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.6 * len(panels)), squeeze=False)
    colours = {A2IBATCH: "C0", THREADS: "C1", GATHER: "C2", SEQUENTIAL: "C3"}
    for ax, key in zip(axes[:, 0], panels, strict=True):
        rows = [r for r in results if r.scenario == key]
        quota = rows[0].quota
        for r in rows:
            xs = [t + 0.5 for t, _, _ in r.accepted if t > -1]
            ys = [a for t, a, _ in r.accepted if t > -1]
            label = f"{r.client}: {r.goodput:.2f} x quota, {100 * r.throttled_share:.1f}% thr."
            ax.step(xs, ys, where="mid", color=colours[r.client], label=label)
        change = next((r.change_at for r in rows if r.change_at is not None), None)
        if change is None:
            ax.axhline(quota, color="grey", linestyle="--", linewidth=1, label="quota")
        else:
            end = max(r.wall for r in rows)
            ax.plot(
                [0, change, change, end],
                [quota, quota, quota / 2, quota / 2],
                color="grey",
                linestyle="--",
                linewidth=1,
                label="quota",
            )
        ax.set_title(rows[0].title)
        ax.set_xlabel("seconds since the client started")
        ax.set_ylabel("accepted StartHumanLoop / s")
        ax.set_ylim(0, quota * 1.25)
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under 2 minutes")
    parser.add_argument("--only", nargs="*", metavar="SCENARIO", help="run these scenarios")
    parser.add_argument("--clients", nargs="*", metavar="CLIENT", choices=CLIENTS)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="runs of a2ibatch per scenario; the table shows the worst and the median",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/throughput.png")
    parser.add_argument(
        "--replot", action="store_true", help="redraw the charts from the last run's JSON"
    )
    args = parser.parse_args(argv)
    charts = [OUT / "throughput.png"] + ([] if args.no_docs else [DOCS_CHART])
    if args.replot:
        saved = orjson.loads((OUT / "throughput.json").read_bytes())
        chart([Row([Result(**r) for r in runs]).median for runs in saved["rows"]], charts)
        return 0
    for name in ("botocore", "aiobotocore", "boto3", "aioboto3", "urllib3", "aiohttp"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _quiet_structlog()

    chosen = [s for s in scenarios(args.quick) if not args.only or s.key in args.only]
    started = time.perf_counter()
    bare = bare_aiobotocore(500 if args.quick else 2000)
    print(
        f"bare aiobotocore call: {bare.cpu_ms_per_call:.3f} CPU ms "
        f"(client set-up {bare.client_setup_cpu_ms:.0f} ms); with a2ibatch's client config "
        f"{bare.fixed_agent_cpu_ms_per_call:.3f}; paced at {PACED_RATE:.0f}/s over 40±20 ms "
        f"{bare.paced_cpu_ms_per_call:.3f}",
        flush=True,
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="a2ibatch-bench-") as tmp:
        for k, sc in enumerate(chosen):
            clients = [c for c in sc.clients if not args.clients or c in args.clients]
            with ExitStack() as emulators:
                url = emulators.enter_context(run_subprocess(sc.emulator(args.seed + k)))
                # A first call so the emulator's own start-up is not the first client's.
                RUNNERS[SEQUENTIAL](url, sc, 1, f"warm{k}", Path(tmp))
                for j, client in enumerate(clients):
                    runs = []
                    for rep in range(args.repeat if client == A2IBATCH else 1):
                        prefix = f"r{k}c{j}n{rep}"
                        r = run_client(url, sc, client, prefix, Path(tmp))
                        runs.append(r)
                        extra = "" if r.recovery is None else f", {_recovery(r.recovery)}"
                        if r.steady is not None:
                            extra += f", steady {r.steady:.3f}"
                        if r.startup is not None and r.from_first_call is not None:
                            extra += (
                                f", start-up {1000 * r.startup:.0f} ms "
                                f"(from the first call {r.from_first_call:.3f})"
                            )
                        print(
                            f"{sc.key:8} {client:28} goodput {r.goodput:.3f} x quota, "
                            f"throttled {100 * r.throttled_share:4.1f}%, "
                            f"CPU {r.cpu_ms_per_item:.2f} ms/item, wall {r.wall:.1f} s "
                            f"(ideal {r.ideal:.1f}), failed {r.failed}{extra}",
                            flush=True,
                        )
                    row = Row(runs)
                    rows.append(row)
                    if len(runs) > 1:
                        print(
                            f"{sc.key:8} {client:28} worst {row.worst.goodput:.3f}, median "
                            f"{row.median_of(lambda x: x.goodput):.3f} x quota; throttled "
                            f"worst {100 * max(x.throttled_share for x in runs):.1f}%, "
                            f"median {100 * row.median_of(lambda x: x.throttled_share):.1f}%",
                            flush=True,
                        )
    elapsed = time.perf_counter() - started
    text = table(rows, bare, chosen)
    command = "python benchmarks/bench_throughput.py" + (" --quick" if args.quick else "")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    header = (
        f"{command}  # {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.python_version()}, "
        f"{platform.machine()}, load average at the end {load}, benchmark took {elapsed:.0f} s"
    )
    print()
    print(header)
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "throughput.md").write_text(f"    {header}\n\n{text}\n")
    (OUT / "throughput.json").write_bytes(
        orjson.dumps(
            {
                "bare": asdict(bare),
                "rows": [[asdict(r) for r in row.runs] for row in rows],
                "header": header,
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    chart([row.median for row in rows], charts)
    return 0


def _quiet_structlog() -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


if __name__ == "__main__":
    sys.exit(main())
