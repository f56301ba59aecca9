"""`track`: follow the job's human loops to a final status, recording each change.

Every loop the ledger names (its items' ``started`` outcomes) that is not yet known to be
final is looked up, in ListHumanLoops pages over the job's creation windows where that is
cheaper than a describe per loop (`_listing`), and a ``loop_status`` record (status and
creation time) is appended whenever something changed.  With `watch`, rounds repeat until
every loop is final; each round reads the ledger again, so loops that a submit still running
starts meanwhile are tracked too, and lists only the windows of the loops still open.
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
from .._retry import RetryPolicy
from .._settings import AwsSettings
from ._common import DEFAULT_INTERVAL, Context, open_job
from ._listing import refresh


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
    pages: int = 0  # ListHumanLoops pages
    described: int = 0  # DescribeHumanLoop calls (loops no page showed)

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
            "pages": self.pages,
            "described": self.described,
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
        primary="ListHumanLoops",
    ) as job:
        rounds = 0
        timed_out = False
        errors: dict[str, int] = {}
        pages = described = 0
        while True:
            if rounds:
                # Loops a submit still running has started since, and records of other
                # trackers, are in the ledger now: read it again.
                await job.reread()
            pending = [loop for loop in job.index.loops.values() if not loop.final]
            errors = {}
            if pending:
                rounds += 1
                result = await refresh(job, pending)
                errors, pages, described = result.errors, pages + result.pages, (
                    described + result.described
                )
                if job.writer is not None:
                    await job.writer.checkpoint()
            report = _report(job, rounds, errors, False, began, pages, described)
            if on_round is not None:
                await on_round(report)
            if not watch or report.done:
                break
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            await anyio.sleep(min(interval, deadline - now))
        return _report(job, rounds, errors, timed_out, began, pages, described)


def _report(
    job: Context,
    rounds: int,
    errors: dict[str, int],
    timed_out: bool,
    began: float,
    pages: int,
    described: int,
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
        pages=pages,
        described=described,
    )
