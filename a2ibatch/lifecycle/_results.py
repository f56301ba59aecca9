"""`results`: the reviewers' answers of a job's completed loops, in one file.

Each Completed loop's ``output.json`` becomes one row, joined to the item's id and, with a
manifest, to its original line.  A2I writes it at a documented place, so no call per loop
is needed to find it: ``<S3OutputPath>/<flow definition name>/YYYY/MM/DD/hh/mm/ss/<loop
name>/output.json``, the time being the loop's creation time (UTC), which `track` recorded.
The output path comes from one DescribeFlowDefinition; then one GetObject per loop, many
at once.  An object not at its place (a loop created on a second's edge, say) is looked
for in a listing of that minute's prefix.  Rows are appended as outputs arrive, so only the
outputs being fetched are in memory; ids already in the file are skipped, so a rerun
carries on where a previous one stopped.  A job of flows in several regions finds each
loop's output through its own region's flow definition (its output path) and S3 client.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
import orjson

from .._aws import A2I_SERVICE
from .._calls import CallFailed
from .._errors import ConfigError, setting
from .._log import get_logger
from .._meters import InFlightCap
from .._models import Item
from .._pool import fan_out
from .._retry import RetryPolicy
from .._settings import AwsSettings
from ..ledger import LoopState, parse_time
from ..manifest import read_manifest
from ._common import Context, Region, open_job
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
    #: calls besides the GetObjects: DescribeFlowDefinition, listings of a prefix, describes
    lookups: int = 0
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
            "lookups": self.lookups,
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
        services={"s3": max(concurrency, 10), "sagemaker": 2, A2I_SERVICE: 8},
        retry_policy=retry_policy,
        append=False,
    ) as job:
        await anyio.to_thread.run_sync(target.open)
        try:
            places = {name: await OutputPlaces.of(job, r) for name, r in job.regions.items()}
            report = await _write(job, target, manifest, concurrency, fmt, places)
            report.lookups = sum(p.lookups for p in places.values())
            return report
        finally:
            target.close()


class OutputPlaces:
    """Where each loop of one region's flow has its output.json: computed from the flow's
    S3OutputPath and the loop's creation time; looked for in a listing when it is not there.
    `s3` and `caller` are the region's."""

    def __init__(
        self, job: Context, output_path: str | None, flow_name: str, region: Region | None = None
    ) -> None:
        self.job = job
        self.output_path = output_path
        self.flow_name = flow_name
        self.lookups = 1  # the DescribeFlowDefinition
        self.s3 = job.clients.s3 if region is None else region.clients.s3
        self.caller = job.caller if region is None else region.caller

    @classmethod
    async def of(cls, job: Context, region: Region) -> OutputPlaces:
        name = region.flow_definition_arn.rsplit("/", 1)[-1]
        sagemaker = region.clients.sagemaker
        try:
            found = await region.caller.call(
                "DescribeFlowDefinition",
                sagemaker.describe_flow_definition,
                FlowDefinitionName=name,
            )
        except CallFailed as exc:
            log.warning("flow_definition_unreadable", code=exc.error.code)
            return cls(job, None, name, region)
        return cls(job, found.get("OutputConfig", {}).get("S3OutputPath"), name, region)

    def place(self, loop: LoopState) -> tuple[str, str] | None:
        """(bucket, key) of `loop`'s output.json, when it can be computed."""
        if loop.output_s3_uri:
            with contextlib.suppress(ValueError):
                return parse_s3_uri(loop.output_s3_uri)
        created = parse_time(loop.creation_time)
        if self.output_path is None or created is None:
            return None
        bucket, _, prefix = self.output_path.removeprefix("s3://").partition("/")
        stamp = created.astimezone(UTC).strftime("%Y/%m/%d/%H/%M/%S")
        parts = [p for p in (prefix.strip("/"), self.flow_name, stamp, loop.loop_name) if p]
        return bucket, "/".join(parts) + "/output.json"

    async def search(self, loop: LoopState, near: tuple[str, str]) -> tuple[str, str] | None:
        """Look for `loop`'s output.json in the listing of its minute's prefix."""
        bucket, key = near
        minute = key.rsplit("/", 4)[0] + "/"  # .../hh/mm/
        suffix = f"/{loop.loop_name}/output.json"
        s3 = self.s3
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": minute}
            if token:
                kwargs["ContinuationToken"] = token
            self.lookups += 1
            page = await self.caller.call("ListObjectsV2", s3.list_objects_v2, **kwargs)
            for entry in page.get("Contents", []):
                if str(entry.get("Key", "")).endswith(suffix):
                    return bucket, str(entry["Key"])
            token = page.get("NextContinuationToken")
            if not token:
                return None

    async def describe(self, loop: LoopState) -> tuple[str, str] | None:
        """Ask the service where the output is (a loop tracked without a creation time)."""
        self.lookups += 1
        errors: dict[str, int] = {}
        await self.job.describe(loop, errors)
        return self.place(loop)


async def _write(
    job: Context,
    target: ResultsFile,
    manifest: str | None,
    concurrency: int,
    fmt: str,
    regions: dict[str, OutputPlaces],
) -> ResultsReport:
    cap = InFlightCap(concurrency)
    completed = already = written = 0
    errors: Counter[str] = Counter()
    missing: Counter[str] = Counter()

    async def fetch(entry: tuple[LoopState, Mapping[str, Any] | None]) -> None:
        nonlocal written
        loop, extra = entry
        places = regions[job.region(loop).name]
        where = places.place(loop) or await places.describe(loop)
        if where is None:
            errors["NoOutputPlace"] += 1
            return
        data = await _get(places, where)
        if isinstance(data, str) and data in _MISSING:
            found = await places.search(loop, where)
            data = await _get(places, found) if found is not None else data
            where = found or where
        if isinstance(data, str):
            (missing if data in _MISSING else errors)[data] += 1
            log.debug("output_unreadable", loop=loop.loop_name, code=data)
            return
        uri = f"s3://{where[0]}/{where[1]}"
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
        out=str(target.path),
        written=written,
        already_present=already,
        completed=completed,
        missing=sum(missing.values()),
        errors=dict(errors),
        missing_codes=dict(missing),
        format=fmt,
    )


async def _get(places: OutputPlaces, where: tuple[str, str]) -> bytes | str:
    """The object's bytes, or the S3 error code that says why not."""
    bucket, key = where
    try:
        response = await places.caller.call(
            "GetObject", places.s3.get_object, Bucket=bucket, Key=key
        )
        async with response["Body"] as body:
            data: bytes = await body.read()
    except CallFailed as exc:
        return exc.error.code
    return data


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
        if not isinstance(entry, Item) or entry.id not in wanted:
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
