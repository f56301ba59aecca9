"""Commands for after submit: track, results, stop, delete, reconcile.

Each command parses its flags, calls one function of `a2ibatch._lifecycle`, and prints what
it reports; the work and its rules live in the library.  Exit codes: 0 done and nothing
amiss; 1 something needs attention (loops not final, unreadable outputs, differences found,
action refused); 2 usage or configuration; 3 a fatal service error (access denied ...).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import orjson
from rich.console import Console

from .. import _lifecycle, _results
from .._config import ENV_PREFIX, AwsSettings
from .._errors import ConfigError, LedgerError
from . import _logging
from ._args import add_aws, add_logging


def add_commands(sub: Any) -> None:
    """Register the lifecycle subcommands on the main parser's subparsers."""
    p = sub.add_parser("track", help="record the status of the job's human loops")
    _ledger(p)
    p.add_argument(
        "--watch", action="store_true", help="repeat until every loop is final (or --timeout)"
    )
    p.add_argument(
        "--interval",
        type=float,
        default=_lifecycle.DEFAULT_INTERVAL,
        help="seconds between rounds with --watch (default %(default)g)",
    )
    p.add_argument("--timeout", type=float, help="with --watch, give up after this many seconds")
    _tuning(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _common(p)
    p.set_defaults(func=cmd_track)

    p = sub.add_parser("results", help="write the reviewers' answers of completed loops")
    _ledger(p)
    p.add_argument("--out", type=Path, required=True, help="answers file; rerun to resume")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("--manifest", help="add each item's manifest line and input (JSONL only)")
    p.add_argument(
        "--concurrency", type=int, default=32, help="outputs read at once (default %(default)d)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _common(p)
    p.set_defaults(func=cmd_results)

    for action, help_text in (
        ("stop", "stop the job's in-progress human loops"),
        ("delete", "delete the job's finished human loops (Completed, Failed, Stopped)"),
    ):
        p = sub.add_parser(action, help=help_text)
        _ledger(p)
        p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        _tuning(p)
        p.add_argument("--json", action="store_true", help="print the report as JSON")
        _common(p)
        p.set_defaults(func=functools.partial(cmd_action, action))

    p = sub.add_parser("reconcile", help="compare the ledger with the service's list of loops")
    _ledger(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _common(p)
    p.set_defaults(func=cmd_reconcile)


def _ledger(p: argparse.ArgumentParser) -> None:
    p.add_argument("ledger", type=Path, help="the ledger submit wrote")


def _tuning(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", type=float, help="requests/second ceiling (default: find the quota)")
    p.add_argument("--concurrency", type=int, help="calls in flight (default: rate x latency)")


def _common(p: argparse.ArgumentParser) -> None:
    add_aws(p)
    add_logging(p, level="warning")


def _aws(args: argparse.Namespace) -> AwsSettings:
    """AWS settings from the flags, else the same `A2IBATCH_*` variables submit reads."""

    def pick(name: str) -> str | None:
        value: str | None = getattr(args, name)
        return value if value else os.environ.get(ENV_PREFIX + name.upper()) or None

    insecure = args.allow_insecure_endpoint or os.environ.get(
        ENV_PREFIX + "ALLOW_INSECURE_ENDPOINT", ""
    ).lower() in ("1", "true", "yes", "on")
    return AwsSettings(
        endpoint_url=pick("endpoint_url"),
        region=pick("region"),
        profile=pick("profile"),
        allow_insecure_endpoint=insecure,
    )


def _start(args: argparse.Namespace) -> AwsSettings:
    _logging.configure(args.log_format, args.log_level)
    if not args.ledger.exists():
        raise LedgerError(f"no ledger at {args.ledger}")
    return _aws(args)


def _run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return anyio.run(fn, backend="asyncio")


def _print_json(data: Mapping[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _print_counts(out: Console, title: str, counts: Mapping[str, int]) -> None:
    out.print(title)
    if not counts:
        out.print("  (none)")
    for state, n in sorted(counts.items()):
        out.print(f"  {state:<12} {n}")


# -- track -------------------------------------------------------------------------------


def cmd_track(args: argparse.Namespace) -> int:
    aws = _start(args)
    progress = Console(stderr=True, highlight=False)

    async def on_round(report: _lifecycle.TrackReport) -> None:
        if args.watch and not args.json:
            counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items()))
            progress.print(f"round {report.rounds}: {counts}; {report.pending} not final")

    report: _lifecycle.TrackReport = _run(
        functools.partial(
            _lifecycle.track,
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
    if args.json:
        _print_json(report.to_dict())
        return report.exit_code
    out = Console(highlight=False)
    _print_counts(out, f"human loops of {args.ledger} by status:", report.counts)
    out.print(f"  {report.changed} status change(s) recorded, {report.pending} not final")
    for code, n in sorted(report.errors.items()):
        out.print(f"  [red]{n} loop(s) could not be described: {code}[/]")
    if report.timed_out:
        out.print(f"  gave up waiting after {args.timeout:g} s; run track again to carry on")
    return report.exit_code


# -- results -----------------------------------------------------------------------------


def cmd_results(args: argparse.Namespace) -> int:
    aws = _start(args)
    if args.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    report: _results.ResultsReport = _run(
        functools.partial(
            _results.results,
            args.ledger,
            args.out,
            aws=aws,
            format=args.format,
            manifest=args.manifest,
            concurrency=args.concurrency,
        )
    )
    if args.json:
        _print_json(report.to_dict())
        return report.exit_code
    out = Console(highlight=False)
    out.print(
        f"{report.written} answer row(s) written to {report.out}; "
        f"{report.already_present} already there; {report.completed} completed loop(s)"
    )
    if report.missing:
        out.print(f"  [yellow]{report.missing} output(s) not found yet[/]; run results again later")
    for code, n in sorted(report.errors.items()):
        out.print(f"  [red]{n} output(s) unreadable: {code}[/]")
    if not report.completed:
        out.print("  no completed loops recorded: run `a2ibatch track LEDGER` first")
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
    aws = _start(args)
    table = _lifecycle.load_loops(args.ledger)
    candidates = len(table.candidates("stop" if action == "stop" else "delete"))
    out = Console(highlight=False)
    if not candidates:
        out.print(f"no loop of {args.ledger} can be {_lifecycle.action_past(action)}")
        return 0
    what = "in-progress" if action == "stop" else "finished"
    question = (
        f"{action.capitalize()} the {what} ones among {candidates} human loop(s) of flow "
        f"definition {table.header.flow_definition_arn} (name prefix "
        f"{table.header.name_prefix})? This cannot be undone."
    )
    if not _confirm(question, args.yes):
        out.print("nothing done")
        return 1
    fn = _lifecycle.stop_loops if action == "stop" else _lifecycle.delete_loops
    report: _lifecycle.ActionReport = _run(
        functools.partial(fn, args.ledger, aws=aws, rate=args.rate, concurrency=args.concurrency)
    )
    if args.json:
        _print_json(report.to_dict())
        return report.exit_code
    out.print(f"{report.acted} human loop(s) {_lifecycle.action_past(action)}")
    if report.skipped:
        _print_counts(out, "  left alone, by status:", report.skipped)
    for code, n in sorted(report.errors.items()):
        out.print(f"  [red]{n} failed: {code}[/]")
    return report.exit_code


# -- reconcile ---------------------------------------------------------------------------


def cmd_reconcile(args: argparse.Namespace) -> int:
    aws = _start(args)
    report: _lifecycle.ReconcileReport = _run(
        functools.partial(_lifecycle.reconcile, args.ledger, aws=aws)
    )
    if args.json:
        _print_json(report.to_dict())
        return report.exit_code
    out = Console(highlight=False)
    out.print(
        f"{report.service_loops} loop(s) listed for the flow definition since {report.since}; "
        f"{report.ledger_loops} in the ledger"
    )
    if report.ok:
        out.print("ledger and service agree")
        return 0
    if report.missing_from_ledger:
        out.print(f"{len(report.missing_from_ledger)} loop(s) with this job's prefix missing:")
        for loop in report.missing_from_ledger[:100]:
            hint = " (intent recorded: rerun submit to record it)" if loop.pending_intent else ""
            out.print(f"  {loop.loop_name} {loop.status} created {loop.creation_time}{hint}")
    if report.unknown_to_service:
        out.print(f"{len(report.unknown_to_service)} ledger loop(s) the service does not know:")
        for entry in report.unknown_to_service[:100]:
            out.print(f"  id {entry.id}: {entry.human_loop_arn or entry.loop_name}")
    return 1


__all__ = ["add_commands"]
