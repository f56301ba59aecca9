"""``a2ibatch status``: what a ledger says about its job; ``--list STATE`` lists the items."""

from __future__ import annotations

import argparse
import functools
from typing import Any

import anyio

from .. import Status, StatusReport, status
from . import _logging
from ._args import add_aws, add_logging, aws_settings
from ._help import EXIT_CODES, STATUS_EXAMPLES, Formatter, epilog
from ._output import Output


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="counts of a ledger's items by state; list the failed or invalid ones",
        description="Count the job's items (ids) by the state their last outcome left them "
        "in, the invalid lines of the last run, and the human loops by the status track "
        "last recorded. With --list, one row per item of the states asked for: id, line, "
        "state, error code and reason (never the item's content).",
        epilog=epilog(STATUS_EXAMPLES, EXIT_CODES),
        formatter_class=Formatter,
    )
    p.add_argument(
        "ledger", help="the ledger submit wrote: a file, a directory or s3://bucket/prefix/"
    )
    p.add_argument(
        "--list",
        dest="list_states",
        action="append",
        choices=[s.value for s in Status],
        metavar="STATE",
        help="list the items in STATE (repeatable): " + ", ".join(s.value for s in Status),
    )
    p.add_argument("--json", action="store_true", help="JSON: the counts, then one object per row")
    p.add_argument("--config", help="a TOML file whose [aws] table says where to call (S3)")
    add_aws(p)
    add_logging(p, level="warning")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    _logging.configure(args.log_format, args.log_level)
    report: StatusReport = anyio.run(
        functools.partial(
            status, args.ledger, list_states=args.list_states, aws=aws_settings(args)
        ),
        backend="asyncio",
    )
    out = Output(json=args.json)
    if out.json:
        out.record(report.to_dict())
        for row in report.rows:
            out.record(
                {
                    "id": row.id,
                    "line": row.line,
                    "status": row.status,
                    "code": row.code,
                    "reason": row.reason,
                    "loop_name": row.loop_name,
                }
            )
        return 0
    out.line("ledger ", report.ledger, f": {report.task} job, {report.runs} run(s)")
    if len(report.flows) > 1:
        out.line("  name prefix ", str(report.name_prefix), "; flow definitions by region:")
        for region, arn in sorted(report.flows.items()):
            counts = ", ".join(f"{k} {v}" for k, v in report.regions.get(region, {}).items())
            out.line(f"    {region}  ", arn, f"  ({counts or 'nothing sent'})")
    else:
        out.line(
            "  flow definition ",
            str(report.flow_definition_arn),
            ", name prefix ",
            str(report.name_prefix),
        )
    out.line(("  items (ids) by their last state:", "bold"))
    out.pairs(report.items.items(), indent=4)
    out.pairs([("invalid lines in the last run", report.invalid_lines)])
    if report.pending:
        out.pairs(
            [("calls that may have reached the service (checked on a rerun)", report.pending)]
        )
    if report.loops:
        out.line(("  human loops by last tracked status:", "bold"))
        out.pairs(sorted(report.loops.items()), indent=4)
    if report.repaired_bytes:
        out.line(
            f"  repaired: cut {report.repaired_bytes} bytes of a torn or damaged tail "
            "(what a crash or power loss leaves)"
        )
    if args.list_states:
        out.line((f"  {len(report.rows)} row(s) of state {', '.join(args.list_states)}:", "bold"))
        for row in report.rows:
            where = f"line {row.line}" if row.line else "line ?"
            ident = row.id if row.id is not None else "(no id)"
            detail = f"{row.code}: {row.reason}" if row.code else ""
            out.line(f"    {where}  ", ident, f"  {row.status}  ", detail)
    return 0
