"""What a person watching a job sees: a live progress line, then a summary table.

On a terminal: a rich progress bar (done/total, rate, ETA, started / not activated / failed,
the current send rate, a pause notice).  Elsewhere: a structured `progress` log event every
few seconds, so a job under cron or CI leaves a readable trail.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import structlog
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
from rich.table import Table

from .._api import Job, Summary

log = structlog.get_logger("a2ibatch")


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
    return " · ".join(parts)


async def watch(
    job: Job, total: int | None, *, console: Console | None, interval: float = 5.0
) -> None:
    """Show progress until cancelled: a bar on a terminal, log events otherwise."""
    if console is not None and console.is_terminal:
        await _bar(job, total, console)
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
                c = job.counters
                done = c.decided + c.skipped + c.skipped_failed
                progress.update(task, completed=done, status=_status_text(job))
                await anyio.sleep(0.125)
        finally:
            c = job.counters
            done = c.decided + c.skipped + c.skipped_failed
            progress.update(task, completed=done, status=_status_text(job))


async def _log_lines(job: Job, total: int | None, interval: float) -> None:
    start = time.monotonic()
    while True:
        await anyio.sleep(interval)
        c = job.counters
        log.info(
            "progress",
            done=c.decided + c.skipped + c.skipped_failed,
            total=total,
            started=c.started,
            not_activated=c.not_activated,
            failed=c.failed,
            invalid=c.invalid,
            rate=round(job.rate, 1),
            paused=c.paused,
            elapsed_s=round(time.monotonic() - start, 1),
        )


def summary_table(summary: Summary) -> Table:
    """The end-of-run table."""
    c = summary.counts
    table = Table(title=f"a2ibatch {summary.task} job", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows: list[tuple[str, Any]] = [
        ("started", c["started"]),
        ("  of which recovered", c["recovered"]),
        ("not activated", c["not_activated"]),
        ("failed", c["failed"]),
        ("invalid lines", c["invalid"]),
        ("already done (skipped)", c["skipped"]),
        ("failed earlier (skipped; --retry-failed)", c["skipped_failed"]),
        ("calls", c["calls"]),
        ("throttled calls", f"{c['throttled']} ({_pct(c['throttled'], c['calls'])})"),
        ("retries", c["retries"]),
        ("paused for quota", f"{c['paused_seconds']:.1f} s"),
        ("elapsed", f"{summary.elapsed:.1f} s"),
        ("items/s", f"{_per_second(c, summary.elapsed):.1f}"),
        ("ledger", summary.ledger),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    if summary.aborted:
        table.add_row("[red]stopped early", summary.aborted)
    elif summary.stopped:
        table.add_row("[yellow]stopped", "on request; rerun the same command to carry on")
    return table


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "0%"


def _per_second(c: Any, elapsed: float) -> float:
    sent = c["started"] + c["not_activated"] + c["failed"]
    return sent / elapsed if elapsed > 0 else 0.0
