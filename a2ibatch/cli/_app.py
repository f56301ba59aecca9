"""The `a2ibatch` command: parse flags, call the library, show progress, pick an exit code.

Exit codes: 0 every item started or not activated; 1 some failed or invalid; 2 usage or
configuration problem; 3 the job stopped on a fatal error; 130 stopped by Ctrl-C/SIGTERM.
No input, however broken, produces a traceback: every error ends in one message.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import orjson
import structlog
from rich.console import Console

from .. import _api
from .._clients import versions
from .._config import load_settings, parse_max_failures
from .._errors import A2IBatchError, ConfigError
from .._ledger import iter_records, load_ledger
from .._models import Status
from . import _logging
from ._args import add_aws, add_logging
from ._lifecycle_cmds import add_commands as add_lifecycle_commands
from ._progress import summary_table, watch

log = structlog.get_logger("a2ibatch")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_logging(p)


def build_parser(*, emulate_flags: bool = True) -> argparse.ArgumentParser:
    """The command line's parser.

    `emulate_flags` False leaves the ``emulate`` command without its flags, which live in
    the emulator package: importing it (aiohttp's web server, which sets up TLS at import)
    is a third of the start-up of every other command, a dry run's included.
    """
    parser = argparse.ArgumentParser(
        prog="a2ibatch",
        description="Submit Amazon A2I human loops in bulk, exactly once per item.",
    )
    parser.add_argument("--version", action="version", version=f"a2ibatch {versions()['a2ibatch']}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", help="start a human loop for every item of a manifest")
    p.add_argument("manifest", help="JSONL or CSV file, .gz, '-' for stdin, or s3://bucket/key")
    p.add_argument("--task", choices=("custom", "textract", "rekognition"))
    p.add_argument("--flow-definition-arn")
    p.add_argument("--ledger", type=Path, help="JSONL ledger; rerun with the same one to resume")
    p.add_argument("--config", type=Path, help="TOML settings file")
    p.add_argument(
        "--rate", type=float, help="requests/second ceiling per API (default: find the quota)"
    )
    p.add_argument("--concurrency", type=int, help="calls in flight (default: rate x latency)")
    p.add_argument("--max-attempts", type=int, help="attempts per item (default 8)")
    p.add_argument(
        "--name-prefix", help="loop name prefix (default a2ib); a new one for a re-review"
    )
    p.add_argument(
        "--content-classifier",
        action="append",
        dest="content_classifiers",
        choices=("FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"),
        help="repeatable",
    )
    p.add_argument(
        "--feature-type", action="append", dest="feature_types", help="Textract; repeatable"
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        default=None,
        help="retry items the ledger has as failed",
    )
    p.add_argument("--max-failures", help="stop after N failed items, or N%% of them")
    p.add_argument(
        "--dry-run", action="store_true", help="check everything, send nothing, write nothing"
    )
    p.add_argument(
        "--no-preflight",
        dest="preflight",
        action="store_false",
        default=None,
        help="skip the checks before spending (flow definition, region, CORS, PII, cost)",
    )
    p.add_argument("--max-cost", type=float, help="refuse a job estimated above this (USD)")
    p.add_argument("--yes", action="store_true", default=None, help="accept the cost estimate")
    add_aws(p)
    _add_output(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="counts of a ledger's items by state")
    p.add_argument("ledger", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    add_lifecycle_commands(sub)

    p = sub.add_parser("emulate", help="run the local AWS emulator (A2I, Textract, Rekognition)")
    if emulate_flags:
        from ..emulator import _cli as emulator_cli

        emulator_cli.add_arguments(p)
    p.set_defaults(func=cmd_emulate)

    p = sub.add_parser(
        "demo", help="a real job of a few thousand items against the built-in emulator"
    )
    p.add_argument("--items", type=int, default=3000)
    p.add_argument("--task", choices=("custom", "textract", "rekognition"), default="custom")
    p.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="folder for the manifest and ledger"
    )
    _add_output(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only a command line with a word that could name the emulate command (in full, or
    # abbreviated where argparse allows it) can run it; any other leaves the emulator
    # unimported.  A word that merely looks like one costs an import, nothing else.
    emulate = any(word and "emulate".startswith(word) for word in argv)
    parser = build_parser(emulate_flags=emulate)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except A2IBatchError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug of ours: one line, never a traceback for the user
        if os.environ.get("A2IBATCH_DEBUG"):
            traceback.print_exception(exc)
        _error(
            f"internal error ({type(exc).__name__}): {exc}; the ledger is consistent and the "
            "same command resumes; set A2IBATCH_DEBUG=1 for details"
        )
        return 3


def _error(message: str) -> None:
    Console(stderr=True, highlight=False).print(f"[bold red]a2ibatch:[/] {message}", markup=True)


# -- submit ------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Any:
    flags: dict[str, Any] = {
        "task": args.task,
        "flow_definition_arn": args.flow_definition_arn,
        "ledger": args.ledger,
        "manifest": args.manifest,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "max_attempts": args.max_attempts,
        "name_prefix": args.name_prefix,
        "content_classifiers": args.content_classifiers,
        "feature_types": args.feature_types,
        "retry_failed": args.retry_failed,
        "endpoint_url": args.endpoint_url,
        "region": args.region,
        "profile": args.profile,
        "allow_insecure_endpoint": args.allow_insecure_endpoint,
        "preflight": args.preflight,
        "max_cost": args.max_cost,
        "confirm_cost": args.yes,
    }
    if args.max_failures is not None:
        flags["max_failures"], flags["max_failure_ratio"] = parse_max_failures(args.max_failures)
    return load_settings(flags, config_file=args.config)


def cmd_submit(args: argparse.Namespace) -> int:
    _logging.configure(args.log_format, args.log_level)
    settings = _settings(args)
    if args.dry_run:
        return anyio.run(_dry_run, settings, backend="asyncio")
    return run_job(settings, progress=not args.no_progress)


async def _dry_run(settings: Any) -> int:
    report = await _api.dry_run(settings)
    out = Console(highlight=False)
    out.print(f"dry run of a {report.task} job: nothing sent, nothing written")
    out.print(f"  items that would be sent: {report.items - report.already_done}")
    out.print(f"  already done in the ledger: {report.already_done}")
    out.print(f"  invalid lines: {report.invalid}")
    for name in report.sample_names:
        out.print(f"  e.g. loop name {name}")
    for problem in report.problems[:50]:
        ident = f" (id {problem.id})" if problem.id else ""
        out.print(f"  line {problem.line}{ident}: {problem.reason}")
    if report.invalid > 50:
        out.print(f"  ... and {report.invalid - 50} more invalid lines")
    return report.exit_code


def count_lines(manifest: str) -> int | None:
    """Lines of a local plain manifest (for the progress bar's total), else None."""
    if manifest == "-" or "://" in manifest or manifest.endswith(".gz"):
        return None
    try:
        count = 0
        last = b"\n"
        with open(manifest, "rb") as f:
            while chunk := f.read(1 << 20):
                count += chunk.count(b"\n")
                last = chunk[-1:]
        count += last != b"\n"
        if manifest.endswith(".csv"):
            count -= 1
        return max(count, 0)
    except OSError:
        return None


def run_job(settings: Any, *, progress: bool = True, items: Any = None, session: Any = None) -> int:
    """Run a submit job with signals handled, progress shown and the summary printed."""
    job = _api.Job(settings, items=items, session=session)
    total = count_lines(settings.manifest) if items is None else None
    console = Console(stderr=True) if progress else None
    interrupted = False

    async def on_signals(scope: anyio.CancelScope) -> None:
        nonlocal interrupted
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if not interrupted and job.running:
                    interrupted = True
                    log.warning(
                        "stopping", detail="finishing calls in flight; Ctrl-C again stops at once"
                    )
                    job.stop()
                else:
                    scope.cancel()
                    return

    async def run() -> _api.Summary | BaseException | None:
        outcome: _api.Summary | BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(on_signals, tg.cancel_scope)
            if progress:
                tg.start_soon(functools.partial(watch, job, total, console=console))
            try:
                outcome = await job.run()
            except A2IBatchError as exc:
                outcome = exc
            tg.cancel_scope.cancel()
        return outcome

    result = anyio.run(run, backend="asyncio")
    if result is None:  # cancelled by a second Ctrl-C
        return EXIT_INTERRUPTED
    summary = result if isinstance(result, _api.Summary) else getattr(result, "summary", None)
    if summary is not None:
        Console().print(summary_table(summary))
    if isinstance(result, BaseException):
        if isinstance(result, A2IBatchError):
            _error(str(result))
            return result.exit_code
        raise result
    return summary.exit_code if summary is not None else 3


# -- status ------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from .._errors import LedgerError

    if not args.ledger.exists():
        raise LedgerError(f"no ledger at {args.ledger}")
    index = load_ledger(args.ledger)
    loops: dict[str, str] = {}
    for record in iter_records(args.ledger, events=("loop_status",)):
        loops[str(record.get("loop_name"))] = str(record.get("loop_status"))
    loop_counts: dict[str, int] = {}
    for value in loops.values():
        loop_counts[value] = loop_counts.get(value, 0) + 1
    header = index.header
    data = {
        "ledger": str(args.ledger),
        "task": header.task.value if header else None,
        "flow_definition_arn": header.flow_definition_arn if header else None,
        "name_prefix": header.name_prefix if header else None,
        "runs": index.runs,
        "items": {s.value: index.counts.get(s, 0) for s in Status},
        "loops": loop_counts,
    }
    if args.json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    out = Console(highlight=False)
    out.print(f"ledger {data['ledger']}: {data['task']} job, {data['runs']} run(s)")
    out.print(f"  flow definition {data['flow_definition_arn']}, name prefix {data['name_prefix']}")
    for state, n in data["items"].items():  # type: ignore[union-attr]
        out.print(f"  {state:<14} {n}")
    if loop_counts:
        out.print("  human loops (last tracked status):")
        for state, n in sorted(loop_counts.items()):
            out.print(f"    {state:<12} {n}")
    return 0


# -- emulate and demo --------------------------------------------------------------------


def cmd_emulate(args: argparse.Namespace) -> int:
    from ..emulator import _cli as emulator_cli

    try:
        config = emulator_cli.config_from_args(args)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return emulator_cli.run(config)


def cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    _logging.configure(args.log_format, args.log_level)
    return run_demo(args.items, args.task, args.out, progress=not args.no_progress, run=run_job)


__all__ = ["build_parser", "main", "run_job"]
