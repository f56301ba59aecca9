"""What a person watching a job sees: a live progress line, then a summary.

On a terminal: a rich progress bar on stderr (done/total, rate, ETA, started / not activated
/ failed, the current send rate, a pause notice).  Elsewhere: a structured ``progress`` log
event every few seconds, so a job under cron or CI leaves a readable trail.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import anyio
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .. import Job, Summary

_log = logging.getLogger("a2ibatch.cli")


def cli_log(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """A structured event of the command itself (rendered like the library's)."""
    text = " ".join([event, *(f"{k}={v}" for k, v in fields.items())])
    _log.log(level, text.replace("%", "%%"), extra={"a2ibatch_event": {"event": event, **fields}})


def _done(job: Job) -> int:
    c = job.counters
    return c.decided + c.skipped_all


def _status_text(job: Job) -> str:
    c = job.counters
    parts = [
        f"[green]{c.started} started[/]",
        f"{c.not_activated} not activated",
        f"[red]{c.failed} failed[/]" if c.failed else "0 failed",
    ]
    if c.invalid:
        parts.append(f"[yellow]{c.invalid} invalid[/]")
    if c.skipped:
        parts.append(f"{c.skipped} already done")
    parts.append(f"{job.rate:.0f} req/s")
    if c.paused:
        parts.append("[bold yellow]PAUSED: in-progress loop quota full[/]")
    if c.unreachable:
        parts.append("[bold yellow]WAITING: endpoint unreachable, probing[/]")
    return " · ".join(parts)


async def watch(job: Job, total: int | None, *, bar: bool = True, interval: float = 5.0) -> None:
    """Show progress until cancelled: a bar on a terminal, log events otherwise."""
    if bar and sys.stderr.isatty():
        await _bar(job, total, Console(stderr=True))
    else:
        await _log_lines(job, total, interval)


async def _bar(job: Job, total: int | None, console: Console) -> None:
    columns = (
        TextColumn("[bold]submitting"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=False, refresh_per_second=8) as progress:
        task = progress.add_task("submit", total=total, status="")
        try:
            while True:
                progress.update(task, completed=_done(job), status=_status_text(job))
                await anyio.sleep(0.125)
        finally:
            progress.update(task, completed=_done(job), status=_status_text(job))


async def _log_lines(job: Job, total: int | None, interval: float) -> None:
    start = time.monotonic()
    while True:
        await anyio.sleep(interval)
        c = job.counters
        cli_log(
            "progress",
            done=_done(job),
            total=total,
            started=c.started,
            not_activated=c.not_activated,
            failed=c.failed,
            invalid=c.invalid,
            rate=round(job.rate, 1),
            paused=c.paused,
            unreachable=c.unreachable,
            elapsed_s=round(time.monotonic() - start, 1),
        )


def summary_rows(summary: Summary, repaired_bytes: int = 0) -> list[tuple[str, Any]]:
    """The end-of-run summary as (label, value) rows.

    Item rows count what this run decided; "invalid lines" counts manifest lines (with or
    without a readable id), as ``a2ibatch status`` does for the last run.
    """
    c = summary.counts
    rows: list[tuple[str, Any]] = [
        ("started", c["started"]),
        ("  of which recovered (found after a lost answer)", c["recovered"]),
        ("not activated", c["not_activated"]),
        ("failed", c["failed"]),
        ("invalid lines", c["invalid"]),
    ]
    if c.get("unverified"):
        rows.append(("unverified (a rerun checks them first)", c["unverified"]))
    if c.get("name_taken"):
        rows.append(("name taken by a loop of unknown owner", c["name_taken"]))
    rows += [
        ("already done (skipped)", c["skipped"]),
        ("failed earlier (skipped; --retry-failed)", c["skipped_failed"]),
    ]
    if c.get("skipped_name_taken"):
        rows.append(("name taken earlier (skipped)", c["skipped_name_taken"]))
    if c.get("skipped_invalid"):
        rows.append(("invalid lines before the resume point", c["skipped_invalid"]))
    if c.get("other_shards"):
        rows.append(("other shards' items", c["other_shards"]))
    if c.get("reanalysed"):
        rows.append(("analysed again after a lost answer", c["reanalysed"]))
    rows += [
        ("calls", c["calls"]),
        ("throttled calls", f"{c['throttled']} ({_pct(c['throttled'], c['calls'])})"),
        ("retries", c["retries"]),
        ("paused for quota", f"{c['paused_seconds']:.1f} s"),
    ]
    if c.get("unreachable_seconds"):
        rows.append(("waited for the endpoint", f"{c['unreachable_seconds']:.1f} s"))
    rows += [("rate", line) for line in summary.rates]
    if summary.resumed_after_line:
        rows.append(("resumed after manifest line", summary.resumed_after_line))
    rows += [
        ("elapsed", f"{summary.elapsed:.1f} s"),
        ("items/s", f"{_per_second(c, summary.elapsed):.1f}"),
        ("ledger", summary.ledger),
    ]
    if repaired_bytes:
        rows.append(("ledger repaired", f"{repaired_bytes} bytes of a torn tail cut off"))
    if summary.aborted:
        rows.append(("stopped early", "see the error below; rerun the same command to resume"))
    elif summary.stopped:
        rows.append(("stopped", "on request; rerun the same command to carry on"))
    return rows


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "0%"


def _per_second(c: Any, elapsed: float) -> float:
    sent = c["started"] + c["not_activated"] + c["failed"]
    return sent / elapsed if elapsed > 0 else 0.0
