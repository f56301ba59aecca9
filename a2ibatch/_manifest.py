"""The manifest reader: a file, stdin or an S3 object in; one `Item` or `Invalid` per line out.

A manifest is JSON Lines (one object per line) or CSV with a header row, optionally gzipped.
The reader streams it: bytes arrive in chunks of about 1 MiB (read in a worker thread for
local files and stdin, chunk by chunk from the S3 body), are split into lines in bulk, and each
line is parsed and checked with plain inline code.  Memory stays flat whatever the manifest's
size: the only state that grows is the duplicate-id table, which keeps a 64-bit digest and a
line number per id (a 12-byte slot in a table at most 5/8 full: 24 MiB for a million ids),
never the id itself.

A line that cannot become an item is not an error but an `Invalid` with a short reason for
the person who fixes the manifest.  Reasons may name fields and types but never quote the
line's content or a field's value: manifests often hold personal data, and reasons end up in
ledgers and logs.  Only a manifest that cannot be read at all raises `ManifestError`.

Field rules (JSON Lines; CSV cells are converted to the same values first):

* ``id``: required, a non-empty string of at most 1,000 characters, unique in the manifest
  (the second occurrence of an id is invalid).
* custom tasks: exactly one of ``input`` (any JSON value, sent as compact JSON) and
  ``input_content`` (a string holding a JSON document, sent verbatim); at most
  `MAX_INPUT_CONTENT_CHARS` characters either way.
* textract: ``document``, an ``s3://bucket/key`` URI; optional ``version`` and
  ``feature_types`` (a non-empty list of distinct Textract feature types).
* rekognition: ``image``, an ``s3://bucket/key`` URI; optional ``version`` and
  ``min_confidence`` (a number from 0 to 100).
* every task: optional ``name`` (an explicit loop name) and ``content_classifiers`` (a list
  of distinct A2I content classifiers; an empty list means none for this item).
* A field of another task type is refused (it would be silently dropped otherwise); any other
  field is ignored, so that a manifest can carry its owner's own columns.  A JSON ``null``
  counts as an absent field, as does an empty CSV cell.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import stat
import sys
import zlib
from array import array
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, BinaryIO, Literal

import anyio
import anyio.lowlevel
import anyio.to_thread
import orjson

from ._errors import ConfigError, ManifestError
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

__all__ = ["MAX_ID_CHARS", "MAX_LINE_BYTES", "read_manifest", "read_manifest_batches"]

#: the longest id a manifest may use (the ledger and the logs carry it)
MAX_ID_CHARS = 1000
#: a longer line is invalid without being parsed; it bounds the reader's memory per line
#: (an input of 3 MiB characters takes up to 18 MiB as JSON text when every one is escaped)
MAX_LINE_BYTES = 32 * 1024 * 1024
#: bytes read (and, for gzip, produced) per step: few system calls and thread hops
CHUNK_BYTES = 1024 * 1024
#: lines checked per step, whose entries are built and handed over together.  Few enough
#: that a step's new objects (an `Item`, and an `S3Ref` for the built-in task types) stay
#: under the garbage collector's young-generation threshold (700 by default): a consumer
#: that drops each step's entries before the next step (a dry run) then triggers hardly
#: any collection, where steps of thousands of lines spent a tenth of a dry run in them.
BATCH_LINES = 256
#: lines checked between two chances for the event loop to run other tasks
CHECKPOINT_LINES = 4096
#: S3 limits on bucket names and object keys
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_MAX_KEY_BYTES = 1024
#: a key of at most this many characters is within _MAX_KEY_BYTES whatever they are
_SHORT_KEY_CHARS = _MAX_KEY_BYTES // 4

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
#: stands in for a line longer than MAX_LINE_BYTES; never valid JSON, recognised by identity
_TOO_LONG = b"\x00line too long\x00"
_MASK64 = (1 << 64) - 1

#: which task type each task-specific field belongs to
_FIELD_TASKS: dict[str, tuple[TaskType, ...]] = {
    "input": (TaskType.CUSTOM,),
    "input_content": (TaskType.CUSTOM,),
    "document": (TaskType.TEXTRACT,),
    "feature_types": (TaskType.TEXTRACT,),
    "image": (TaskType.REKOGNITION,),
    "min_confidence": (TaskType.REKOGNITION,),
    "version": (TaskType.TEXTRACT, TaskType.REKOGNITION),
}
_FOREIGN: dict[TaskType, frozenset[str]] = {
    task: frozenset(f for f, owners in _FIELD_TASKS.items() if task not in owners)
    for task in TaskType
}
#: the columns a CSV manifest may use (others are ignored)
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


# -- the entry point -----------------------------------------------------------------------


async def read_manifest(
    source: str,
    task: TaskType,
    *,
    s3_client: Any | None = None,
    format: Literal["auto", "jsonl", "csv"] = "auto",
    stdin: BinaryIO | None = None,
) -> AsyncIterator[Item | Invalid]:
    """Yield one `Item` or `Invalid` per non-blank line of the manifest, in manifest order.

    `source` is a local path (plain or gzip), ``-`` for `stdin` (default ``sys.stdin.buffer``)
    or ``s3://bucket/key`` (read with `s3_client`, an aiobotocore S3 client).  Gzip is
    recognised by its magic bytes; a name ending in ``.gz`` must hold gzip.  The format is CSV
    for names ending in ``.csv`` or ``.csv.gz`` and JSON Lines otherwise, unless `format`
    says which.

    Raises ManifestError, naming the source and the cause, when the manifest cannot be read:
    a missing or unreadable file or object, a broken gzip stream, a CSV header without an
    ``id`` column.  Entries already yielded stay valid.
    """
    batches = read_manifest_batches(source, task, s3_client=s3_client, format=format, stdin=stdin)
    try:
        async for batch in batches:
            for entry in batch:
                yield entry
    finally:
        # closing this generator early must close the manifest now, not when the inner
        # generator happens to be collected
        await batches.aclose()


async def read_manifest_batches(
    source: str,
    task: TaskType,
    *,
    s3_client: Any | None = None,
    format: Literal["auto", "jsonl", "csv"] = "auto",
    stdin: BinaryIO | None = None,
) -> AsyncGenerator[list[Item | Invalid], None]:
    """`read_manifest`'s entries in lists of at most `BATCH_LINES` lines' worth.

    The same entries in the same order, with the same arguments and errors; a consumer that
    handles every entry alike (a dry run) saves an async generator round trip per line.
    Lists may be empty, and the caller may keep them.
    """
    task = TaskType(task)
    if format not in ("auto", "jsonl", "csv"):
        raise ConfigError(f"unknown manifest format {format!r}; use auto, jsonl or csv")
    name = source.lower().removesuffix(".gz")
    is_csv = format == "csv" or (format == "auto" and name.endswith(".csv"))
    reader = await _open(source, s3_client, stdin)
    try:
        lines = _LineSplitter()
        parser: _JsonlParser | _CsvParser = (
            _CsvParser(task, "on stdin" if source == "-" else source)
            if is_csv
            else _JsonlParser(task)
        )
        lineno = 1  # the number of the next line `lines` hands out
        unchecked = 0  # lines handed out since the event loop last had a chance to run
        estimated = reader.size is None
        while True:
            chunk = await reader.read()
            final = not chunk
            batch = lines.finish() if final else lines.feed(chunk)
            parts = [batch[i : i + BATCH_LINES] for i in range(0, len(batch), BATCH_LINES)]
            if final and not parts:
                parts = [[]]  # the CSV parser finishes a record left open
            last = len(parts) - 1
            for n, part in enumerate(parts):
                yield parser.feed(part, lineno, final and n == last)
                lineno += len(part)
                unchecked += len(part)
                if unchecked >= CHECKPOINT_LINES:
                    unchecked = 0
                    await anyio.lowlevel.checkpoint()
            if final:
                return
            if not estimated and reader.used and reader.size:
                # Size the duplicate-id table once rather than grow it step by step.
                estimated = True
                parser.expect(min(reader.size // 2, lineno * reader.size // reader.used))
    finally:
        await reader.aclose()


# -- byte sources --------------------------------------------------------------------------


class _Inflater:
    """Incremental gzip decompression in bounded pieces (a gzip bomb cannot fill memory).

    Handles multi-member files (``cat a.gz b.gz``) and trailing zero padding like `gzip`.
    """

    def __init__(self) -> None:
        self._d = zlib.decompressobj(wbits=31)
        self._pending = b""  # compressed bytes not yet decompressed
        self._fed = False  # the current member has received input
        self._padding = False  # only zero bytes may follow

    @property
    def hungry(self) -> bool:
        return not self._pending

    @property
    def pending(self) -> int:
        return len(self._pending)

    def push(self, data: bytes) -> None:
        self._pending = data

    def pull(self) -> bytes:
        """Up to CHUNK_BYTES decompressed bytes from the pending input (maybe none)."""
        data, self._pending = self._pending, b""
        if self._padding or (self._d.eof and not data.strip(b"\x00")):
            if data.strip(b"\x00"):
                raise ValueError("data follows the end of the gzip stream")
            self._padding = True
            return b""
        if self._d.eof:
            self._d = zlib.decompressobj(wbits=31)  # the next member
        self._fed = True
        out = self._d.decompress(data, CHUNK_BYTES)
        self._pending = self._d.unused_data if self._d.eof else self._d.unconsumed_tail
        return out

    def finish(self) -> None:
        if self._fed and not self._d.eof and not self._padding:
            raise ValueError("the gzip stream is truncated")


class _Decoder:
    """Raw bytes in, the manifest's bytes out: gzip is recognised by its magic and inflated.

    A pure state machine, so that a file's reader can run it in a worker thread and an S3
    object's reader on the event loop: `take` answers None when it needs `give` first.
    """

    def __init__(self, label: str, gz_name: bool) -> None:
        self._label = label
        self._gz_name = gz_name
        self._head = b""  # the first bytes, until there are enough to see the magic
        self._gzip: bool | None = None  # None until known
        self._inflater = _Inflater()
        self._plain = b""
        self._end = False
        self._given = 0

    @property
    def used(self) -> int:
        """Raw bytes turned into manifest bytes so far (to estimate the manifest's size)."""
        return self._given - len(self._head) - len(self._plain) - self._inflater.pending

    def give(self, raw: bytes) -> None:
        """The next raw bytes; b"" at the end of the input."""
        self._given += len(raw)
        if not raw:
            self._end = True
        if self._gzip is None:
            self._head += raw
            if len(self._head) < len(_GZIP_MAGIC) and not self._end:
                return
            raw, self._head = self._head, b""
            self._gzip = raw.startswith(_GZIP_MAGIC)
            if self._gz_name and raw and not self._gzip:
                raise ManifestError(f"cannot read manifest {self._label}: named .gz but not gzip")
        if not raw:
            return
        if self._gzip:
            self._inflater.push(raw)
        else:
            self._plain = raw

    def take(self) -> bytes | None:
        """The next bytes of the manifest, b"" at its end, or None when `give` must come first."""
        if self._gzip:
            inflater = self._inflater
            try:
                while not inflater.hungry:
                    piece = inflater.pull()
                    if piece:
                        return piece
                if self._end:
                    inflater.finish()
            except (zlib.error, ValueError) as exc:
                problem = "not a valid gzip stream" if isinstance(exc, zlib.error) else str(exc)
                raise ManifestError(f"cannot read manifest {self._label}: {problem}") from None
        elif self._plain:
            piece, self._plain = self._plain, b""
            return piece
        return b"" if self._end else None


class _FileReader:
    """Chunks of a local file or of stdin, read and decompressed in a worker thread."""

    def __init__(
        self, stream: BinaryIO, label: str, gz_name: bool, owned: bool, size: int | None
    ) -> None:
        self.size = size  # raw bytes in all, when known
        self._stream = stream
        self._label = label
        self._owned = owned
        self._decoder = _Decoder(label, gz_name)
        read1 = getattr(stream, "read1", None)  # a pipe's data as soon as some is there
        self._read: Callable[[int], bytes] = read1 if callable(read1) else stream.read

    def _next(self) -> bytes:
        decoder = self._decoder
        while (piece := decoder.take()) is None:
            try:
                raw = self._read(CHUNK_BYTES)
            except OSError as exc:
                cause = exc.strerror or type(exc).__name__
                raise ManifestError(f"cannot read manifest {self._label}: {cause}") from None
            decoder.give(raw)
        return piece

    @property
    def used(self) -> int:
        return self._decoder.used

    async def read(self) -> bytes:
        # stdin may block for ever: a cancelled job must not wait for it
        return await anyio.to_thread.run_sync(self._next, abandon_on_cancel=not self._owned)

    async def aclose(self) -> None:
        if self._owned:
            self._stream.close()


class _S3Reader:
    """Chunks of an S3 object's body as they arrive, decompressed on the fly."""

    def __init__(self, body: Any, uri: str, gz_name: bool, size: int | None) -> None:
        self.size = size  # raw bytes in all, when known
        self._body = body
        self._uri = uri
        self._decoder = _Decoder(uri, gz_name)

    @property
    def used(self) -> int:
        return self._decoder.used

    async def read(self) -> bytes:
        decoder = self._decoder
        while (piece := decoder.take()) is None:
            try:
                raw: bytes = await self._body.read(CHUNK_BYTES)
            except Exception as exc:  # the connection broke, a timeout, a short body
                cause = type(exc).__name__
                raise ManifestError(f"cannot read manifest {self._uri}: {cause}") from None
            decoder.give(raw)
        return piece

    async def aclose(self) -> None:
        self._body.close()


async def _open(
    source: str, s3_client: Any | None, stdin: BinaryIO | None
) -> _FileReader | _S3Reader:
    """A reader of the manifest's bytes: ``await read()`` (b"" at the end), ``await aclose()``,
    and `size` and `used`, the raw bytes in all (None when unknown) and consumed so far."""
    gz_name = source.lower().endswith(".gz")
    if source == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return _FileReader(stream, "on stdin", False, owned=False, size=None)
    if source.startswith("s3://"):
        return await _open_s3(source, s3_client, gz_name)

    def open_file() -> BinaryIO:
        return open(source, "rb", buffering=0)

    try:
        stream = await anyio.to_thread.run_sync(open_file)
    except OSError as exc:
        cause = exc.strerror or type(exc).__name__
        raise ManifestError(f"cannot open manifest {source}: {cause}") from None
    info = os.fstat(stream.fileno())
    if not stat.S_ISREG(info.st_mode):
        stream.close()
        raise ManifestError(f"cannot open manifest {source}: not a regular file")
    return _FileReader(stream, source, gz_name, owned=True, size=info.st_size)


async def _open_s3(uri: str, s3_client: Any | None, gz_name: bool) -> _S3Reader:
    if s3_client is None:
        raise ManifestError(f"cannot open manifest {uri}: no S3 client was given")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ManifestError(f"cannot open manifest {uri}: not an s3://bucket/key URI")
    try:
        response = await s3_client.get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise ManifestError(f"cannot open manifest {uri}: {_s3_problem(exc)}") from None
    size = response.get("ContentLength")
    return _S3Reader(response["Body"], uri, gz_name, size if isinstance(size, int) else None)


def _s3_problem(exc: Exception) -> str:
    """The cause of a failed GetObject, from its error code."""
    error = getattr(exc, "response", None)
    code = ""
    if isinstance(error, dict):
        code = str((error.get("Error") or {}).get("Code") or "")
    known = {
        "NoSuchKey": "no such object (NoSuchKey)",
        "NoSuchBucket": "no such bucket (NoSuchBucket)",
        "AccessDenied": "access denied (AccessDenied); check s3:GetObject on the object",
        "404": "no such object (404)",
        "403": "access denied (403)",
    }
    if code in known:
        return known[code]
    if code:
        return f"S3 refused the request ({code})"
    return type(exc).__name__


# -- lines ---------------------------------------------------------------------------------


class _LineSplitter:
    """Cuts chunks into physical lines (without their newline), in bulk.

    A line longer than MAX_LINE_BYTES is dropped as it streams by and replaced by the
    `_TOO_LONG` marker, so that it costs no memory and keeps its line number.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # the current unfinished line
        self._size = 0
        self._skipping = False  # inside a line that is too long
        self._first = True

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        if self._skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                return out
            out.append(_TOO_LONG)
            self._skipping = False
            chunk = chunk[nl + 1 :]
        nl = chunk.rfind(b"\n")
        if nl < 0:
            self._parts.append(chunk)
            self._size += len(chunk)
            if self._size > MAX_LINE_BYTES:
                self._parts, self._size, self._skipping = [], 0, True
            return self._bom(out)
        head = chunk[:nl]
        if self._parts:
            self._parts.append(head)
            head = b"".join(self._parts)
        lines = head.split(b"\n")
        if self._size and len(lines[0]) > MAX_LINE_BYTES:
            lines[0] = _TOO_LONG
        rest = chunk[nl + 1 :]
        self._parts = [rest] if rest else []
        self._size = len(rest)
        if out:
            out.extend(lines)
            return self._bom(out)
        return self._bom(lines)

    def finish(self) -> list[bytes]:
        """The last line when the data does not end with a newline."""
        if self._skipping:
            self._skipping = False
            return [_TOO_LONG]
        last = b"".join(self._parts)
        self._parts, self._size = [], 0
        return self._bom([last]) if last else []

    def _bom(self, lines: list[bytes]) -> list[bytes]:
        # A byte order mark (Windows editors, Excel) is no part of the first line.
        if self._first and lines:
            self._first = False
            if lines[0].startswith(_BOM):
                lines[0] = lines[0][len(_BOM) :]
        return lines


# -- building items ------------------------------------------------------------------------


def _slot_builder(cls: type[Any], names: tuple[str, ...]) -> Callable[..., Any]:
    """A faster positional constructor for a frozen, slotted dataclass whose fields are `names`.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which
    costs about as much as the rest of a manifest line's checks.  `_twin_builder` builds
    the same instance in under a quarter of the time; where the interpreter does not allow
    its trick, `_setter_builder` does in half.  When the class's fields differ from `names`
    (the model changed) or it runs code at construction (``__post_init__``), the class
    itself is returned: slower, never wrong.
    """
    fields = tuple(f.name for f in dataclasses.fields(cls))
    slots = getattr(cls, "__slots__", ())
    if (
        fields != names
        or tuple(slots) != names
        or any(f.init is False for f in dataclasses.fields(cls))
        or hasattr(cls, "__post_init__")
    ):
        return cls
    return _twin_builder(cls, names) or _setter_builder(cls, names)


def _compile_builder(names: tuple[str, ...], body: str, scope: dict[str, Any]) -> Any:
    """``def build(<names>): <body>`` compiled in `scope` (the helpers `body` refers to)."""
    # the helpers' names cannot clash with field names: fields never start with "_dc_"
    exec(f"def build({', '.join(names)}):\n{body}", scope)
    return scope["build"]


def _twin_builder(cls: type[Any], names: tuple[str, ...]) -> Callable[..., Any] | None:
    """A constructor that fills a plain twin of `cls` and then makes it a `cls`, or None.

    The twin has the same slots in the same order, so filling it takes ordinary attribute
    stores (the cheapest there are), and CPython lets an instance change its class between
    two classes of identical layout: the result is the instance ``cls`` would build (equal,
    same hash and repr, immutable afterwards).  The builder is tried on probe values; None
    when the interpreter refuses the class change or the probe does not come out intact.
    """
    twin = type(f"_{cls.__name__}Slots", (), {"__slots__": names, "__module__": __name__})
    stores = "".join(f"    _dc_o.{name} = {name}\n" for name in names)
    body = f"    _dc_o = _dc_twin()\n{stores}    _dc_o.__class__ = _dc_cls\n    return _dc_o\n"
    build = _compile_builder(names, body, {"_dc_cls": cls, "_dc_twin": twin})
    probe = [object() for _ in names]
    try:
        built = build(*probe)
    except TypeError:  # "__class__ assignment: ... object layout differs from ..."
        return None
    if type(built) is not cls or any(
        getattr(built, name) is not value for name, value in zip(names, probe, strict=True)
    ):
        return None
    result: Callable[..., Any] = build
    return result


def _setter_builder(cls: type[Any], names: tuple[str, ...]) -> Callable[..., Any]:
    """A constructor that writes the slots of `cls` directly through their descriptors."""
    setters = [vars(cls)[name].__set__ for name in names]
    body = "".join(f"    _dc_set{i}(_dc_o, {name})\n" for i, name in enumerate(names))
    scope: dict[str, Any] = {"_dc_new": object.__new__, "_dc_cls": cls}
    scope.update({f"_dc_set{i}": setter for i, setter in enumerate(setters)})
    build: Callable[..., Any] = _compile_builder(
        names, f"    _dc_o = _dc_new(_dc_cls)\n{body}    return _dc_o\n", scope
    )
    return build


#: Item(id, line, input_content, s3, feature_types, min_confidence, name, content_classifiers)
_item: Callable[
    [
        str,
        int,
        str | None,
        S3Ref | None,
        tuple[str, ...] | None,
        float | None,
        str | None,
        tuple[str, ...] | None,
    ],
    Item,
] = _slot_builder(
    Item,
    (
        "id",
        "line",
        "input_content",
        "s3",
        "feature_types",
        "min_confidence",
        "name",
        "content_classifiers",
    ),
)
#: S3Ref(bucket, key, version)
_s3ref: Callable[[str, str, str | None], S3Ref] = _slot_builder(S3Ref, ("bucket", "key", "version"))


# -- checks shared by both formats ---------------------------------------------------------

_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _kind(value: object) -> str:
    """A JSON value's type, for reasons (never the value itself)."""
    return _JSON_TYPES.get(type(value), "a value")


def _id_problem(value: object) -> str:
    if value is None:
        return "missing field 'id'"
    if type(value) is not str:
        return f"field 'id' must be a string, not {_kind(value)}"
    if not value:
        return "field 'id' is empty"
    return f"field 'id' is {len(value)} characters long; the limit is {MAX_ID_CHARS}"


def _unparsable(raw: bytes, exc: orjson.JSONDecodeError) -> str | None:
    """Why a line is not JSON; None for a blank line (skipped)."""
    if raw is _TOO_LONG:
        return f"line is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB"
    if not raw or raw.isspace():
        return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"line is not valid UTF-8 (byte {bad.start + 1})"
    return f"line is not valid JSON (column {exc.colno})"


class _Ids:
    """First line of each id, by a 64-bit digest of the id: open addressing in two arrays.

    The digest is the id's `hash` (SipHash keyed per process: ids cannot be chosen to
    collide, and a one-in-10^7 false duplicate over 10^6 ids would not repeat on a rerun).
    12 bytes a slot, at most 5/8 of the slots used: 24 MiB for a million ids, where a dict
    of ints would take over 100 MiB.  The hot loop in `_JsonlParser` inlines `first`.
    """

    __slots__ = ("limit", "lines", "mask", "slots", "used")

    def __init__(self, bits: int = 15) -> None:
        self.mask = (1 << bits) - 1
        self.slots = array("Q", [0]) * (1 << bits)  # digests; 0 = free
        self.lines = array("I", [0]) * (1 << bits)  # first line of the digest's id
        self.used = 0
        self.limit = (self.mask + 1) * 5 // 8

    def reserve(self, more: int) -> None:
        """Make room for `more` ids, so that the hot loop never needs to grow the table.

        Growing costs a pass over the table in Python: callers that can estimate the
        manifest's size reserve it all at once.
        """
        if self.used + more <= self.limit:
            return
        size = self.mask + 1
        while self.used + more > size * 5 // 8:
            size *= 2
        old_slots, old_lines = self.slots, self.lines
        mask = size - 1
        slots = array("Q", [0]) * size
        lines = array("I", [0]) * size
        for digest, line in zip(old_slots, old_lines, strict=True):
            if digest:
                slot = digest & mask
                while slots[slot]:
                    slot = (slot + 1) & mask
                slots[slot] = digest
                lines[slot] = line
        self.slots, self.lines, self.mask, self.limit = slots, lines, mask, size * 5 // 8

    def first(self, item_id: str, line: int) -> int:
        """The line that first used `item_id`: `line` itself when it is new."""
        self.reserve(1)
        digest = (hash(item_id) & _MASK64) or 1
        slots, mask = self.slots, self.mask
        slot = digest & mask
        while True:
            seen = slots[slot]
            if seen == 0:
                slots[slot] = digest
                self.lines[slot] = line
                self.used += 1
                return line
            if seen == digest:
                return self.lines[slot]
            slot = (slot + 1) & mask


def _s3_ref(value: object, field: str, version: object) -> S3Ref | str:
    """The S3 object a field names, or why it names none."""
    if type(value) is not str:
        return f"field '{field}' must be a string, not {_kind(value)}"
    parts = value.split("/", 3)  # "s3:", "", bucket, key
    if len(parts) != 4 or parts[0] != "s3:" or parts[1] or not parts[3]:
        if value.startswith("s3://"):
            return f"field '{field}' has no object key (s3://bucket/key)"
        return f"field '{field}' must be an S3 URI (s3://bucket/key)"
    bucket = parts[2]
    problem = _BUCKETS.get(bucket, "")
    if problem == "":
        problem = _bucket_problem(bucket)
        if len(_BUCKETS) < 4096:  # a manifest names few buckets; a broken one, many
            _BUCKETS[bucket] = problem
    if problem is not None:
        return f"field '{field}' names an invalid bucket: {problem}"
    key = parts[3]
    if len(key) > _SHORT_KEY_CHARS and len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        return f"field '{field}' has an object key longer than {_MAX_KEY_BYTES} bytes"
    if version is not None and (type(version) is not str or not version):
        return f"field 'version' must be a non-empty string, not {_kind(version)}"
    return _s3ref(bucket, key, version)


_BUCKETS: dict[str, str | None] = {}


def _bucket_problem(bucket: str) -> str | None:
    """Why `bucket` is not a valid S3 bucket name (general purpose buckets), or None."""
    if not 3 <= len(bucket) <= 63:
        return "a bucket name has 3-63 characters"
    if not _BUCKET_CHARS.issuperset(bucket):
        return "a bucket name holds only a-z, 0-9, '.' and '-'"
    if bucket[0] not in _ALNUM or bucket[-1] not in _ALNUM:
        return "a bucket name starts and ends with a letter or digit"
    if ".." in bucket:
        return "a bucket name has no two adjacent periods"
    parts = bucket.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return "a bucket name is not an IP address"
    if bucket.startswith(("xn--", "sthree-")) or bucket.endswith(("-s3alias", "--ol-s3")):
        return "a bucket name has no reserved prefix or suffix"
    return None


def _choices(
    value: object,
    field: str,
    allowed: frozenset[str],
    empty_ok: bool,
    cache: dict[tuple[Any, ...], tuple[str, ...] | str],
) -> tuple[str, ...] | str:
    """`value` as a tuple of distinct strings from `allowed`, or why it is not one.

    Manifests repeat the same few lists on every line, so answers are cached by the list's
    contents (bounded), and equal lists share one tuple.
    """
    key: tuple[Any, ...] | None = None
    if type(value) is list:
        key = tuple(value)
        try:
            hit = cache.get(key)
        except TypeError:  # it holds a list or an object: not hashable, and not valid
            key, hit = None, None
        if hit is not None:
            return hit
    answer: tuple[str, ...] | str
    if type(value) is not list or not all(type(v) is str for v in value):
        answer = f"field '{field}' must be a list of strings, not {_kind(value)}"
    elif not value and not empty_ok:
        answer = f"field '{field}' must not be empty"
    elif not allowed.issuperset(value):
        answer = f"field '{field}' holds an unknown value; allowed: {', '.join(sorted(allowed))}"
    elif len(set(value)) != len(value):
        answer = f"field '{field}' repeats a value"
    else:
        answer = tuple(value)
    if key is not None and len(cache) < 1024:
        cache[key] = answer
    return answer


_FEATURE_LISTS: dict[tuple[Any, ...], tuple[str, ...] | str] = {}
_CLASSIFIER_LISTS: dict[tuple[Any, ...], tuple[str, ...] | str] = {}


def _foreign(obj: dict[str, Any], task: TaskType, line: int, item_id: str) -> Invalid | None:
    """An `Invalid` when the line sets a field of another task type."""
    for field in _FIELD_TASKS:
        if task not in _FIELD_TASKS[field] and obj.get(field) is not None:
            owners = " and ".join(t.value for t in _FIELD_TASKS[field])
            return Invalid(
                line,
                f"field '{field}' belongs to {owners} tasks; this job runs {task.value} tasks",
                item_id,
            )
    return None


def _common(
    obj: dict[str, Any], line: int, item_id: str
) -> tuple[str | None, tuple[str, ...] | None] | Invalid:
    """The optional `name` and `content_classifiers` of any task type."""
    name = obj.get("name")
    if name is not None:
        problem = name_problem(name)
        if problem is not None:
            return Invalid(line, f"field 'name': {problem}", item_id)
    classifiers = obj.get("content_classifiers")
    if classifiers is None:
        return name, None
    checked = _choices(
        classifiers, "content_classifiers", CONTENT_CLASSIFIERS, True, _CLASSIFIER_LISTS
    )
    if isinstance(checked, str):
        return Invalid(line, checked, item_id)
    return name, checked


def _too_big(chars: int) -> str:
    return f"input content is {chars} characters long; the limit is {MAX_INPUT_CONTENT_CHARS}"


def _finish(
    obj: dict[str, Any],
    line: int,
    item_id: str,
    content: str | None,
    ref: S3Ref | None,
    features: tuple[str, ...] | None,
    confidence: float | None,
) -> Item | Invalid:
    """The item, once the fields every task type shares (name, classifiers) are checked."""
    if "name" in obj or "content_classifiers" in obj:
        common = _common(obj, line, item_id)
        if type(common) is Invalid:
            return common
        name, classifiers = common  # type: ignore[misc]
        return _item(item_id, line, content, ref, features, confidence, name, classifiers)
    return _item(item_id, line, content, ref, features, confidence, None, None)


def _check_custom(obj: dict[str, Any], line: int, item_id: str) -> Item | Invalid:
    if not _FOREIGN_CUSTOM.isdisjoint(obj):
        wrong = _foreign(obj, TaskType.CUSTOM, line, item_id)
        if wrong is not None:
            return wrong
    value = obj.get("input")
    text = obj.get("input_content")
    if value is not None:
        if text is not None:
            return Invalid(line, "has both 'input' and 'input_content'; give one", item_id)
        content = orjson.dumps(value).decode()
        if len(content) > MAX_INPUT_CONTENT_CHARS:
            return Invalid(line, _too_big(len(content)), item_id)
    elif text is not None:
        if type(text) is not str:
            return Invalid(
                line, f"field 'input_content' must be a string, not {_kind(text)}", item_id
            )
        if len(text) > MAX_INPUT_CONTENT_CHARS:
            return Invalid(line, _too_big(len(text)), item_id)
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            return Invalid(line, "field 'input_content' does not hold a JSON document", item_id)
        content = text
    else:
        return Invalid(line, "needs field 'input' or 'input_content'", item_id)
    return _finish(obj, line, item_id, content, None, None, None)


def _plain_ref(obj: dict[str, Any], field: str, slow_fields: frozenset[str]) -> S3Ref | None:
    """The object a plain line of a built-in task type names, or None: the common fast path.

    Most lines of a textract or rekognition manifest hold an ``id`` and an S3 URI in `field`
    (``document`` or ``image``) whose bucket earlier lines already used, and nothing else
    that the checks read.  Such a line's object is found here with a few string operations;
    for every other line, valid or not, the answer is None and the caller goes to its slow
    path, so that the answer (the same item, or the same reason) never depends on which path
    gave it.  The fast path accepts only what the slow path accepts, and builds the same
    object from it:

    * no field of `slow_fields` (every field a check reads but ``id`` and `field`) is
      present, not even as null: no field of another task type, no ``version``,
      ``feature_types``, ``min_confidence``, ``name`` or ``content_classifiers``;
    * `field` is a string ``s3://bucket/key`` with a non-empty key of at most a quarter of
      the key limit in characters (so at most the limit in UTF-8 bytes);
    * the bucket's name is in the cache of names that passed `_bucket_problem`.
    """
    uri = obj.get(field)
    if type(uri) is str and slow_fields.isdisjoint(obj):
        parts = uri.split("/", 3)  # "s3:", "", bucket, key
        if len(parts) == 4:
            scheme, empty, bucket, key = parts
            if (
                scheme == "s3:"
                and not empty
                and 0 < len(key) <= _SHORT_KEY_CHARS
                and _BUCKETS.get(bucket, "") is None
            ):
                return _s3ref(bucket, key, None)
    return None


def _check_textract(obj: dict[str, Any], line: int, item_id: str) -> Item | Invalid:
    """A textract line's item, or why it is invalid: `_plain_ref`, else the slow path."""
    ref = _plain_ref(obj, "document", _TEXTRACT_SLOW_FIELDS)
    if ref is not None:
        return _item(item_id, line, None, ref, None, None, None, None)
    return _check_textract_slow(obj, line, item_id)


def _object_ref(
    obj: dict[str, Any], line: int, item_id: str, task: TaskType, field: str
) -> S3Ref | Invalid:
    """The S3 object a built-in task's line names in `field` (with its ``version``), or the
    first reason the line is invalid: a field of another task type, or a bad URI."""
    if not _FOREIGN[task].isdisjoint(obj):
        wrong = _foreign(obj, task, line, item_id)
        if wrong is not None:
            return wrong
    uri = obj.get(field)
    if uri is None:
        return Invalid(line, f"needs field '{field}' (s3://bucket/key)", item_id)
    ref = _s3_ref(uri, field, obj.get("version"))
    if isinstance(ref, str):
        return Invalid(line, ref, item_id)
    return ref


def _check_textract_slow(obj: dict[str, Any], line: int, item_id: str) -> Item | Invalid:
    """A textract line's item, or the first reason it is invalid, checking every rule."""
    ref = _object_ref(obj, line, item_id, TaskType.TEXTRACT, "document")
    if isinstance(ref, Invalid):
        return ref
    features = obj.get("feature_types")
    if features is not None:
        features = _choices(
            features, "feature_types", TEXTRACT_FEATURE_TYPES, False, _FEATURE_LISTS
        )
        if isinstance(features, str):
            return Invalid(line, features, item_id)
    return _finish(obj, line, item_id, None, ref, features, None)


def _check_rekognition(obj: dict[str, Any], line: int, item_id: str) -> Item | Invalid:
    """A rekognition line's item, or why it is invalid: `_plain_ref`, else the slow path."""
    ref = _plain_ref(obj, "image", _REKOGNITION_SLOW_FIELDS)
    if ref is not None:
        return _item(item_id, line, None, ref, None, None, None, None)
    return _check_rekognition_slow(obj, line, item_id)


def _check_rekognition_slow(obj: dict[str, Any], line: int, item_id: str) -> Item | Invalid:
    """A rekognition line's item, or the first reason it is invalid, checking every rule."""
    ref = _object_ref(obj, line, item_id, TaskType.REKOGNITION, "image")
    if isinstance(ref, Invalid):
        return ref
    confidence = obj.get("min_confidence")
    if confidence is not None:
        if type(confidence) not in (int, float) or not 0 <= confidence <= 100:
            return Invalid(line, "field 'min_confidence' must be a number from 0 to 100", item_id)
        confidence = float(confidence)
    return _finish(obj, line, item_id, None, ref, None, confidence)


_FOREIGN_CUSTOM = _FOREIGN[TaskType.CUSTOM]
#: every field a check reads except ``id``
_CHECKED_FIELDS = frozenset(_FIELD_TASKS) | {"name", "content_classifiers"}
#: the fields whose presence sends a line to `_check_textract_slow` or
#: `_check_rekognition_slow`: every field a check reads except ``id`` and the S3 URI's
_TEXTRACT_SLOW_FIELDS = _CHECKED_FIELDS - {"document"}
_REKOGNITION_SLOW_FIELDS = _CHECKED_FIELDS - {"image"}
_CHECKS: dict[TaskType, Callable[[dict[str, Any], int, str], Item | Invalid]] = {
    TaskType.CUSTOM: _check_custom,
    TaskType.TEXTRACT: _check_textract,
    TaskType.REKOGNITION: _check_rekognition,
}


# -- JSON Lines ----------------------------------------------------------------------------


class _JsonlParser:
    """Checks batches of JSON Lines: one entry per non-blank line."""

    def __init__(self, task: TaskType) -> None:
        self._check = _CHECKS[task]
        self._ids = _Ids()

    def expect(self, lines: int) -> None:
        """Prepare for a manifest of about `lines` lines."""
        self._ids.reserve(lines - self._ids.used)

    def feed(self, lines: list[bytes], first: int, final: bool) -> list[Item | Invalid]:
        """Entries for `lines`, the first of which is line number `first`."""
        # The hot loop: everything that runs per line is inline, and nothing raises on the
        # happy path.  `_Ids.first` is inlined here.
        out: list[Item | Invalid] = []
        append = out.append
        loads = orjson.loads
        check = self._check
        ids = self._ids
        ids.reserve(len(lines))
        slots, firsts, mask = ids.slots, ids.lines, ids.mask
        used = ids.used
        lineno = first - 1
        for raw in lines:
            lineno += 1
            try:
                obj = loads(raw)
            except orjson.JSONDecodeError as exc:
                reason = _unparsable(raw, exc)
                if reason is not None:
                    append(Invalid(lineno, reason))
                continue
            if type(obj) is not dict:
                append(Invalid(lineno, f"line is {_kind(obj)}, not a JSON object"))
                continue
            item_id = obj.get("id")
            if type(item_id) is not str or not 0 < len(item_id) <= MAX_ID_CHARS:
                append(Invalid(lineno, _id_problem(item_id)))
                continue
            digest = (hash(item_id) & _MASK64) or 1
            slot = digest & mask
            while True:
                seen = slots[slot]
                if seen == 0:
                    slots[slot] = digest
                    firsts[slot] = lineno
                    used += 1
                    append(check(obj, lineno, item_id))
                    break
                if seen == digest:
                    append(
                        Invalid(lineno, f"duplicate id; first seen on line {firsts[slot]}", item_id)
                    )
                    break
                slot = (slot + 1) & mask
        ids.used = used
        return out


# -- CSV -----------------------------------------------------------------------------------


class _NeedMore(Exception):
    """The CSV reader wants the next line of a record whose end has not arrived yet."""


class _LineFeed:
    """Hands physical lines to `csv.reader` one at a time, decoded, and notes trouble.

    The reader pulls exactly the lines of one record per row, so `pos` before a row is
    that record's first line.
    """

    def __init__(self, lines: list[bytes], final: bool) -> None:
        self.lines = lines
        self.final = final
        self.pos = 0
        self.trouble: str | None = None  # why the current record is unusable

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            if self.final:
                raise StopIteration
            raise _NeedMore
        raw = self.lines[self.pos]
        self.pos += 1
        if raw is _TOO_LONG:
            self.trouble = f"line is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB"
            return "\n"
        try:
            return raw.decode("utf-8") + "\n"
        except UnicodeDecodeError as bad:
            self.trouble = f"line is not valid UTF-8 (byte {bad.start + 1})"
            return "\n"


class _CsvParser:
    """Checks batches of CSV lines; the first non-blank row is the header.

    Cells of the known columns (`CSV_COLUMNS`, matched without regard to case or surrounding
    spaces) become the same values as JSON fields: ``input`` is parsed as JSON,
    ``feature_types`` and ``content_classifiers`` are split at ``|`` or ``,``,
    ``min_confidence`` is read as a number, the others stay text; an empty cell is absent.
    Other columns are ignored.  A row's line number is the physical line it starts on
    (the header being on line 1 in a file without blank lines at its top).
    """

    def __init__(self, task: TaskType, label: str) -> None:
        # The csv module refuses cells over 128 KiB by default; an input may hold 3 MiB.
        # The limit is process-wide, so it is only ever raised.
        if csv.field_size_limit() < MAX_LINE_BYTES:
            csv.field_size_limit(MAX_LINE_BYTES)
        self._task = task
        self._label = label
        self._check = _CHECKS[task]
        self._ids = _Ids()
        self._columns: list[tuple[str, int]] | None = None
        self._width = 0
        self._carry: list[bytes] = []  # the lines of a record that continues in the next batch
        self._carry_size = 0

    def feed(self, lines: list[bytes], first: int, final: bool) -> list[Item | Invalid]:
        if self._carry:
            first -= len(self._carry)
            lines = self._carry + lines
            self._carry = []
        feed = _LineFeed(lines, final)
        rows = csv.reader(feed)
        out: list[Item | Invalid] = []
        while feed.pos < len(lines):
            start = feed.pos
            feed.trouble = None
            try:
                row = next(rows)
            except StopIteration:
                break
            except _NeedMore:
                self._keep(lines[start:], first + start)
                break
            except csv.Error:
                out.append(Invalid(first + start, "row is not valid CSV"))
                continue
            if feed.trouble is not None:
                out.append(Invalid(first + start, feed.trouble))
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            entry = self._row(row, first + start)
            if entry is not None:
                out.append(entry)
        return out

    def expect(self, lines: int) -> None:
        """Prepare for a manifest of about `lines` lines."""
        self._ids.reserve(lines - self._ids.used)

    def _keep(self, lines: list[bytes], start: int) -> None:
        size = sum(len(line) for line in lines)
        if size > MAX_LINE_BYTES:
            raise ManifestError(
                f"cannot read manifest {self._label}: the row starting on line {start} "
                f"does not end within {MAX_LINE_BYTES // (1024 * 1024)} MiB (an unclosed quote?)"
            )
        self._carry = lines

    def _header(self, row: list[str]) -> None:
        names = [cell.strip().lower().removeprefix("\ufeff") for cell in row]
        columns: list[tuple[str, int]] = []
        for column in CSV_COLUMNS:
            where = [i for i, name in enumerate(names) if name == column]
            if len(where) > 1:
                raise ManifestError(
                    f"cannot read manifest {self._label}: column '{column}' appears "
                    f"{len(where)} times in the header"
                )
            if where:
                columns.append((column, where[0]))
        if not any(column == "id" for column, _ in columns):
            raise ManifestError(
                f"cannot read manifest {self._label}: the CSV header (line 1) has no 'id' column"
            )
        self._columns = columns
        self._width = len(row)

    def _row(self, row: list[str], line: int) -> Item | Invalid | None:
        if self._columns is None:
            self._header(row)
            return None
        if len(row) != self._width:
            return Invalid(line, f"row has {len(row)} columns, header has {self._width}")
        obj: dict[str, Any] = {column: row[i] for column, i in self._columns if row[i]}
        item_id = obj.get("id")
        if item_id is None or len(item_id) > MAX_ID_CHARS:
            return Invalid(line, _id_problem(item_id))
        seen = self._ids.first(item_id, line)
        if seen != line:
            return Invalid(line, f"duplicate id; first seen on line {seen}", item_id)
        if not _FOREIGN[self._task].isdisjoint(obj):
            wrong = _foreign(obj, self._task, line, item_id)
            if wrong is not None:
                return wrong
        problem = _convert_cells(obj)
        if problem is not None:
            return Invalid(line, problem, item_id)
        return self._check(obj, line, item_id)


def _split(cell: str) -> list[str]:
    return [part.strip() for part in cell.replace(",", "|").split("|")]


def _convert_cells(obj: dict[str, Any]) -> str | None:
    """Turn CSV text cells into JSON-like values in place; why not, or None."""
    if "input" in obj:
        try:
            obj["input"] = orjson.loads(obj["input"])
        except orjson.JSONDecodeError:
            return "field 'input' is not valid JSON"
    for field in ("feature_types", "content_classifiers"):
        if field in obj:
            parts = _split(obj[field])
            if not all(parts):
                return f"field '{field}' has an empty entry"
            obj[field] = parts
    if "min_confidence" in obj:
        try:
            obj["min_confidence"] = float(obj["min_confidence"])
        except ValueError:
            return "field 'min_confidence' must be a number from 0 to 100"
    return None
