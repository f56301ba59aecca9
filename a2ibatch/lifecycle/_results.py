"""`results`: the reviewers' answers of a job's completed loops, in one file.

Each Completed loop's ``output.json`` (A2I writes it to the flow definition's S3 output
path) becomes one row, joined to the item's id and, with a manifest, to its original line.
Rows are appended as outputs arrive, so only the outputs being fetched are in memory; ids
already in the file are skipped, so a rerun carries on where a previous one stopped.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
import orjson

from .._calls import CallFailed
from .._errors import ConfigError, setting
from .._log import get_logger
from .._meters import InFlightCap
from .._models import Invalid
from .._pool import fan_out
from .._retry import RetryPolicy
from .._settings import AwsSettings
from ..ledger import LoopState
from ..manifest import read_manifest
from ._common import Context, open_job
from ._results_file import ResultsFile, ResultsFormat, format_for

log = get_logger()

#: results joined with the manifest are fetched in chunks of this many loops
MANIFEST_CHUNK = 5000
#: S3 error codes meaning "no such object (yet)"
_MISSING = frozenset({"NoSuchKey", "404", "NoSuchBucket"})


@dataclass
class ResultsReport:
    """What `results` wrote."""

    out: str
    written: int  # rows appended this time
    already_present: int  # completed loops whose id the output file already had
    completed: int  # Completed loops in the ledger
    missing: int  # Completed loops whose output.json is not (yet) readable
    errors: dict[str, int]
    #: S3 error code -> loops, for the outputs not found (what to check)
    missing_codes: dict[str, int] | None = None
    format: str = "jsonl"

    @property
    def exit_code(self) -> int:
        return 1 if self.missing or self.errors else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "format": self.format,
            "written": self.written,
            "already_present": self.already_present,
            "completed": self.completed,
            "missing": self.missing,
            "missing_codes": dict(self.missing_codes or {}),
            "errors": self.errors,
        }


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key`` (or an https S3 URL as A2I may give)."""
    parts = urlsplit(uri)
    if parts.scheme == "s3" and parts.netloc and parts.path.strip("/"):
        return parts.netloc, unquote(parts.path.lstrip("/"))
    if parts.scheme == "https" and parts.hostname and ".s3" in parts.hostname:
        bucket = parts.hostname.split(".s3", 1)[0]
        if bucket:
            return bucket, unquote(parts.path.lstrip("/"))
    raise ValueError("not an S3 URI")


def _answers_row(loop: LoopState, output: Mapping[str, Any], uri: str) -> dict[str, Any]:
    raw = output.get("humanAnswers")
    answers = [a for a in raw if isinstance(a, dict)] if isinstance(raw, list) else []
    times = [str(a.get("submissionTime")) for a in answers if a.get("submissionTime")]
    return {
        "id": loop.id,
        "loop_name": loop.loop_name,
        "human_loop_arn": loop.human_loop_arn,
        "submitted_at": max(times) if times else None,
        "worker_ids": [a.get("workerId") for a in answers],
        "answers": [a.get("answerContent") for a in answers],
        "input": output.get("inputContent"),
        "output_s3_uri": uri,
    }


async def results(
    ledger: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    session: Any | None = None,
    aws: AwsSettings | None = None,
    format: ResultsFormat | None = None,
    manifest: str | None = None,
    concurrency: int = 32,
    retry_policy: RetryPolicy | None = None,
) -> ResultsReport:
    """Write one row per Completed loop (per `track`'s records) with its reviewers' answers.

    Each row: id, loop name and ARN, the last submission time, the workers' ids, their
    answers (``humanAnswers[].answerContent``), the input the reviewers saw
    (``inputContent``) and the output's S3 URI.  `format` is ``jsonl`` or ``csv``; by
    default the one `out`'s name ends with (``.csv``), else JSONL.  In CSV, the list and
    object columns hold JSON text.  With `manifest`, each row also gets ``manifest_line``
    and ``manifest_input`` (the custom input, or the S3 URI of the document or image) from
    the manifest (JSONL rows only; the manifest is read once per 5,000 rows).
    """
    fmt = format_for(out, format)
    if manifest is not None and fmt == "csv":
        raise ConfigError(
            f"{setting('manifest')} joins manifest columns into JSONL rows; use "
            f"{setting('format', 'jsonl')}"
        )
    if concurrency < 1:
        raise ConfigError(f"{setting('concurrency')} must be at least 1")
    target = ResultsFile(Path(out), fmt)
    async with open_job(
        ledger,
        aws=aws,
        session=session,
        services={"s3": max(concurrency, 10)},
        retry_policy=retry_policy,
        append=False,
    ) as job:
        await anyio.to_thread.run_sync(target.open)
        try:
            return await _write(job, target, manifest, concurrency, fmt)
        finally:
            target.close()


async def _write(
    job: Context, target: ResultsFile, manifest: str | None, concurrency: int, fmt: str
) -> ResultsReport:
    s3 = job.clients.s3
    cap = InFlightCap(concurrency)
    completed = already = written = 0
    errors: Counter[str] = Counter()
    missing: Counter[str] = Counter()

    async def fetch(entry: tuple[LoopState, Mapping[str, Any] | None]) -> None:
        nonlocal written
        loop, extra = entry
        uri = loop.output_s3_uri
        try:
            if uri is None:
                raise ValueError("no output URI was recorded")
            bucket, key = parse_s3_uri(uri)
        except ValueError:
            errors["NoOutputUri"] += 1
            return
        try:
            response = await job.caller.call("GetObject", s3.get_object, Bucket=bucket, Key=key)
            async with response["Body"] as body:
                data = await body.read()
        except CallFailed as exc:
            if exc.error.code in _MISSING:
                missing[exc.error.code] += 1
            else:
                errors[exc.error.code] += 1
            log.debug("output_unreadable", loop=loop.loop_name, code=exc.error.code)
            return
        try:
            output = orjson.loads(data)
            if not isinstance(output, dict):
                raise TypeError
        except (orjson.JSONDecodeError, TypeError):
            errors["BadOutputJson"] += 1
            return
        row = _answers_row(loop, output, uri)
        if manifest is not None:
            row["manifest_line"] = None if extra is None else extra.get("line")
            row["manifest_input"] = None if extra is None else extra.get("input")
        target.write_row(row)
        written += 1

    batch: list[LoopState] = []

    async def drain() -> None:
        joined = await _join_manifest(batch, manifest, job)
        await fan_out(cap, [(x, joined.get(x.id)) for x in batch], fetch)
        batch.clear()

    for n, loop in enumerate(job.index.loops.values(), 1):
        if n % 4096 == 0:
            await anyio.lowlevel.checkpoint()
        if loop.status != "Completed":
            continue
        completed += 1
        if loop.id in target.done:
            already += 1
            continue
        target.done.add(loop.id)
        batch.append(loop)
        if len(batch) >= (MANIFEST_CHUNK if manifest else 256):
            await drain()
    await drain()
    return ResultsReport(
        str(target.path),
        written,
        already,
        completed,
        sum(missing.values()),
        dict(errors),
        dict(missing),
        fmt,
    )


async def _join_manifest(
    batch: list[LoopState], manifest: str | None, job: Context
) -> dict[str, dict[str, Any]]:
    """Manifest line and input of the batch's ids (one pass over the manifest)."""
    if manifest is None or not batch:
        return {}
    wanted = {loop.id for loop in batch}
    found: dict[str, dict[str, Any]] = {}
    s3 = job.clients.s3_if_open
    async for entry in read_manifest(manifest, job.settings.task, s3_client=s3):
        if isinstance(entry, Invalid) or entry.id not in wanted:
            continue
        value: Any
        if entry.input_content is not None:
            value = orjson.loads(entry.input_content)
        else:
            value = entry.s3.uri if entry.s3 is not None else None
        found[entry.id] = {"line": entry.line, "input": value}
        if len(found) == len(wanted):
            break
    return found
