"""Manifests: JSONL or CSV, plain or gzipped, from a file, stdin or S3, read as a stream.

Every non-blank line becomes exactly one `Item` or one `Invalid`, in manifest order, so one
broken line never hides the good lines around it.  A reason names the line's fields and
what is wrong with them, never their values: manifests often hold personal data.  Memory
stays flat whatever the manifest's size: chunks are read, split and forgotten; only a
64-bit digest per id is kept, to refuse duplicate ids.
"""

from __future__ import annotations

import codecs
import csv
import re
import sys
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, BinaryIO, Literal

import anyio
import anyio.lowlevel
import anyio.to_thread
import orjson

from ._errors import ManifestError
from ._models import (
    CONTENT_CLASSIFIERS,
    MAX_INPUT_CONTENT_CHARS,
    TEXTRACT_FEATURE_TYPES,
    Invalid,
    Item,
    S3Ref,
    TaskType,
)
from ._naming import name_problem

Format = Literal["auto", "jsonl", "csv"]
CHUNK = 1 << 20
MAX_ID_LENGTH = 1000
GZIP_MAGIC = b"\x1f\x8b"
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
CSV_COLUMNS = (
    "id",
    "input",
    "input_content",
    "document",
    "image",
    "version",
    "feature_types",
    "min_confidence",
    "name",
    "content_classifiers",
)
#: the fields that belong to one task type only
TASK_FIELDS: dict[TaskType, frozenset[str]] = {
    TaskType.CUSTOM: frozenset({"input", "input_content"}),
    TaskType.TEXTRACT: frozenset({"document", "feature_types", "version"}),
    TaskType.REKOGNITION: frozenset({"image", "min_confidence", "version"}),
}


async def read_manifest(
    source: str,
    task: TaskType | str,
    *,
    s3_client: Any | None = None,
    format: Format = "auto",
    stdin: BinaryIO | None = None,
) -> AsyncIterator[Item | Invalid]:
    """Yield one `Item` or `Invalid` per non-blank line of `source`.

    `source` is a path (`.gz` or gzip content is decompressed), `-` for stdin, or
    `s3://bucket/key` (streamed through `s3_client`, an aiobotocore S3 client).  CSV is
    chosen by a `.csv` / `.csv.gz` name unless `format` says otherwise.  A manifest that
    cannot be opened raises ManifestError; a broken line never does.
    """
    checker = LineChecker(TaskType(task))
    name = source[:-3] if source.endswith(".gz") else source
    as_csv = format == "csv" or (format == "auto" and name.lower().endswith(".csv"))
    chunks = _chunks(source, s3_client, stdin)
    lines = _csv_entries(chunks, checker) if as_csv else _jsonl_entries(chunks, checker)
    async for batch in lines:
        for entry in batch:
            yield entry


# -- reading bytes -----------------------------------------------------------------------


async def _chunks(
    source: str, s3_client: Any | None, stdin: BinaryIO | None
) -> AsyncIterator[bytes]:
    """The manifest's bytes, decompressed, in chunks."""
    if source.startswith("s3://"):
        async for chunk in _s3_chunks(source, s3_client):
            yield chunk
        return
    if source == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        async for chunk in _file_chunks(stream, source, close=False):
            yield chunk
        return
    try:
        raw = open(source, "rb")  # noqa: SIM115 - closed by _file_chunks
    except OSError as exc:
        raise ManifestError(f"cannot open manifest {source}: {exc.strerror or exc}") from None
    async for chunk in _file_chunks(raw, source, close=True):
        yield chunk


async def _file_chunks(stream: BinaryIO, source: str, *, close: bool) -> AsyncIterator[bytes]:
    try:
        head = await anyio.to_thread.run_sync(stream.read, CHUNK)
        if head[:2] == GZIP_MAGIC:
            decompress = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunk: bytes = head
            while chunk:
                yield _inflate(decompress, chunk, source)
                chunk = await anyio.to_thread.run_sync(stream.read, CHUNK)
            yield _inflate_tail(decompress, source)
            return
        if source.endswith(".gz"):
            raise ManifestError(f"manifest {source} is named .gz but is not gzip data")
        chunk = head
        while chunk:
            yield chunk
            chunk = await anyio.to_thread.run_sync(stream.read, CHUNK)
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {source}: {exc.strerror or exc}") from None
    finally:
        if close:
            stream.close()


def _inflate(decompress: Any, chunk: bytes, source: str) -> bytes:
    try:
        data: bytes = decompress.decompress(chunk)
    except zlib.error:
        raise ManifestError(f"manifest {source} is not valid gzip data") from None
    return data


def _inflate_tail(decompress: Any, source: str) -> bytes:
    data: bytes = decompress.flush()
    if not decompress.eof:
        raise ManifestError(f"manifest {source} is a truncated gzip file")
    return data


async def _s3_chunks(uri: str, s3_client: Any | None) -> AsyncIterator[bytes]:
    ref = parse_s3_uri(uri)
    if isinstance(ref, str):
        raise ManifestError(f"manifest location {uri} is not a valid S3 URI: {ref}")
    if s3_client is None:
        raise ManifestError(f"reading {uri} needs an S3 client")
    try:
        response = await s3_client.get_object(Bucket=ref.bucket, Key=ref.key)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        raise ManifestError(f"cannot read manifest {uri}: {code}") from None
    body = response["Body"]
    decompress = None
    try:
        first = True
        while True:
            chunk = await body.read(CHUNK)
            if not chunk:
                break
            if first:
                first = False
                if chunk[:2] == GZIP_MAGIC:
                    decompress = zlib.decompressobj(16 + zlib.MAX_WBITS)
                elif uri.endswith(".gz"):
                    raise ManifestError(f"manifest {uri} is named .gz but is not gzip data")
            yield _inflate(decompress, chunk, uri) if decompress else chunk
        if decompress is not None:
            yield _inflate_tail(decompress, uri)
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {uri}: {exc}") from None
    finally:
        body.close()


# -- splitting lines -----------------------------------------------------------------------


async def _jsonl_entries(
    chunks: AsyncIterator[bytes], checker: LineChecker
) -> AsyncIterator[list[Item | Invalid]]:
    """Entries of a JSONL manifest, a chunk's worth at a time."""
    rest = b""
    line = 0
    check = checker.json_line
    async for chunk in chunks:
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        batch: list[Item | Invalid] = []
        for raw in lines:
            line += 1
            if raw.strip():
                batch.append(check(raw, line))
        yield batch
        await anyio.lowlevel.checkpoint()
    if rest.strip():
        yield [check(rest, line + 1)]


async def _csv_entries(
    chunks: AsyncIterator[bytes], checker: LineChecker
) -> AsyncIterator[list[Item | Invalid]]:
    """Entries of a CSV manifest with a header row, a chunk's worth at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    pending: deque[str] = deque()
    reader = csv.reader(_drain(pending))
    header: list[str] | None = None
    rest = ""
    async for chunk in chunks:
        text = rest + decoder.decode(chunk)
        parts = text.split("\n")
        rest = parts.pop()
        pending.extend(p + "\n" for p in parts)
        batch, header = _csv_rows(reader, pending, header, checker, final=False)
        yield batch
        await anyio.lowlevel.checkpoint()
    tail = rest + decoder.decode(b"", final=True)
    if tail:
        pending.append(tail)
    batch, header = _csv_rows(reader, pending, header, checker, final=True)
    yield batch


def _drain(pending: deque[str]) -> Iterator[str]:
    """Lines for csv.reader, fed from `pending` as chunks arrive."""
    while True:
        if pending:
            yield pending.popleft()
        else:
            yield ""  # csv.reader sees an empty line; callers stop before this matters


def _csv_rows(
    reader: Any,
    pending: deque[str],
    header: list[str] | None,
    checker: LineChecker,
    *,
    final: bool,
) -> tuple[list[Item | Invalid], list[str] | None]:
    batch: list[Item | Invalid] = []
    # A quoted field may span lines: keep one line back until the manifest's end.
    while len(pending) > (0 if final else 1) or (final and pending):
        row = next(reader)
        line = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            if "id" not in header:
                batch.append(Invalid(line, "CSV header has no 'id' column"))
                header = []
            continue
        if not header:
            continue
        batch.append(checker.csv_row(header, row, line))
    return batch, header


# -- checking a line -----------------------------------------------------------------------


def parse_s3_uri(uri: object) -> S3Ref | str:
    """An S3Ref for `s3://bucket/key`, or the reason it is not one."""
    if not isinstance(uri, str):
        return "must be a string s3://bucket/key"
    if not uri.startswith("s3://"):
        return "must start with s3://"
    bucket, _, key = uri[5:].partition("/")
    if not BUCKET.match(bucket) or ".." in bucket:
        return "has an invalid bucket name"
    if not key:
        return "has no object key"
    return S3Ref(bucket, key)


class LineChecker:
    """Turns one parsed line into an Item, or the reason it cannot be one."""

    def __init__(self, task: TaskType) -> None:
        self.task = task
        self._seen: dict[int, int] = {}  # hash of id -> first line
        self._foreign = (
            frozenset().union(*(fields for t, fields in TASK_FIELDS.items() if t is not task))
            - TASK_FIELDS[task]
        )
        self._payload: Callable[[dict[str, Any], str, int], Item | Invalid] = {
            TaskType.CUSTOM: self._custom,
            TaskType.TEXTRACT: self._textract,
            TaskType.REKOGNITION: self._rekognition,
        }[task]

    def json_line(self, raw: bytes, line: int) -> Item | Invalid:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return Invalid(line, "line holds bytes that are not UTF-8")
            return Invalid(line, "line is not valid JSON")
        if type(record) is not dict:
            return Invalid(line, f"line is JSON {_kind(record)}, not an object")
        return self.record(record, line)

    def csv_row(self, header: list[str], row: list[str], line: int) -> Item | Invalid:
        if len(row) != len(header):
            return Invalid(line, f"row has {len(row)} columns, header has {len(header)}")
        record: dict[str, Any] = {}
        for column, cell in zip(header, row, strict=True):
            if not cell:
                continue
            try:
                cell.encode("utf-8")
            except UnicodeEncodeError:
                return Invalid(line, f"column {column!r} holds bytes that are not UTF-8")
            if column == "input":
                try:
                    record["input"] = orjson.loads(cell)
                except orjson.JSONDecodeError:
                    return Invalid(line, "column 'input' is not valid JSON")
            elif column == "feature_types":
                record[column] = [p.strip() for p in re.split(r"[|,]", cell) if p.strip()]
            elif column == "content_classifiers":
                record[column] = [p.strip() for p in cell.split("|") if p.strip()]
            elif column == "min_confidence":
                try:
                    record[column] = float(cell)
                except ValueError:
                    return Invalid(line, "column 'min_confidence' is not a number")
            elif column in CSV_COLUMNS:
                record[column] = cell
        return self.record(record, line)

    def record(self, record: dict[str, Any], line: int) -> Item | Invalid:
        """Check one manifest object (from JSONL, CSV, or a library caller)."""
        item_id = record.get("id")
        if type(item_id) is not str:
            what = "missing" if item_id is None else f"a {_kind(item_id)}, not a string"
            return Invalid(line, f"field 'id' is {what}")
        if not item_id or len(item_id) > MAX_ID_LENGTH:
            return Invalid(line, f"field 'id' must be 1-{MAX_ID_LENGTH} characters", None)
        foreign = self._foreign.intersection(record)
        if foreign:
            field = sorted(foreign)[0]
            owner = next(t for t, f in TASK_FIELDS.items() if field in f and t is not self.task)
            return Invalid(
                line,
                f"field {field!r} belongs to {owner.value} tasks; this job runs {self.task.value}",
                item_id,
            )
        key = hash(item_id)
        first = self._seen.setdefault(key, line)
        if first != line:
            return Invalid(line, f"duplicate id; first seen on line {first}", item_id)
        item = self._payload(record, item_id, line)
        if isinstance(item, Invalid):
            del self._seen[key]  # a fixed line may reuse the id later in the manifest
            return item
        return self._common(record, item)

    def _custom(self, record: dict[str, Any], item_id: str, line: int) -> Item | Invalid:
        has_input = "input" in record and record["input"] is not None
        content = record.get("input_content")
        if has_input == (content is not None):
            return Invalid(line, "give exactly one of 'input' and 'input_content'", item_id)
        if has_input:
            text = orjson.dumps(record["input"]).decode()
        elif type(content) is not str:
            return Invalid(
                line, f"field 'input_content' is a {_kind(content)}, not a string", item_id
            )
        else:
            try:
                orjson.loads(content)
            except orjson.JSONDecodeError:
                return Invalid(line, "field 'input_content' is not a JSON document", item_id)
            text = content
        if len(text) > MAX_INPUT_CONTENT_CHARS:
            return Invalid(
                line,
                f"InputContent is {len(text):,} characters; the limit is "
                f"{MAX_INPUT_CONTENT_CHARS:,}",
                item_id,
            )
        return Item(id=item_id, line=line, input_content=text)

    def _s3_item(
        self, record: dict[str, Any], field: str, item_id: str, line: int
    ) -> Item | Invalid:
        ref = parse_s3_uri(record.get(field)) if field in record else "is missing"
        if isinstance(ref, str):
            return Invalid(line, f"field {field!r} {ref}", item_id)
        version = record.get("version")
        if version is not None:
            if type(version) is not str or not version:
                return Invalid(line, "field 'version' must be a non-empty string", item_id)
            ref = S3Ref(ref.bucket, ref.key, version)
        return Item(id=item_id, line=line, s3=ref)

    def _textract(self, record: dict[str, Any], item_id: str, line: int) -> Item | Invalid:
        item = self._s3_item(record, "document", item_id, line)
        if isinstance(item, Invalid) or "feature_types" not in record:
            return item
        types = _string_list(record["feature_types"], TEXTRACT_FEATURE_TYPES)
        if isinstance(types, str):
            return Invalid(line, f"field 'feature_types' {types}", item_id)
        return Item(id=item_id, line=line, s3=item.s3, feature_types=types)

    def _rekognition(self, record: dict[str, Any], item_id: str, line: int) -> Item | Invalid:
        item = self._s3_item(record, "image", item_id, line)
        confidence = record.get("min_confidence")
        if isinstance(item, Invalid) or confidence is None:
            return item
        if type(confidence) not in (int, float) or not 0 <= confidence <= 100:
            return Invalid(line, "field 'min_confidence' must be a number from 0 to 100", item_id)
        return Item(id=item_id, line=line, s3=item.s3, min_confidence=float(confidence))

    def _common(self, record: dict[str, Any], item: Item) -> Item | Invalid:
        name = record.get("name")
        classifiers = record.get("content_classifiers")
        if name is None and classifiers is None:
            return item
        if name is not None:
            problem = name_problem(name)
            if problem is not None:
                return Invalid(item.line, f"field 'name': {problem}", item.id)
        checked: tuple[str, ...] | None = None
        if classifiers is not None:
            result = _string_list(classifiers, CONTENT_CLASSIFIERS, allow_empty=True)
            if isinstance(result, str):
                return Invalid(item.line, f"field 'content_classifiers' {result}", item.id)
            checked = result
        return Item(
            id=item.id,
            line=item.line,
            input_content=item.input_content,
            s3=item.s3,
            feature_types=item.feature_types,
            min_confidence=item.min_confidence,
            name=name,
            content_classifiers=checked,
        )


def _string_list(
    value: object, allowed: frozenset[str], *, allow_empty: bool = False
) -> tuple[str, ...] | str:
    if type(value) is not list or (not value and not allow_empty):
        return "must be a non-empty list of strings"
    if any(type(v) is not str for v in value):
        return "must hold only strings"
    unknown = [v for v in value if v not in allowed]
    if unknown:
        return f"holds an unknown value; known: {', '.join(sorted(allowed))}"
    if len(set(value)) != len(value):
        return "holds a value twice"
    return tuple(value)


def _kind(value: object) -> str:
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


__all__ = ["LineChecker", "parse_s3_uri", "read_manifest"]
