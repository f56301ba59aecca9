"""After the reviews: the reviewers' answers of a job's completed loops, in one file.

`results` reads each Completed loop's ``output.json`` (A2I writes it to the flow
definition's S3 output path) and writes one row per item, joined to the item's id and,
with a manifest, to its original line.  It streams (answers are never all in memory) and
resumes (ids already in the output file are skipped; a row torn by a crash is redone).
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
import orjson
import structlog

from ._calls import Caller, CallFailed
from ._config import AwsSettings, SubmitSettings
from ._errors import ConfigError, LedgerError, LedgerWriteError
from ._ledger import JobHeader, iter_records, last_line_end
from ._lifecycle import (
    LedgerLoops,
    LoopState,
    job_client,
    job_settings,
)
from ._manifest import read_manifest
from ._models import Invalid
from ._retry import RetryPolicy

log = structlog.get_logger("a2ibatch")

__all__ = ["CSV_COLUMNS", "ResultsReport", "parse_s3_uri", "results"]

#: results joined with the manifest are fetched in chunks of this many loops
MANIFEST_CHUNK = 5000

ResultsFormat = Literal["jsonl", "csv"]
CSV_COLUMNS = (
    "id",
    "loop_name",
    "human_loop_arn",
    "submitted_at",
    "worker_ids",
    "answers",
    "input",
    "output_s3_uri",
)


@dataclass
class ResultsReport:
    """What `results` wrote."""

    out: str
    written: int  # rows appended this time
    already_present: int  # completed loops whose id the output file already had
    completed: int  # Completed loops in the ledger
    missing: int  # Completed loops whose output.json is not (yet) readable
    errors: dict[str, int]

    @property
    def exit_code(self) -> int:
        return 1 if self.missing or self.errors else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "written": self.written,
            "already_present": self.already_present,
            "completed": self.completed,
            "missing": self.missing,
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
    raise ValueError(f"not an S3 URI: {uri!r}")


class _ResultsFile:
    """The answers file: the ids it holds already, and whole rows appended one write each."""

    def __init__(self, path: Path, fmt: ResultsFormat) -> None:
        self.path = path
        self.fmt = fmt
        self.done: set[str] = set()
        self._fd = -1

    def open(self) -> None:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot open {self.path}: {exc.strerror or exc}") from None
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            _truncate_to_last_line(self._fd, size)  # a row torn by a crash: it is redone
        self._read_ids()
        if self.fmt == "csv" and os.fstat(self._fd).st_size == 0:
            self._write(_csv_line(CSV_COLUMNS))

    def _read_ids(self) -> None:
        with open(self._fd, "rb", closefd=False) as raw:
            raw.seek(0)
            if self.fmt == "jsonl":
                for number, line in enumerate(raw, 1):
                    if not line.strip():
                        continue
                    try:
                        row = orjson.loads(line)
                        self.done.add(str(row["id"]))
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        raise ConfigError(
                            f"{self.path} line {number} is not a results row; pass a new --out file"
                        ) from None
                return
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            reader = csv.reader(text)
            header = next(reader, None)
            if header is not None and tuple(header) != CSV_COLUMNS:
                raise ConfigError(
                    f"{self.path} is not a CSV results file of this version "
                    f"(columns {', '.join(CSV_COLUMNS)}); pass a new --out file"
                )
            for row in reader:
                if row:
                    self.done.add(row[0])
            text.detach()

    def write_row(self, row: Mapping[str, Any]) -> None:
        if self.fmt == "jsonl":
            self._write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
            return
        values = [
            v if isinstance(v, str) or v is None else orjson.dumps(v).decode()
            for v in (row[c] for c in CSV_COLUMNS)
        ]
        self._write(_csv_line(values))

    def _write(self, data: bytes) -> None:
        try:
            written = os.write(self._fd, data)
        except OSError as exc:
            raise LedgerWriteError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        if written != len(data):
            raise LedgerWriteError(f"cannot write {self.path}: short write (disk full?)")

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1


def _csv_line(values: Iterable[str | None]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buffer.getvalue().encode("utf-8")


def _truncate_to_last_line(fd: int, size: int) -> None:
    os.ftruncate(fd, last_line_end(fd, size))


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


async def _completed(ledger: str | os.PathLike[str]) -> AsyncIterator[LoopState]:
    """The ledger's Completed loops in ledger order, streamed (each once)."""
    seen: set[str] = set()
    records = iter_records(ledger, events=("loop_status",))
    count = 0
    for record in records:
        count += 1
        if count % 4096 == 0:
            await anyio.lowlevel.checkpoint()
        if record.get("loop_status") != "Completed":
            continue
        name = record.get("loop_name")
        item_id = record.get("id")
        if not isinstance(name, str) or not isinstance(item_id, str) or name in seen:
            continue
        seen.add(name)
        arn = record.get("human_loop_arn")
        uri = record.get("output_s3_uri")
        yield LoopState(
            item_id,
            name,
            arn if isinstance(arn, str) else None,
            "Completed",
            uri if isinstance(uri, str) else None,
        )


async def results(
    ledger: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    session: Any | None = None,
    aws: AwsSettings | None = None,
    format: ResultsFormat = "jsonl",
    manifest: str | None = None,
    concurrency: int = 32,
    retry_policy: RetryPolicy | None = None,
) -> ResultsReport:
    """Write one row per Completed loop (per `track`'s records) with its reviewers' answers.

    Each row: id, loop name and ARN, the last submission time, the workers' ids, their
    answers (``humanAnswers[].answerContent``), the input the reviewers saw
    (``inputContent``) and the output's S3 URI.  Rows are appended as outputs arrive, so
    memory holds only the outputs being fetched; ids already in `out` are skipped, so a
    rerun carries on where a previous one stopped.  In CSV, the list and object columns
    hold JSON text.  With `manifest`, each row also gets ``manifest_line`` and
    ``manifest_input`` (the custom input, or the S3 URI of the document or image) from the
    manifest (JSONL rows only; the manifest is read once per 5,000 rows).
    """
    if format not in ("jsonl", "csv"):
        raise ConfigError("--format must be jsonl or csv")
    if manifest is not None and format == "csv":
        raise ConfigError("--manifest joins manifest columns into JSONL rows; use --format jsonl")
    table_header = await anyio.to_thread.run_sync(_header_only, ledger)
    settings = job_settings(table_header, aws or AwsSettings())
    caller = Caller(retry_policy, concurrency=concurrency)
    target = _ResultsFile(Path(out), format)
    await anyio.to_thread.run_sync(target.open)
    completed = already = written = missing = 0
    errors: Counter[str] = Counter()
    try:
        async with AsyncExitStack() as stack:
            s3 = await job_client(stack, settings, session, "s3", pool=max(concurrency, 10))

            async def fetch(job: tuple[LoopState, Mapping[str, Any] | None]) -> None:
                nonlocal written, missing
                loop, extra = job
                uri = loop.output_s3_uri
                try:
                    if uri is None:
                        raise ValueError("no output URI was recorded")
                    bucket, key = parse_s3_uri(uri)
                except ValueError:
                    errors["NoOutputUri"] += 1
                    return
                try:
                    response = await caller.call("GetObject", s3.get_object, Bucket=bucket, Key=key)
                    async with response["Body"] as body:
                        data = await body.read()
                except CallFailed as exc:
                    if exc.error.code in ("NoSuchKey", "404", "NoSuchBucket"):
                        missing += 1
                    else:
                        errors[exc.error.code] += 1
                    log.warning("output_unreadable", loop=loop.loop_name, code=exc.error.code)
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
                joined = await _join_manifest(batch, manifest, settings, s3)
                await caller.fan_out([(x, joined.get(x.id)) for x in batch], fetch)
                batch.clear()

            async for loop in _completed(ledger):
                completed += 1
                if loop.id in target.done:
                    already += 1
                    continue
                target.done.add(loop.id)
                batch.append(loop)
                if len(batch) >= (MANIFEST_CHUNK if manifest else 256):
                    await drain()
            await drain()
    finally:
        target.close()
    return ResultsReport(str(out), written, already, completed, missing, dict(errors))


def _header_only(path: str | os.PathLike[str]) -> LedgerLoops:
    for record in iter_records(path, events=("job",)):
        try:
            header = JobHeader.from_record(record)
        except (KeyError, TypeError, ValueError):
            raise LedgerError(f"ledger {path}: its first job record is malformed") from None
        return LedgerLoops(os.fspath(path), header, str(record.get("at") or ""), {})
    raise LedgerError(f"{path} has no job record: it is not an a2ibatch ledger")


async def _join_manifest(
    batch: list[LoopState], manifest: str | None, settings: SubmitSettings, s3: Any
) -> dict[str, dict[str, Any]]:
    """Manifest line and input of the batch's ids (one pass over the manifest)."""
    if manifest is None or not batch:
        return {}
    wanted = {loop.id for loop in batch}
    found: dict[str, dict[str, Any]] = {}
    async for entry in read_manifest(manifest, settings.task, s3_client=s3):
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
