"""``a2ibatch submit``: a job from the command line, with signals, progress and a summary."""

from __future__ import annotations

import argparse
import functools
import signal
from typing import Any

import anyio

from .. import A2IBatchError, DryRunReport, Job, SubmitSettings, Summary, dry_run, load_settings
from . import _logging
from ._args import add_aws, add_logging, aws_flags
from ._help import EXIT_CODES, SETTINGS, SUBMIT_EXAMPLES, Formatter, epilog
from ._output import Output
from ._progress import cli_log, summary_rows, watch

EXIT_INTERRUPTED = 130
_REQUIRED = "required: this flag, its A2IBATCH_ variable, or the config file"


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "submit",
        help="start a human loop for every item of a manifest",
        description="Start one human loop per manifest item, exactly once, at the account's "
        "quota, and record every outcome in the ledger. Run the same command again to "
        "resume: only what is not done yet is sent.",
        epilog=epilog(SUBMIT_EXAMPLES, SETTINGS, EXIT_CODES),
        formatter_class=Formatter,
    )
    p.add_argument(
        "manifest", help="JSONL or CSV file, optionally .gz; '-' for stdin; or s3://bucket/key"
    )
    g = p.add_argument_group("the job")
    g.add_argument(
        "--task",
        choices=("custom", "textract", "rekognition"),
        help=f"which API starts the loops: StartHumanLoop, AnalyzeDocument or "
        f"DetectModerationLabels ({_REQUIRED})",
    )
    g.add_argument(
        "--flow-definition-arn",
        action="append",
        metavar="ARN",
        help="the human review workflow to start loops on; repeat it, once per region, for "
        "items in several regions: each document or image goes to the flow of its bucket's "
        "region, each custom item to the flow its 'region' field names "
        f"({_REQUIRED})",
    )
    g.add_argument(
        "--ledger",
        help="the job's ledger: a file, a directory (ending in '/') or s3://bucket/prefix/; "
        f"the same one resumes the job ({_REQUIRED})",
    )
    g.add_argument("--config", help="a TOML file of these settings (see config/)")
    g.add_argument(
        "--name-prefix",
        help="loop names are PREFIX-<digest> (default a2ib); a new prefix is a new review",
    )
    g.add_argument(
        "--content-classifier",
        action="append",
        dest="content_classifiers",
        choices=("FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"),
        help="declare the data free of PII / adult content (repeatable)",
    )
    g.add_argument(
        "--feature-type",
        action="append",
        dest="feature_types",
        help="Textract feature types for lines without their own (repeatable; default FORMS "
        "and TABLES)",
    )
    g.add_argument(
        "--retry-failed",
        action="store_true",
        default=None,
        help="send again the items the ledger has as failed (or name_taken)",
    )
    g = p.add_argument_group("shards (AWS Batch array jobs, Kubernetes Indexed Jobs)")
    g.add_argument(
        "--shards",
        type=int,
        help="run the job as N shards; each item goes to one (needs a ledger location)",
    )
    g.add_argument(
        "--shard-index",
        type=int,
        help="this run's shard, 0 to N-1 (default: AWS_BATCH_JOB_ARRAY_INDEX, else "
        "JOB_COMPLETION_INDEX)",
    )
    g.add_argument(
        "--work-dir", help="local working copy of a ledger in S3 (default: a temporary folder)"
    )
    g = p.add_argument_group("pace and limits")
    g.add_argument(
        "--rate", type=float, help="requests/second ceiling per API (default: find the quota)"
    )
    g.add_argument("--concurrency", type=int, help="calls in flight (default: rate x latency)")
    g.add_argument("--max-attempts", type=int, help="attempts per item (default 8)")
    g.add_argument("--max-failures", help="stop once N items failed, or N%% of them")
    g.add_argument(
        "--max-lines", type=int, help="refuse a manifest of more lines (a wrong file, say)"
    )
    g = p.add_argument_group("checks")
    g.add_argument(
        "--dry-run", action="store_true", help="check everything, send nothing, write nothing"
    )
    g.add_argument(
        "--no-preflight",
        dest="preflight",
        action="store_false",
        default=None,
        help="skip the checks before spending (flow definition, region, CORS, PII, cost)",
    )
    g.add_argument(
        "--no-service-quotas",
        dest="service_quotas",
        action="store_false",
        default=None,
        help="do not read the start call's quota from Service Quotas (find it by pacing)",
    )
    g.add_argument("--max-cost", type=float, help="refuse a job estimated above this (USD)")
    g.add_argument(
        "--yes",
        dest="confirm_cost",
        action="store_true",
        default=None,
        help="accept the cost estimate above --max-cost",
    )
    add_aws(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_logging(p)
    p.set_defaults(func=cmd_submit)


def settings_from(args: argparse.Namespace) -> SubmitSettings:
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
        "preflight": args.preflight,
        "service_quotas": args.service_quotas,
        "max_cost": args.max_cost,
        "confirm_cost": args.confirm_cost,
        "max_failures": args.max_failures,
        "max_lines": args.max_lines,
        "shards": args.shards,
        "shard_index": args.shard_index,
        "work_dir": args.work_dir,
        **aws_flags(args),
    }
    return load_settings(flags, config_file=args.config)


def cmd_submit(args: argparse.Namespace) -> int:
    _logging.configure(args.log_format, args.log_level)
    settings = settings_from(args)
    out = Output(json=args.json)
    if args.dry_run:
        report: DryRunReport = anyio.run(functools.partial(dry_run, settings), backend="asyncio")
        show_dry_run(out, report)
        return report.exit_code
    return run_job(settings, out, progress=not args.no_progress)


def show_dry_run(out: Output, report: DryRunReport) -> None:
    if out.json:
        out.record(report.to_dict())
        for problem in report.problems:
            out.record(
                {
                    "line": problem.line,
                    "id": problem.id,
                    "status": "invalid",
                    "reason": problem.reason,
                }
            )
        return
    out.line(f"dry run of a {report.task} job: nothing sent, nothing written")
    out.pairs(
        [
            ("items that would be sent", report.to_send),
            ("  of which checked first (a call may have reached the service)", report.to_check),
            ("already done in the ledger (skipped)", report.already_done),
            ("failed earlier (skipped; --retry-failed sends them)", report.skipped_failed),
            ("name taken earlier (skipped)", report.skipped_name_taken),
            ("invalid lines", report.invalid),
        ]
    )
    for region, n in report.regions.items():
        out.line(f"  to send in {region}: {n}")
    for name in report.sample_names:
        out.line("  e.g. loop name ", name)
    for problem in report.problems[:50]:
        ident = f" (id {problem.id})" if problem.id else ""
        out.line(f"  line {problem.line}", ident, ": ", problem.reason)
    if report.invalid > 50:
        out.line(f"  ... and {report.invalid - 50} more: a2ibatch submit ... --dry-run --json")


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


def run_job(
    settings: SubmitSettings,
    out: Output,
    *,
    progress: bool = True,
    items: Any = None,
    session: Any = None,
) -> int:
    """Run a submit job with signals handled, progress shown and the summary printed."""
    job = Job(settings, items=items, session=session)
    total = count_lines(settings.manifest) if items is None else None
    interrupted = False

    async def on_signals(scope: anyio.CancelScope) -> None:
        nonlocal interrupted
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if not interrupted and job.running:
                    interrupted = True
                    cli_log("stopping", detail="finishing calls in flight; again to stop at once")
                    job.stop()
                else:
                    scope.cancel()
                    return

    async def run() -> Summary | A2IBatchError | None:
        outcome: Summary | A2IBatchError | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(on_signals, tg.cancel_scope)
            tg.start_soon(functools.partial(watch, job, total, bar=progress))
            try:
                outcome = await job.run()
            except A2IBatchError as exc:
                outcome = exc
            tg.cancel_scope.cancel()
        return outcome

    result = anyio.run(run, backend="asyncio")
    if result is None:  # cancelled by a second Ctrl-C
        return EXIT_INTERRUPTED
    summary = result if isinstance(result, Summary) else result.summary
    if summary is not None:
        show_summary(out, summary, job)
    if isinstance(result, A2IBatchError):
        raise result
    return summary.exit_code if summary is not None else 3


def show_summary(out: Output, summary: Summary, job: Job) -> None:
    if out.json:
        record = summary.to_record()
        record.pop("event", None)
        out.record(
            {
                "summary": record,
                "ledger": summary.ledger,
                "exit_code": summary.exit_code,
                "repaired_bytes": job.repaired_bytes,
            }
        )
        return
    out.line((f"a2ibatch {summary.task} job", "bold"))
    out.pairs(summary_rows(summary, job.repaired_bytes))
