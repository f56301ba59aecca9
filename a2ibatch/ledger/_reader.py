"""The one reader of ledgers: a single pass that builds what every command needs.

`read_ledger` reads a ledger once and builds a `LedgerIndex`: the job's identity (the first
``job`` record), each id's state (the last outcome's status) and whether it has a *pending
intent* (a call that may have reached the service with no outcome since), the counts by
state, and the runs' time spans.  Asked for them, it also collects the job's human loops
with their last tracked status (`loops`, for track, results, stop, delete and reconcile),
the loop names of every intent (`intents`, for reconcile) and the rows of chosen states
(`select`, for ``status --list``).

Ids are kept in an `IdTable` (a 64-bit digest and a state per id, 19 to 38 bytes an id),
never as strings, unless loops or rows are asked for.

A torn tail (an incomplete last line, or last lines that are not records: what a crash or a
power loss leaves) is cut off when the reader may: the caller holds the writer's lock, or
can take it for the moment of the cut.  A broken line followed by valid records is damage,
not a torn tail: LedgerError names the line (never its content).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

import orjson

from .._errors import LedgerError
from .._idtable import MASK64
from .._models import Status
from .._regions import arn_region
from ._files import LedgerFile
from ._format import JobHeader, flows_of
from ._index import (
    FINAL,
    INVALID_VALUE,
    NOT_REGION,
    PENDING,
    REGION_BITS,
    REGION_SHIFT,
    STARTED,
    STATE_MASK,
    STATE_VALUES,
    UNVERIFIED_VALUE,
    LedgerIndex,
    LoopState,
    Row,
)


def _broken(path: str, lineno: int, detail: str) -> LedgerError:
    # Never quote the line: ledgers hold ids and messages that may be personal data.
    return LedgerError(
        f"ledger {path}: line {lineno} {detail}; only the last lines of a ledger may be torn. "
        "Restore the file from a backup, or remove or fix that line and rerun"
    )


class _Reader:
    """The state of one pass; `feed` takes batches of complete lines."""

    def __init__(
        self,
        index: LedgerIndex,
        loops: bool,
        intents: bool,
        select: Collection[Status] | None,
        path: str,
    ) -> None:
        self.index = index
        self.path = path  # this file's name, for messages
        self.header: JobHeader | None = None  # this file's first job record
        self.lifecycle = False  # a ledger of lifecycle records only (no job record)
        self.want_loops = loops
        self.want_intents = intents
        self.select = None if select is None else frozenset(s.value for s in select)
        self.lineno = 0
        #: (line number, file offset, byte in line) of the first of a run of broken lines
        self.broken: tuple[int, int, int] | None = None
        self.loop_of: dict[str, str] = {}  # id -> its loop's name (loops only)
        self.rows: dict[str, Row] = {}  # id -> row (select only)
        self.rows_without_id: list[Row] = []
        self.span: list[str] = []  # [first, last] record time of the current run
        self.invalid_lines = 0
        self.new_run = False  # a job record was read (a run's invalid lines start again)
        #: the current run's only flow's region (None: several, or no job record yet) and
        #: the table bits of its intents (0: each intent names its region)
        self.run_region: str | None = None
        self.run_bits = PENDING

    def carry_on(self) -> None:
        """Read on after the index's last job record (a resume point's): its run's region."""
        self._run(self.index.run_flows)

    def _run(self, arns: tuple[str, ...]) -> None:
        index = self.index
        if len(arns) == 1:
            self.run_region = region = arn_region(arns[0])
            self.run_bits = PENDING | index.region_code(region) << REGION_SHIFT
        else:
            self.run_region, self.run_bits = None, PENDING if not arns else 0

    def intent_bits(self, record: dict[str, Any]) -> int:
        """The table bits of an intent of a run of several regions: its region's."""
        region = record.get("region")
        if not isinstance(region, str):
            return PENDING
        return PENDING | self.index.region_code(region) << REGION_SHIFT

    def feed(self, lines: list[bytes], offset: int) -> None:
        # The hot loop: one parse and a table update per line on a rerun's path; every
        # other kind of record, and every error, is handled out of line.  Line numbers are
        # worked out only when an error needs one (the first equal line is the one: an
        # equal line before it would have failed the same way).
        table = self.index.table
        table.reserve(len(lines))
        keys, values, mask = table.keys, table.values, table.mask
        used = table.used
        loads = orjson.loads
        codes = STATE_VALUES
        hash_ = self.index.hash
        broken = self.broken
        other = self._other
        outcome_other = self.want_loops or self.select is not None
        intent_other = self.want_loops or self.want_intents
        run_bits = self.run_bits
        intent_bits = self.intent_bits
        skipped = 0
        line = b""
        try:
            for line in lines:
                try:
                    record = loads(line)
                except orjson.JSONDecodeError as exc:
                    skipped += 1
                    if broken is None and line.strip():  # blank lines are harmless
                        n = lines.index(line)
                        start = offset + sum(len(x) + 1 for x in lines[:n])
                        broken = self.broken = (self.lineno + 1 + n, start, exc.pos)
                    continue
                if broken is not None:
                    self._raise_broken()
                event = record["event"]
                if event == "outcome":
                    item_id = record["id"]
                    if item_id is None:
                        other(record, line, lines)
                        continue
                    code = codes[record["status"]]
                    key = (hash_(item_id) & MASK64) or 1
                    slot = key & mask
                    seen = keys[slot]
                    while seen != key and seen:
                        slot = (slot + 1) & mask
                        seen = keys[slot]
                    if not seen:
                        keys[slot] = key
                        used += 1
                        values[slot] = code | PENDING if code == UNVERIFIED_VALUE else code
                    elif values[slot] & FINAL:
                        pass  # done in a ledger read before: nothing here undoes that
                    elif code == INVALID_VALUE:
                        # A broken or duplicate line never undoes its id's real state.
                        if not values[slot] & STATE_MASK:
                            values[slot] |= code
                    elif code == UNVERIFIED_VALUE:  # a rerun checks it first
                        values[slot] = values[slot] & REGION_BITS | code | PENDING
                    else:  # the region its intent went to stays
                        values[slot] = values[slot] & REGION_BITS | code
                    if outcome_other or code == INVALID_VALUE:
                        other(record, line, lines)
                elif event == "intent":
                    key = (hash_(record["id"]) & MASK64) or 1
                    slot = key & mask
                    seen = keys[slot]
                    while seen != key and seen:
                        slot = (slot + 1) & mask
                        seen = keys[slot]
                    # pending, and the region it went to (the run's, or the record's own)
                    bits = run_bits or intent_bits(record)
                    if seen:
                        if not values[slot] & FINAL:
                            values[slot] = values[slot] & NOT_REGION | bits
                    else:
                        keys[slot] = key
                        values[slot] = bits
                        used += 1
                    if intent_other:
                        other(record, line, lines)
                else:
                    other(record, line, lines)
                    run_bits = self.run_bits  # a job record starts a run
        except LedgerError:
            raise
        except KeyError:
            where = self._lineno(lines, line)
            detail = "is not a ledger record (a field is missing)"
            raise _broken(self.path, where, detail) from None
        except (TypeError, ValueError, AttributeError):
            where = self._lineno(lines, line)
            raise _broken(self.path, where, "is not a ledger record") from None
        finally:
            table.used = used
        self.lineno += len(lines)
        self.index.records += len(lines) - skipped

    def _lineno(self, lines: list[bytes], line: bytes) -> int:
        return self.lineno + 1 + lines.index(line)

    def _other(self, record: dict[str, Any], line: bytes, lines: list[bytes]) -> None:
        """Every record but a rerun's plain intent and outcome: job, lifecycle, rows."""
        event = record["event"]
        at = record.get("at")
        if self.want_loops and isinstance(at, str) and self.span:
            self.span[1] = max(self.span[1], at)
        if event == "outcome":
            self._outcome(record)
        elif event == "intent":
            name = record.get("loop_name")
            if self.want_intents and isinstance(name, str):
                self.index.intents.add(name)
        elif event == "job":
            self._job(record, self._lineno(lines, line))
        elif event == "lifecycle":
            self.lifecycle = True
        elif event == "loop_status" and self.want_loops:
            loop = self.index.loops.get(str(record.get("loop_name")))
            if loop is not None:
                status = record.get("loop_status")
                loop.status = status if isinstance(status, str) else None
                uri = record.get("output_s3_uri")
                if isinstance(uri, str):
                    loop.output_s3_uri = uri
                created = record.get("creation_time")
                if isinstance(created, str):
                    loop.creation_time = created
        elif event == "loop_action" and self.want_loops:
            loop = self.index.loops.get(str(record.get("loop_name")))
            if loop is not None and record.get("action") == "delete":
                loop.deleted_by_us = loop.deleted_by_us or record.get("result") == "deleted"

    def _outcome(self, record: dict[str, Any]) -> None:
        status = record["status"]
        item_id = record["id"]
        if status == Status.INVALID.value:
            self.invalid_lines += 1
        if self.select is not None:
            self._row(record, item_id, status)
        if not self.want_loops or not isinstance(item_id, str):
            return
        name = record.get("loop_name")
        if status == STARTED and isinstance(name, str):
            previous = self.loop_of.get(item_id)
            if previous is not None and previous != name:
                self.index.loops.pop(previous, None)
            self.loop_of[item_id] = name
            arn = record.get("human_loop_arn")
            at = record.get("at")
            region = record.get("region")
            self.index.loops[name] = LoopState(
                item_id,
                name,
                arn if isinstance(arn, str) else None,
                started_at=at if isinstance(at, str) else "",
                region=region if isinstance(region, str) else self.run_region,
            )

    def _row(self, record: dict[str, Any], item_id: Any, status: str) -> None:
        if isinstance(item_id, str) and status != Status.INVALID.value:
            self.rows.pop(item_id, None)  # the last outcome of an id is its state
        if status not in self.select:  # type: ignore[operator]
            return
        error = record.get("error") if isinstance(record.get("error"), dict) else None
        line = record.get("line")
        name = record.get("loop_name")
        row = Row(
            item_id if isinstance(item_id, str) else None,
            line if isinstance(line, int) else None,
            status,
            str(error.get("code")) if error else None,
            str(error.get("message")) if error else None,
            name if isinstance(name, str) else None,
        )
        if status == Status.INVALID.value:
            self.rows_without_id.append(row)  # invalid rows are lines, kept in order
        elif isinstance(item_id, str):
            self.rows[item_id] = row

    def _job(self, record: dict[str, Any], lineno: int) -> None:
        index = self.index
        try:
            arns = flows_of(record)
        except (KeyError, ValueError):
            raise _broken(self.path, lineno, "is not a valid job record") from None
        index.note_flows((arns,) if isinstance(arns, str) else arns)
        self._run(index.run_flows)
        index.runs += 1
        self.invalid_lines = 0
        self.new_run = True
        self.rows_without_id.clear()
        at = record.get("at")
        if isinstance(at, str) and self.want_loops:
            self.finish_span()
            self.span = [at, at]
            index.run_spans.append((at, at))
        if self.header is None:
            try:
                self.header = JobHeader.from_record(record)
            except (KeyError, TypeError, ValueError):
                raise _broken(self.path, lineno, "is not a valid job record") from None
            if index.header is None:
                index.header = self.header
                index.started_at = at if isinstance(at, str) else ""
            elif not index.header.same_job(self.header):
                raise LedgerError(
                    f"ledger {self.path} belongs to another job than {index.path} (task, "
                    "flow definition or name prefix differ): one location holds one job's "
                    "ledgers"
                )
        elif at and isinstance(at, str) and at < index.started_at:
            index.started_at = at

    def finish_span(self) -> None:
        if self.span and self.index.run_spans:
            self.index.run_spans[-1] = (self.span[0], self.span[1])

    def _raise_broken(self) -> None:
        assert self.broken is not None
        lineno, _, pos = self.broken
        raise _broken(self.path, lineno, f"is not a valid record (at byte {pos + 1})")


def read_ledger(
    file: LedgerFile | None,
    *,
    path: str | None = None,
    loops: bool = False,
    intents: bool = False,
    select: Collection[Status] | None = None,
    repair: bool = True,
    into: LedgerIndex | None = None,
    start: int = 0,
    lines_before: int = 0,
) -> LedgerIndex:
    """Read the whole ledger in `file` (None: an empty ledger at `path`) into an index.

    With `repair`, a torn tail is cut off when this process holds the file's lock or can
    take it (`repaired_bytes` says how much); without, it is only skipped.  With
    `loops`, the job's loops and the runs' time spans are collected; with `intents`, every
    intent's loop name; with `select`, a `Row` per item whose last state is selected (and
    per invalid line of the last run).  With `into`, the ledger is read into an index of
    other ledgers of the same job (a location's): an item done in any of them stays done.
    With `start`, the bytes from that offset of the ledger `into` holds up to there (a
    resume point's), the first `lines_before` lines, are read into it: the same result as
    reading the whole ledger.
    """
    label = path or (file.path if file is not None else "")
    index = into if into is not None else LedgerIndex(label)
    if file is None:
        return index
    if into is not None and not start:
        index.settle()
    reader = _Reader(index, loops, intents, select, label)
    if start:
        reader.header, reader.lineno = index.header, lines_before
        reader.carry_on()
    records_before = index.records
    cut: int | None = None
    try:
        size = file.size()
        end = start
        for lines, offset in file.lines(start):
            if offset < 0:
                cut = -1 - offset  # an incomplete (or over-long) last line
            else:
                reader.feed(lines, offset)  # an over-long line is a broken one (TOO_LONG)
                end = offset + sum(map(len, lines)) + len(lines)
    except OSError as exc:
        raise LedgerError(f"cannot read ledger {label}: {exc.strerror or exc}") from None
    if reader.broken is not None:
        cut = reader.broken[1]
    reader.finish_span()
    if index.records > records_before and reader.header is None and not reader.lifecycle:
        raise LedgerError(f"{label} is not an a2ibatch ledger: it has records but no job record")
    if cut is not None and repair and file.size() == size:
        try:
            index.repaired_bytes += file.cut(cut)
        except LedgerError:
            if file.locked:
                raise
            # Another process writes the ledger: its tail is its own business; read only.
    if start and reader.new_run:
        index.invalid_lines = reader.invalid_lines
    else:
        index.invalid_lines += reader.invalid_lines
    index.lines, index.read_to = reader.lineno, end if cut is None else min(end, cut)
    if select is not None:
        index.rows.extend([*reader.rows_without_id, *reader.rows.values()])
        index.rows.sort(key=lambda row: (row.line is None, row.line or 0))
    return index


def load_ledger(path: str | os.PathLike[str], **options: Any) -> LedgerIndex:
    """`read_ledger` of the ledger file at `path` (an empty index when there is none)."""
    p = os.fspath(path)
    file = LedgerFile.open(p, write=False)
    try:
        return read_ledger(file, path=p, **options)
    finally:
        if file is not None:
            file.close()
