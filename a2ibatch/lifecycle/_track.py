"""`track`: follow the job's human loops to a final status, recording each change.

Every loop the ledger names (its items' ``started`` outcomes) that is not yet known to be
final is asked about, and a ``loop_status`` record is appended whenever a loop's status
changed.  With `watch`, rounds repeat until every loop is final; each round reads the ledger
again, so loops that a submit still running starts meanwhile are tracked too.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from .._aws import A2I_SERVICE
from .._errors import ConfigError, setting
from .._pool import fan_out
from .._retry import RetryPolicy
from .._settings import AwsSettings
from ..ledger import LoopState
from ._common import DEFAULT_INTERVAL, Context, open_job, read_job


@dataclass
class TrackReport:
    """What `track` found: every loop's last known status, and what changed this time."""

    ledger: str
    counts: dict[str, int]  # loops by last known status ("Untracked": never described)
    changed: int  # loop_status records appended
    rounds: int
    pending: int  # loops not (yet) known to be final
    errors: dict[str, int]  # describe failures by error code (those loops stay pending)
    timed_out: bool
    elapsed: float
    calls: int = 0
    throttled: int = 0

    @property
    def done(self) -> bool:
        """Every loop is final."""
        return self.pending == 0

    @property
    def exit_code(self) -> int:
        return 1 if self.errors or self.timed_out else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "loops": self.counts,
            "changed": self.changed,
            "rounds": self.rounds,
            "pending": self.pending,
            "errors": self.errors,
            "timed_out": self.timed_out,
            "elapsed_s": round(self.elapsed, 3),
            "calls": self.calls,
            "throttled": self.throttled,
        }


async def track(
    ledger: str | os.PathLike[str],
    *,
    session: Any | None = None,
    aws: AwsSettings | None = None,
    watch: bool = False,
    interval: float = DEFAULT_INTERVAL,
    timeout: float | None = None,  # noqa: ASYNC109 - a watch's deadline: it reports timed_out
    rate: float | None = None,
    concurrency: int | None = None,
    retry_policy: RetryPolicy | None = None,
    on_round: Callable[[TrackReport], Awaitable[None]] | None = None,
) -> TrackReport:
    """Ask about every loop of the ledger not known to be final; record each change.

    With `watch`, repeat every `interval` seconds until every loop is final or `timeout`
    seconds have passed (`timed_out` is then set).  `on_round` receives the report after
    each round (for a progress display).  Records of each round are written before the
    next round starts.
    """
    if interval < 0 or (timeout is not None and timeout < 0):
        raise ConfigError(f"{setting('interval')} and {setting('timeout')} must not be negative")
    began = time.monotonic()
    deadline = math.inf if timeout is None else began + timeout
    async with open_job(
        ledger,
        aws=aws,
        session=session,
        services={A2I_SERVICE: 1024},
        rate=rate,
        concurrency=concurrency,
        retry_policy=retry_policy,
        primary="DescribeHumanLoop",
    ) as job:
        rounds = 0
        timed_out = False
        errors: dict[str, int] = {}
        while True:
            if rounds:
                # Loops a submit still running has started since, and records of other
                # trackers, are in the ledger now: read it again.
                fresh = await read_job(ledger)
                job.index.loops = fresh.loops
            pending = [loop for loop in job.index.loops.values() if not loop.final]
            errors = {}
            if pending:
                rounds += 1
                await _round(job, pending, errors)
                if job.writer is not None:
                    await job.writer.checkpoint()
            report = _report(job, rounds, errors, False, began)
            if on_round is not None:
                await on_round(report)
            if not watch or report.done:
                break
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            await anyio.sleep(min(interval, deadline - now))
        return _report(job, rounds, errors, timed_out, began)


async def _round(job: Context, pending: list[LoopState], errors: dict[str, int]) -> None:
    async def refresh(loop: LoopState) -> None:
        await job.describe(loop, errors)

    await fan_out(job.caller.meters.cap, pending, refresh)


def _report(
    job: Context, rounds: int, errors: dict[str, int], timed_out: bool, began: float
) -> TrackReport:
    loops = job.index.loops
    return TrackReport(
        ledger=job.index.path,
        counts=job.index.loop_counts(),
        changed=job.changed,
        rounds=rounds,
        pending=sum(not loop.final for loop in loops.values()),
        errors=dict(errors),
        timed_out=timed_out,
        elapsed=time.monotonic() - began,
        calls=job.counters.calls,
        throttled=job.counters.throttled,
    )
