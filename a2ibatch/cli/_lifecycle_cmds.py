"""Commands for after submit: track, results, stop, delete, reconcile.

Each command parses its flags, calls one function of the library, and prints what it
reports; the work and its rules live in the library.  Exit codes: 0 done and nothing amiss;
1 something needs attention (loops not final, unreadable outputs, differences found,
action refused); 2 usage or configuration; 3 a fatal service error (access denied ...).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from .. import (
    ActionReport,
    ConfigError,
    ReconcileReport,
    ResultsReport,
    TrackReport,
    delete_loops,
    reconcile,
    results,
    stop_loops,
    track,
)
from . import _logging
from ._args import add_aws, add_logging, aws_settings
from ._help import EXIT_CODES, LIFECYCLE_EXAMPLES, SETTINGS, Formatter, epilog
from ._output import Output, error_console

_DESCRIPTIONS = {
    "track": "Record the status of the job's human loops as the service reports them. With "
    "--watch, repeat until every loop is final (Completed, Failed, Stopped) or --timeout.",
    "results": "Write the reviewers' answers of the job's completed loops into one file, "
    "joined to the item ids (and, with --manifest, to the manifest lines). Rerun to resume.",
    "stop": "Stop the job's in-progress human loops (they go Stopping, then Stopped). Loops "
    "the ledger does not name are never touched.",
    "delete": "Delete the job's finished human loops (Completed, Failed, Stopped). Answers "
    "already in your S3 bucket stay.",
    "reconcile": "Compare the ledger with the service's list of the job's loops: loops with "
    "this job's names that the ledger lacks, and ledger loops the service no longer has.",
}


def _parser(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=_DESCRIPTIONS[name],
        epilog=epilog(LIFECYCLE_EXAMPLES[name], SETTINGS, EXIT_CODES),
        formatter_class=Formatter,
    )
    p.add_argument(
        "ledger", help="the ledger submit wrote: a file, a directory or s3://bucket/prefix/"
    )
    return p


def add_commands(sub: Any) -> None:
    """Register the lifecycle subcommands on the main parser's subparsers."""
    p = _parser(sub, "track", "record the status of the job's human loops")
    p.add_argument("--watch", action="store_true", help="repeat until every loop is final")
    p.add_argument(
        "--interval",
        type=float,
        default=60.0,
        help="seconds between rounds with --watch (default %(default)g)",
    )
    p.add_argument("--timeout", type=float, help="with --watch, give up after this many seconds")
    _tuning(p)
    _common(p)
    p.set_defaults(func=cmd_track)

    p = _parser(sub, "results", "write the reviewers' answers of completed loops")
    p.add_argument(
        "--out", required=True, help="answers file (.jsonl or .csv); rerun to resume (required)"
    )
    p.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        help="default: from --out's name (.csv is CSV), else jsonl",
    )
    p.add_argument("--manifest", help="add each item's manifest line and input (JSONL only)")
    p.add_argument(
        "--concurrency", type=int, default=32, help="outputs read at once (default %(default)d)"
    )
    _common(p)
    p.set_defaults(func=cmd_results)

    for action, help_text in (
        ("stop", "stop the job's in-progress human loops"),
        ("delete", "delete the job's finished human loops (Completed, Failed, Stopped)"),
    ):
        p = _parser(sub, action, help_text)
        p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        _tuning(p)
        _common(p)
        p.set_defaults(func=functools.partial(cmd_action, action))

    p = _parser(sub, "reconcile", "compare the ledger with the service's list of loops")
    _common(p)
    p.set_defaults(func=cmd_reconcile)


def _tuning(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", type=float, help="requests/second ceiling (default: find the quota)")
    p.add_argument("--concurrency", type=int, help="calls in flight (default: rate x latency)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--config", help="a TOML file whose [aws] table says where to call")
    add_aws(p)
    add_logging(p, level="warning")


def _run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return anyio.run(fn, backend="asyncio")


def _counts(out: Output, title: str, counts: Mapping[str, int]) -> None:
    out.line((title, "bold"))
    if not counts:
        out.line("  (none)")
    out.pairs(sorted(counts.items()))


def _start(args: argparse.Namespace) -> tuple[Output, Any]:
    _logging.configure(args.log_format, args.log_level)
    return Output(json=args.json), aws_settings(args)


# -- track -------------------------------------------------------------------------------


def cmd_track(args: argparse.Namespace) -> int:
    out, aws = _start(args)
    progress = error_console()

    async def on_round(report: TrackReport) -> None:
        if args.watch and sys.stderr.isatty():
            counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items()))
            progress.print(f"round {report.rounds}: {counts}; {report.pending} not final")

    report: TrackReport = _run(
        functools.partial(
            track,
            args.ledger,
            aws=aws,
            watch=args.watch,
            interval=args.interval,
            timeout=args.timeout,
            rate=args.rate,
            concurrency=args.concurrency,
            on_round=on_round,
        )
    )
    if out.json:
        out.record(report.to_dict())
        return report.exit_code
    _counts(out, "human loops by status:", report.counts)
    out.line(f"  {report.changed} status change(s) recorded, {report.pending} not final, "
             f"{report.calls} call(s)")
    for code, n in sorted(report.errors.items()):
        out.line((f"  {n} loop(s) could not be described: ", "red"), code)
    if report.timed_out:
        out.line(f"  gave up waiting after {args.timeout:g} s; run track again to carry on")
    return report.exit_code


# -- results -----------------------------------------------------------------------------


def cmd_results(args: argparse.Namespace) -> int:
    out, aws = _start(args)
    if args.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    report: ResultsReport = _run(
        functools.partial(
            results,
            args.ledger,
            args.out,
            aws=aws,
            format=args.format,
            manifest=args.manifest,
            concurrency=args.concurrency,
        )
    )
    if out.json:
        out.record(report.to_dict())
        return report.exit_code
    out.line(f"{report.written} answer row(s) written to ", report.out,
             f" ({report.format}); {report.already_present} already there; "
             f"{report.completed} completed loop(s)")
    if report.missing:
        found = sorted((report.missing_codes or {}).items())
        codes = ", ".join(f"{code} x{n}" for code, n in found)
        out.line((f"  {report.missing} output(s) not found yet ({codes})", "yellow"),
                 "; check the flow definition's S3 output path and this identity's s3:GetObject "
                 "on it, or run results again later")
    for code, n in sorted(report.errors.items()):
        out.line((f"  {n} output(s) unreadable: ", "red"), code)
    if not report.completed:
        out.line("  no completed loops recorded: run `a2ibatch track LEDGER` first")
    return report.exit_code


# -- stop and delete ---------------------------------------------------------------------


def _confirm(question: str, yes: bool) -> bool:
    """Ask on the terminal; without one, refuse unless --yes said so already."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise ConfigError("stdin is not a terminal, so nothing can be confirmed: pass --yes")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def cmd_action(action: str, args: argparse.Namespace) -> int:
    out, aws = _start(args)
    question = (
        f"{action.capitalize()} the {'in-progress' if action == 'stop' else 'finished'} human "
        f"loops of ledger {args.ledger}? This cannot be undone."
    )
    if not _confirm(question, args.yes):
        out.line("nothing done")
        return 1
    fn = stop_loops if action == "stop" else delete_loops
    report: ActionReport = _run(
        functools.partial(fn, args.ledger, aws=aws, rate=args.rate, concurrency=args.concurrency)
    )
    if out.json:
        out.record(report.to_dict())
        return report.exit_code
    past = "stopped" if action == "stop" else "deleted"
    out.line(f"{report.acted} human loop(s) {past} of {report.candidates} offered by the ledger")
    if report.skipped:
        _counts(out, "  left alone, by status:", report.skipped)
    for code, n in sorted(report.errors.items()):
        out.line((f"  {n} failed: ", "red"), code)
    return report.exit_code


# -- reconcile ---------------------------------------------------------------------------


def cmd_reconcile(args: argparse.Namespace) -> int:
    out, aws = _start(args)
    report: ReconcileReport = _run(functools.partial(reconcile, args.ledger, aws=aws))
    if out.json:
        out.record(report.to_dict())
        return report.exit_code
    out.line(
        f"{report.service_loops} loop(s) listed for the flow definition from {report.since} "
        f"to {report.until} ({len(report.windows)} window(s)); "
        f"{report.ledger_loops} in the ledger"
    )
    if report.ok:
        out.line("ledger and service agree")
        return 0
    if report.missing_from_ledger:
        out.line(f"{len(report.missing_from_ledger)} loop(s) with this job's prefix missing:")
        for loop in report.missing_from_ledger[:100]:
            hint = " (intent recorded: rerun submit to record it)" if loop.pending_intent else ""
            out.line("  ", loop.loop_name, f" {loop.status} created {loop.creation_time}", hint)
    if report.unknown_to_service:
        out.line(f"{len(report.unknown_to_service)} ledger loop(s) the service does not know:")
        for entry in report.unknown_to_service[:100]:
            out.line("  id ", entry.id, ": ", entry.human_loop_arn or entry.loop_name)
    return 1


__all__ = ["add_commands"]
