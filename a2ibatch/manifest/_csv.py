"""CSV manifests: a header row, then one item per record (a record may span lines).

Cells of the known columns become the same values as JSON fields, and go through the same
rules as a JSON line.
"""

from __future__ import annotations

import csv
from typing import Any, Final

import orjson

from .._errors import ManifestError
from .._idtable import IdTable, digest
from .._models import Invalid, Item, TaskType
from ._jsonl import Done
from ._lines import MAX_LINE_BYTES, TOO_LONG
from ._rules import CHECKS, FOREIGN, MAX_ID_CHARS, foreign_field, id_problem

#: the columns a CSV manifest may use (others are ignored)
CSV_COLUMNS: Final = (
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
    "region",
)


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
        if raw is TOO_LONG:
            self.trouble = f"line is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB"
            return "\n"
        try:
            return raw.decode("utf-8") + "\n"
        except UnicodeDecodeError as bad:
            self.trouble = f"line is not valid UTF-8 (byte {bad.start + 1})"
            return "\n"


class CsvParser:
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
        self._check = CHECKS[task]
        self._ids = IdTable()
        self._columns: list[tuple[str, int]] | None = None
        self._width = 0
        self._carry: list[bytes] = []  # the lines of a record that continues in the next batch
        self._carry_size = 0

    def feed(self, lines: list[bytes], first: int, final: bool) -> list[Item | Invalid | Done]:
        if self._carry:
            first -= len(self._carry)
            lines = self._carry + lines
            self._carry = []
        feed = _LineFeed(lines, final)
        rows = csv.reader(feed)
        out: list[Item | Invalid | Done] = []
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
            return Invalid(line, id_problem(item_id))
        seen = self._ids.setdefault(digest(item_id), line)
        if seen != line:
            return Invalid(line, f"duplicate id; first seen on line {seen}", item_id)
        if not FOREIGN[self._task].isdisjoint(obj):
            wrong = foreign_field(obj, self._task, line, item_id)
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
