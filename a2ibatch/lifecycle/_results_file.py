"""The answers file `results` writes: JSONL or CSV rows, appended whole, resumable.

Ids already in the file are skipped on a rerun, and a row torn by a crash is cut off and
redone.  CSV cells that a spreadsheet would run as a formula (starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return: OWASP's list for CSV injection) are written with a
leading ``'``, as OWASP advises, and so is a cell that starts with ``'`` itself, so that the
file reads back exactly (`unneutralise`).  Reviewers' answers and ids are other people's
text; a spreadsheet must show them, never run them.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from .._errors import ConfigError, LedgerWriteError, setting
from .._text import printable
from ..ledger import append_all_to, last_line_end

ResultsFormat = Literal["jsonl", "csv"]
CSV_COLUMNS: Final = (
    "id",
    "loop_name",
    "human_loop_arn",
    "submitted_at",
    "worker_ids",
    "answers",
    "input",
    "output_s3_uri",
)
#: first characters that make a spreadsheet cell a formula (OWASP, CSV injection)
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str | None) -> str | None:
    """`cell` safe for a spreadsheet: a leading ``'`` before a formula's first character."""
    if cell and (cell.startswith(FORMULA_STARTS) or cell.startswith("'")):
        return "'" + cell
    return cell


def unneutralise(cell: str) -> str:
    """The text `neutralise` was given."""
    return cell[1:] if cell.startswith("'") else cell


def format_for(out: str | os.PathLike[str], format: ResultsFormat | None) -> ResultsFormat:
    """The format asked for, else the one the file's name says (``.csv``), else JSONL."""
    if format is not None:
        if format not in ("jsonl", "csv"):
            raise ConfigError(f"{setting('format')} must be jsonl or csv")
        return format
    return "csv" if os.fspath(out).lower().endswith(".csv") else "jsonl"


class ResultsFile:
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
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(f"cannot open {printable(self.path)}: {reason}") from None
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            os.ftruncate(self._fd, last_line_end(self._fd, size))  # a torn row is redone
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
                            f"{printable(self.path)} line {number} is not a results row; "
                            f"pass a new {setting('out')} file"
                        ) from None
                return
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            reader = csv.reader(text)
            header = next(reader, None)
            if header is not None and tuple(header) != CSV_COLUMNS:
                raise ConfigError(
                    f"{printable(self.path)} is not a CSV results file of this version "
                    f"(columns {', '.join(CSV_COLUMNS)}); pass a new {setting('out')} file"
                )
            for row in reader:
                if row:
                    self.done.add(unneutralise(row[0]))
            text.detach()

    def write_row(self, row: Mapping[str, Any]) -> None:
        if self.fmt == "jsonl":
            self._write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
            return
        values = [
            neutralise(v if isinstance(v, str) or v is None else orjson.dumps(v).decode())
            for v in (row[c] for c in CSV_COLUMNS)
        ]
        self._write(_csv_line(values))

    def _write(self, data: bytes) -> None:
        try:
            append_all_to(self._fd, data)
        except OSError as exc:
            raise LedgerWriteError(
                f"cannot write {printable(self.path)}: {exc.strerror or exc}"
            ) from exc

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

