"""The manifest reader: a file, stdin or an S3 object in; one `Item` or `Invalid` per line out.

A manifest is JSON Lines (one object per line) or CSV with a header row, optionally gzipped.
The reader streams it: bytes arrive in chunks of about 1 MiB (`_sources`), are split into
lines in bulk (`_lines`), and each line is parsed (`_jsonl`, `_csv`) and checked by the
rules of its task type (`_rules`).  Memory stays flat whatever the manifest's size: the only
state that grows is the duplicate-id table (an `IdTable`: a 64-bit digest and a line number
per id, 19 to 38 bytes an id), never the ids themselves.

Only a manifest that cannot be read at all raises `ManifestError`; a line that cannot
become an item is an `Invalid` with a reason that never quotes the line.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Final, Literal

import anyio
import anyio.lowlevel

from .._errors import ConfigError, ManifestError, setting
from .._models import Invalid, Item, TaskType
from .._text import printable
from ._csv import CSV_COLUMNS, CsvParser
from ._jsonl import DONE, Done, DoneIds, JsonlParser
from ._lines import MAX_LINE_BYTES, LineSplitter
from ._rules import MAX_ID_CHARS
from ._sources import ManifestStart, _FileReader, open_source

#: what the reader hands out per line: an item, why a line is not one, or `DONE`
Entry = Item | Invalid | Done

__all__ = [
    "CSV_COLUMNS",
    "DONE",
    "MAX_ID_CHARS",
    "MAX_LINE_BYTES",
    "Boundary",
    "Done",
    "DoneIds",
    "Entry",
    "ManifestStart",
    "read_manifest",
    "read_manifest_batches",
]

#: lines checked per step, whose entries are built and handed over together.  Few enough
#: that a step's new objects (an `Item`, and an `S3Ref` for the built-in task types) stay
#: under the garbage collector's young-generation threshold (700 by default): a consumer
#: that drops each step's entries before the next step (a dry run) then triggers hardly
#: any collection, where steps of thousands of lines spent a tenth of a dry run in them.
BATCH_LINES: Final = 256
#: lines checked between two chances for the event loop to run other tasks
CHECKPOINT_LINES: Final = 4096


@dataclass(frozen=True, slots=True)
class Boundary:
    """A place between two lines of a local JSON Lines manifest where a mark may be taken:
    the first `entries` entries handed out (this read's) are those of lines up to `line`,
    line `line` + 1 starts at `offset`, and the file's bytes [0, verify_end) have the
    SHA-256 `digest`."""

    entries: int
    line: int
    offset: int
    verify_end: int
    digest: str


async def read_manifest(
    source: str,
    task: TaskType,
    *,
    s3_client: Any | None = None,
    format: Literal["auto", "jsonl", "csv"] = "auto",
    stdin: BinaryIO | None = None,
    max_lines: int | None = None,
) -> AsyncIterator[Item | Invalid]:
    """Yield one `Item` or `Invalid` per non-blank line of the manifest, in manifest order.

    `source` is a local path (plain or gzip), ``-`` for `stdin` (default ``sys.stdin.buffer``)
    or ``s3://bucket/key`` (read with `s3_client`, an aiobotocore S3 client).  Gzip is
    recognised by its magic bytes; a name ending in ``.gz`` must hold gzip.  The format is CSV
    for names ending in ``.csv`` or ``.csv.gz`` and JSON Lines otherwise, unless `format`
    says which.

    Raises ManifestError, naming the source and the cause, when the manifest cannot be read:
    a missing or unreadable file or object, a broken gzip stream, a CSV header without an
    ``id`` column, more than `max_lines` lines (a guard against feeding the wrong file:
    a gzip of blank lines expands at millions of lines a second).  Entries already yielded
    stay valid.
    """
    batches = read_manifest_batches(
        source,
        task,
        s3_client=s3_client,
        format=format,
        stdin=stdin,
        max_lines=max_lines,
    )
    try:
        async for batch in batches:
            for entry in batch:
                assert not isinstance(entry, Done)  # only with `done`, which is not given
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
    max_lines: int | None = None,
    done: DoneIds | None = None,
    start: ManifestStart | None = None,
    boundaries: Callable[[Boundary], None] | None = None,
) -> AsyncGenerator[list[Entry], None]:
    """`read_manifest`'s entries in lists of at most `BATCH_LINES` lines' worth.

    The same entries in the same order, with the same arguments and errors; a consumer that
    handles every entry alike (a dry run) saves an async generator round trip per line.
    Lists may be empty, and the caller may keep them.  With `done` (JSON Lines), a line whose
    id the ledger has done comes as `DONE`, neither checked nor built.

    For a resumable job (a local, plain JSON Lines file): `boundaries` is told of each
    `Boundary` as the reading passes it, and with `start` (a mark's), the reading starts
    after the mark's line if the file's bytes up to the mark are unchanged, as if the lines
    before had been read (the duplicate-id check aside: see docs/ledger.md).
    """
    task = TaskType(task)
    if format not in ("auto", "jsonl", "csv"):
        raise ConfigError(f"unknown manifest format {printable(format)!r}; use auto, jsonl or csv")
    name = source.lower().removesuffix(".gz")
    is_csv = format == "csv" or (format == "auto" and name.endswith(".csv"))
    marks = not is_csv and (boundaries is not None or start is not None)
    reader = await open_source(
        source,
        s3_client,
        stdin,
        start=start if marks else None,
        track=marks and boundaries is not None,
    )
    try:
        files = reader if isinstance(reader, _FileReader) else None
        if files is not None and start is not None:
            await files.begin()  # verify the mark and seek past it, or start at the top
        resumed = files is not None and files.resumed
        lines = LineSplitter(at_start=not resumed)
        parser: JsonlParser | CsvParser = (
            CsvParser(task, "on stdin" if source == "-" else printable(source))
            if is_csv
            else JsonlParser(task, done)
        )
        lineno = start.line + 1 if resumed and start is not None else 1
        entries = 0  # entries handed out
        tell = boundaries if files is not None and files.tracking and not is_csv else None
        if tell is not None and files is not None:
            tell(Boundary(0, lineno - 1, files.consumed, files.consumed, files.digest))
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
                if max_lines is not None and lineno + len(part) - 1 > max_lines:
                    raise ManifestError(
                        f"manifest {printable(source)} has more than {max_lines} lines "
                        f"({setting('max_lines')}): is it the right file?"
                    )
                out = parser.feed(part, lineno, final and n == last)
                entries += len(out)
                yield out
                lineno += len(part)
                unchecked += len(part)
                if unchecked >= CHECKPOINT_LINES:
                    unchecked = 0
                    await anyio.lowlevel.checkpoint()
            if final:
                return
            if tell is not None and files is not None and files.tracking:
                pending = lines.pending
                if pending is not None:
                    consumed = files.consumed
                    tell(Boundary(entries, lineno - 1, consumed - pending, consumed, files.digest))
            if not estimated and reader.used and reader.size:
                # Size the duplicate-id table once rather than grow it step by step.
                estimated = True
                parser.expect(min(reader.size // 2, lineno * reader.size // reader.used))
    finally:
        await reader.aclose()
