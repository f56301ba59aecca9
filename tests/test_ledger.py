"""The ledger: record formats, the one reader, torn-tail repair, the file layer, the writer's
durability and failures, appends beside a run, and crashes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import os
import random
import re
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a2ibatch import (
    Activation,
    ErrorInfo,
    LedgerError,
    LedgerWriteError,
    Outcome,
    Status,
    TaskType,
    status,
)
from a2ibatch.ledger import (
    MAX_LINE_BYTES,
    JobHeader,
    LedgerFile,
    LedgerWriter,
    LocalStore,
    Row,
    _files,
    dumps,
    load_ledger,
    open_writer,
    outcome_record,
    read_ledger,
    utc_timestamp,
)

pytestmark = pytest.mark.anyio  # the async tests; sync ones are unaffected

FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/review"
READ_SIZE = _files.READ_SIZE
TOO_LONG = _files.TOO_LONG
MiB = 1 << 20


def header(**changes: Any) -> JobHeader:
    values: dict[str, Any] = {
        "task": TaskType.CUSTOM,
        "flow_definition_arn": FLOW,
        "name_prefix": "a2ib",
        "manifest": "manifest.jsonl",
        "versions": {"a2ibatch": "0.1.0"},
    }
    values.update(changes)
    return JobHeader(**values)


def outcome(item_id: str | None, status: Status, line: int = 1, **kw: Any) -> Outcome:
    return Outcome(item_id, line, status, loop_name=f"a2ib-{item_id}", attempts=1, **kw)


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def job_line() -> bytes:
    return dumps(header().to_record())


def outcome_line(item_id: str | None, status: Status, line: int | None = 1, **kw: Any) -> bytes:
    record = outcome_record(outcome(item_id, status, line or 0, **kw))
    record["line"] = line
    return dumps(record)


def intent_line(item_id: str, line: int = 1) -> bytes:
    return dumps({"event": "intent", "id": item_id, "line": line, "loop_name": f"a2ib-{item_id}"})


# --------------------------------------------------------------------------------------
# formats and the index


def test_timestamp_format() -> None:
    assert utc_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert utc_timestamp(1_795_600_000.1239) == "2026-11-25T09:46:40.123Z"
    assert utc_timestamp(1_795_600_000.9999) == "2026-11-25T09:46:40.999Z"  # never rounds up
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_timestamp())


def test_outcome_record_format() -> None:
    o = Outcome(
        "x",
        7,
        Status.NOT_ACTIVATED,
        loop_name="a2ib-x",
        human_loop_arn=None,
        activation=Activation(("ConditionNotMet",), {"Conditions": [{"a": 1}]}),
        attempts=2,
        error=ErrorInfo("Throttling", "slow down"),
        recovered=True,
        at="2026-11-25T06:00:00.123Z",
        response={"big": "answer"},
    )
    assert outcome_record(o) == {
        "event": "outcome",
        "id": "x",
        "line": 7,
        "status": "not_activated",
        "loop_name": "a2ib-x",
        "human_loop_arn": None,
        "activation": {"reasons": ["ConditionNotMet"], "conditions": {"Conditions": [{"a": 1}]}},
        "attempts": 2,
        "error": {"code": "Throttling", "message": "slow down"},
        "recovered": True,
        "at": "2026-11-25T06:00:00.123Z",
    }
    assert outcome_record(outcome("y", Status.STARTED))["at"]  # filled in when empty
    taken = outcome("z", Status.NAME_TAKEN, loop={"status": "InProgress"})
    assert outcome_record(taken)["loop"] == {"status": "InProgress"}


async def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header()) as writer:
        for n, item in enumerate(["s", "n", "f", "pending", "taken"], start=1):
            await writer.intent(item, n, f"a2ib-{item}")
        await writer.outcome(outcome("s", Status.STARTED, human_loop_arn="arn:loop/s"))
        await writer.outcome(outcome("n", Status.NOT_ACTIVATED, line=2))
        await writer.outcome(outcome("f", Status.FAILED, line=3, error=ErrorInfo("E", "m")))
        await writer.outcome(outcome("taken", Status.NAME_TAKEN, line=5))
        await writer.outcome(outcome("bad", Status.INVALID, line=6))
        await writer.outcome(outcome(None, Status.INVALID, line=7))  # id unreadable
        await writer.record({"event": "summary", "started": 1, "failed": 1})
    assert writer.written == 1 + 5 + 6 + 1

    index = load_ledger(path)
    assert index.header == header(run=index.header.run if index.header else "")
    assert index.state("s") is Status.STARTED
    assert index.state("n") is Status.NOT_ACTIVATED
    assert index.state("f") is Status.FAILED
    assert index.state("taken") is Status.NAME_TAKEN
    assert index.state("bad") is Status.INVALID
    assert index.state("pending") is None
    assert index.state("never-seen") is None
    assert index.has_pending_intent("pending")
    assert index.lookup("pending") == (None, True)
    assert index.lookup("s") == (Status.STARTED, False)
    assert index.lookup("never-seen") == (None, False)
    assert not index.has_pending_intent("s")
    assert not index.has_pending_intent("bad")
    assert not index.has_pending_intent("taken")
    assert index.pending == 1
    assert dict(index.counts) == {
        Status.STARTED: 1,
        Status.NOT_ACTIVATED: 1,
        Status.FAILED: 1,
        Status.INVALID: 1,
        Status.UNVERIFIED: 0,
        Status.NAME_TAKEN: 1,
    }
    # the index knows every id with a state or a pending intent (the planner resumes on it)
    assert "s" in index and "pending" in index and "never-seen" not in index
    assert len(index) == 6 and sum(index.counts.values()) == 5
    assert (index.records, index.runs, index.repaired_bytes) == (13, 1, 0)
    assert index.invalid_lines == 2

    # a second run: an outcome for the pending item, a new intent for a failed one
    first_run = index.header
    async with open_writer(path, header()) as writer:
        await writer.outcome(outcome("pending", Status.STARTED, recovered=True))
        await writer.intent("f", 3, "a2ib-f")
    index = load_ledger(path)
    assert index.header == first_run  # the first job record is the job's identity
    assert index.runs == 2
    assert index.state("pending") is Status.STARTED
    assert not index.has_pending_intent("pending")
    assert index.state("f") is Status.FAILED
    assert index.has_pending_intent("f")  # outcome, then a new intent: pending again
    assert index.lookup("f") == (Status.FAILED, True)
    assert index.invalid_lines == 0  # of the last run only


async def test_last_outcome_is_the_state(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header()) as writer:
        await writer.intent("a", 1, "a2ib-a")
        await writer.outcome(outcome("a", Status.FAILED))
        await writer.intent("a", 1, "a2ib-a")
        await writer.outcome(outcome("a", Status.STARTED))
        await writer.outcome(outcome("b", Status.STARTED))
        await writer.outcome(outcome("b", Status.FAILED))
    index = load_ledger(path)
    assert index.state("a") is Status.STARTED
    assert index.state("b") is Status.FAILED
    assert index.counts[Status.STARTED] == 1 and index.counts[Status.FAILED] == 1


async def test_invalid_never_undoes_a_state(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header()) as writer:
        await writer.intent("a", 1, "a2ib-a")
        await writer.outcome(outcome("a", Status.STARTED))
        await writer.outcome(outcome("a", Status.INVALID, line=2))  # a duplicate line
        await writer.intent("p", 3, "a2ib-p")
        await writer.outcome(outcome("p", Status.INVALID, line=4))  # never undoes the intent
        await writer.outcome(outcome("i", Status.INVALID, line=5))
        await writer.outcome(outcome("i", Status.FAILED, line=6))  # a real state replaces it
    index = load_ledger(path)
    assert index.lookup("a") == (Status.STARTED, False)
    assert index.lookup("p") == (Status.INVALID, True)
    assert index.lookup("i") == (Status.FAILED, False)
    assert index.counts[Status.INVALID] == 1 and index.invalid_lines == 3


async def test_unverified_leaves_its_id_pending(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header()) as writer:
        await writer.intent("u", 1, "a2ib-u")
        await writer.outcome(outcome("u", Status.UNVERIFIED, error=ErrorInfo("Unverified", "m")))
        await writer.outcome(outcome("done", Status.STARTED, line=2))
    index = load_ledger(path)
    assert index.lookup("u") == (Status.UNVERIFIED, True)
    assert index.has_pending_intent("u") and index.pending == 1
    assert index.counts[Status.UNVERIFIED] == 1

    # a rerun that cannot check it either: still unverified, still pending
    async with open_writer(path, header()) as writer:
        await writer.outcome(outcome("done", Status.UNVERIFIED, line=2))
        await writer.outcome(outcome("u", Status.INVALID, line=3))  # a duplicate line
    index = load_ledger(path)
    assert index.lookup("u") == (Status.UNVERIFIED, True)
    assert index.lookup("done") == (Status.UNVERIFIED, True)  # after a started outcome
    assert index.pending == 2

    # a rerun that finds (or starts) the loop settles it
    async with open_writer(path, header()) as writer:
        await writer.intent("u", 1, "a2ib-u")
        await writer.outcome(outcome("u", Status.STARTED, recovered=True))
    index = load_ledger(path)
    assert index.lookup("u") == (Status.STARTED, False)
    assert index.pending == 1


def test_unverified_first_record_of_an_id_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(job_line() + outcome_line("u", Status.UNVERIFIED))
    index = load_ledger(path)
    assert index.lookup("u") == (Status.UNVERIFIED, True)


async def test_missing_ledger_is_empty(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    for index in (load_ledger(missing), read_ledger(None, path=str(missing))):
        assert index.header is None and len(index) == 0 and index.records == 0
        assert all(n == 0 for n in index.counts.values())
        index.check_compatible(TaskType.TEXTRACT, "anything", "any")  # nothing to compare
    assert LocalStore(missing).read() is None and LocalStore(missing).append() is None
    with pytest.raises(LedgerError, match="does not exist"):
        async with open_writer(missing, None):
            pass
    assert not missing.exists()  # nothing was created


async def test_records_keep_unknown_events_and_serialize_datetimes_and_tuples(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.jsonl"
    when = dt.datetime(2026, 11, 25, 6, 0, 0, 123000, tzinfo=dt.UTC)
    async with open_writer(path, header()) as writer:
        await writer.record({"loop_status": "Completed", "event": "loop_status", "id": "a"})
        await writer.record({"event": "future_thing", "when": when, "pair": (1, 2), "at": "x"})
        with pytest.raises(ValueError, match="event"):
            await writer.record({"no": "event"})
    records = lines_of(path)
    assert all(next(iter(r)) == "event" for r in records)  # the event key always comes first
    assert re.fullmatch(r".*\.\d{3}Z", records[1]["at"])
    assert records[2] == {
        "event": "future_thing",
        "when": "2026-11-25T06:00:00.123000Z",
        "pair": [1, 2],
        "at": "x",
    }
    assert [r["event"] for r in records] == ["job", "loop_status", "future_thing"]
    for options in ({}, {"loops": True, "intents": True, "select": set(Status)}):
        index = load_ledger(path, **options)  # unknown events are ignored
        assert index.records == 3 and len(index) == 0 and index.runs == 1
        assert not index.loops and not index.intents and not index.rows


def test_check_compatible(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(orjson.dumps(header().to_record()) + b"\n")
    index = load_ledger(path)
    index.check_compatible(TaskType.CUSTOM, FLOW, "a2ib")
    index.check_compatible("custom", FLOW, "a2ib")
    cases = [
        ((TaskType.TEXTRACT, FLOW, "a2ib"), "task", "'custom'", "'textract'"),
        ((TaskType.CUSTOM, FLOW + "2", "a2ib"), "flow definition", repr(FLOW), repr(FLOW + "2")),
        ((TaskType.CUSTOM, FLOW, "other"), "name prefix", "'a2ib'", "'other'"),
    ]
    for args, field_name, ours, theirs in cases:
        with pytest.raises(LedgerError) as info:
            index.check_compatible(*args)
        message = str(info.value)
        assert field_name in message and ours in message and theirs in message
        assert str(path) in message


def test_not_a_ledger(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    data = b'{"id": "a", "text": "secret"}\n{"id": "b", "text": "secret"}\n'
    manifest.write_bytes(data)
    with pytest.raises(LedgerError, match="line 1 is not a ledger record") as info:
        load_ledger(manifest)
    assert "secret" not in str(info.value)
    assert manifest.read_bytes() == data
    headless = tmp_path / "headless.jsonl"
    headless.write_bytes(b'{"event": "intent", "id": "a", "line": 1, "loop_name": "n"}\n')
    with pytest.raises(LedgerError, match="no job record"):
        load_ledger(headless)
    bad_job = tmp_path / "bad-job.jsonl"
    bad_job.write_bytes(b'{"event": "job", "task": "custom", "run": "secret"}\n')
    with pytest.raises(LedgerError, match="line 1 is not a valid job record") as info:
        load_ledger(bad_job)
    assert "secret" not in str(info.value)


# --------------------------------------------------------------------------------------
# what status and the lifecycle commands read


async def test_invalid_lines_count_the_last_run_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header()) as writer:
        await writer.outcome(outcome("a", Status.STARTED, line=1))
        await writer.outcome(outcome("x", Status.INVALID, line=2))
        await writer.outcome(outcome(None, Status.INVALID, line=3))
    assert load_ledger(path).invalid_lines == 2
    async with open_writer(path, header()) as writer:
        await writer.outcome(outcome("a", Status.INVALID, line=2))  # a duplicate of a started id
        await writer.outcome(outcome(None, Status.INVALID, line=3))
        await writer.outcome(outcome(None, Status.INVALID, line=4))
    index = load_ledger(path)
    assert index.invalid_lines == 3  # lines, with or without an id, whatever their id's state
    assert index.state("a") is Status.STARTED and index.counts[Status.INVALID] == 1
    report = await status(path)
    assert report.invalid_lines == 3 and report.runs == 2
    assert report.items["started"] == 1 and report.items["invalid"] == 1
    async with open_writer(path, header()) as writer:
        await writer.outcome(outcome("b", Status.STARTED, line=5))
    assert load_ledger(path).invalid_lines == 0
    assert (await status(path)).invalid_lines == 0


async def test_select_rows(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header()) as writer:
        await writer.outcome(outcome("a", Status.FAILED, line=1, error=ErrorInfo("E1", "m1")))
        await writer.outcome(outcome("b", Status.STARTED, line=2))
        await writer.outcome(outcome("c", Status.FAILED, line=3, error=ErrorInfo("E3", "m3")))
        await writer.outcome(outcome("q", Status.INVALID, line=9))  # an earlier run's line
    async with open_writer(path, header()) as writer:
        await writer.outcome(outcome("a", Status.STARTED, line=1))  # no longer failed
        await writer.outcome(outcome("b", Status.FAILED, line=2, error=ErrorInfo("E2", "m2")))
        await writer.outcome(
            outcome(None, Status.INVALID, line=7, error=ErrorInfo("Invalid", "not JSON"))
        )
        await writer.outcome(
            outcome("c", Status.INVALID, line=4, error=ErrorInfo("Invalid", "duplicate id"))
        )
        await writer.outcome(outcome(None, Status.INVALID, line=5))
    with path.open("ab") as f:  # lines whose number is unknown, in the same (last) run
        f.write(outcome_line(None, Status.INVALID, None, error=ErrorInfo("Invalid", "first")))
        f.write(outcome_line(None, Status.INVALID, None, error=ErrorInfo("Invalid", "second")))

    index = load_ledger(path, select={Status.FAILED, Status.INVALID})
    assert index.rows == [
        Row("b", 2, "failed", "E2", "m2", "a2ib-b"),
        Row("c", 3, "failed", "E3", "m3", "a2ib-c"),  # an invalid line never undoes it
        Row("c", 4, "invalid", "Invalid", "duplicate id", "a2ib-c"),
        Row(None, 5, "invalid", None, None, "a2ib-None"),
        Row(None, 7, "invalid", "Invalid", "not JSON", "a2ib-None"),
        Row(None, None, "invalid", "Invalid", "first", "a2ib-None"),
        Row(None, None, "invalid", "Invalid", "second", "a2ib-None"),
    ]
    # a row says where and why, never what the item holds
    assert [f.name for f in dataclasses.fields(Row)] == [
        "id", "line", "status", "code", "reason", "loop_name"
    ]
    assert load_ledger(path, select={Status.STARTED}).rows == [
        Row("a", 1, "started", None, None, "a2ib-a")
    ]
    assert load_ledger(path, select=set()).rows == []
    assert load_ledger(path).rows == []  # rows only when asked for
    report = await status(path, list_states=["failed"])
    assert [(row.id, row.status) for row in report.rows] == [("b", "failed"), ("c", "failed")]


async def test_loops_and_intents(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header()) as writer:
        await writer.intent("a", 1, "a2ib-a")
        await writer.outcome(outcome("a", Status.STARTED, human_loop_arn="arn:a"))
        await writer.intent("b", 2, "a2ib-b")
    async with open_writer(path, None) as writer:  # append mode, as lifecycle commands
        await writer.record(
            {"event": "loop_status", "id": "a", "loop_name": "a2ib-a", "loop_status": "Completed",
             "output_s3_uri": "s3://b/o.json"}
        )
    index = load_ledger(path, loops=True, intents=True)
    assert index.intents == {"a2ib-a", "a2ib-b"}
    assert list(index.loops) == ["a2ib-a"]
    loop = index.loops["a2ib-a"]
    assert (loop.id, loop.human_loop_arn, loop.status, loop.output_s3_uri) == (
        "a", "arn:a", "Completed", "s3://b/o.json"
    )
    assert loop.final and index.loop_counts() == {"Completed": 1}
    assert len(index.run_spans) == 1
    assert load_ledger(path).loops == {}  # only when asked for


# --------------------------------------------------------------------------------------
# torn tails and broken lines


def _ledger_bytes(tmp_path: Path, ops: list[tuple[str, str, Status]], name: str) -> bytes:
    """The bytes the writer produces for `ops` (intent / outcome / loop_status per id).

    An unverified outcome comes after an intent for its id, as the runner writes it (it
    follows a call that may have reached the service).
    """
    path = tmp_path / name

    async def write() -> None:
        async with open_writer(path, header(), checkpoint_interval=0) as writer:
            for n, (kind, item_id, status) in enumerate(ops, start=1):
                if kind == "intent":
                    await writer.intent(item_id, n, f"a2ib-{item_id}")
                elif kind == "outcome":
                    if status is Status.UNVERIFIED:
                        await writer.intent(item_id, n, f"a2ib-{item_id}")
                    await writer.outcome(outcome(item_id, status, line=n))
                else:
                    await writer.record({"event": "loop_status", "id": item_id, "n": n})

    anyio.run(write)
    data = path.read_bytes()
    path.unlink()
    return data


def _expected(data: bytes) -> tuple[dict[str, Status], set[str], int]:
    """States, pending ids and record count of the complete lines of `data`."""
    states: dict[str, Status] = {}
    pending: set[str] = set()
    records = 0
    for line in data.split(b"\n")[:-1]:
        record = orjson.loads(line)
        records += 1
        if record["event"] == "intent":
            pending.add(record["id"])
        elif record["event"] == "outcome":
            status = Status(record["status"])
            if status is Status.INVALID:  # never undoes an id's state or its intent
                states.setdefault(record["id"], status)
            else:
                states[record["id"]] = status
                if status is Status.UNVERIFIED:  # a rerun checks it first
                    pending.add(record["id"])
                else:
                    pending.discard(record["id"])
    return states, pending, records


def _check_cut(path: Path, data: bytes, cut: int, ids: set[str]) -> None:
    torn = data[:cut]
    path.write_bytes(torn)
    complete = data[: data.rfind(b"\n", 0, cut) + 1]
    states, pending, records = _expected(complete)
    peek = load_ledger(path, repair=False)
    assert path.read_bytes() == torn  # reading without repair never modifies the file
    assert peek.repaired_bytes == 0
    index = load_ledger(path)
    assert path.read_bytes() == complete
    assert index.repaired_bytes == cut - len(complete)
    for seen in (peek, index):
        assert seen.records == records
        for item_id in ids:
            assert seen.lookup(item_id) == (states.get(item_id), item_id in pending)
            assert seen.state(item_id) is states.get(item_id)
            assert seen.has_pending_intent(item_id) == (item_id in pending)
        assert sum(seen.counts.values()) == len(states)
        assert len(seen) == len(states.keys() | pending) and seen.pending == len(pending)
        assert (seen.header is None) == (records == 0)
    again = load_ledger(path)  # idempotent
    assert again.repaired_bytes == 0 and again.records == index.records
    assert path.read_bytes() == complete


def test_truncation_at_every_offset(tmp_path: Path) -> None:
    ops = [
        ("intent", "a", Status.STARTED),
        ("intent", "b", Status.STARTED),
        ("outcome", "a", Status.STARTED),
        ("outcome", "b", Status.FAILED),
        ("loop_status", "a", Status.STARTED),
        ("intent", "b", Status.STARTED),
        ("outcome", "b", Status.NOT_ACTIVATED),
        ("outcome", "c", Status.UNVERIFIED),
        ("outcome", "a", Status.INVALID),
        ("intent", "é-ü-ø", Status.STARTED),
    ]
    data = _ledger_bytes(tmp_path, ops, "source.jsonl")
    path = tmp_path / "cut.jsonl"
    for cut in range(len(data) + 1):
        _check_cut(path, data, cut, {"a", "b", "c", "é-ü-ø"})


_ids = st.sampled_from(["a", "b", "c", "d/e", "ünï", "x" * 40])
_ops = st.lists(
    st.tuples(st.sampled_from(["intent", "outcome", "loop_status"]), _ids, st.sampled_from(Status)),
    max_size=25,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    read_size=st.sampled_from([1, 7, 64, 1 << 18]),
    ops=_ops,
    where=st.floats(min_value=0, max_value=1),
    garbage=st.sampled_from([b"", b"\0" * 9]),
)
def test_truncation_anywhere(
    tmp_path: Path,
    read_size: int,
    ops: list[tuple[str, str, Status]],
    where: float,
    garbage: bytes,
) -> None:
    data = _ledger_bytes(tmp_path, ops, "source.jsonl")
    cut = round(where * len(data))
    path = tmp_path / "cut.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_files, "READ_SIZE", read_size)  # lines across read boundaries
        _check_cut(path, data, cut, {"a", "b", "c", "d/e", "ünï", "x" * 40})
        if garbage:  # what a power loss can leave: zeros, a newline, even several lines
            complete = path.read_bytes()
            damaged = complete + garbage + b"\n" + garbage + b"\n" + garbage
            path.write_bytes(damaged)
            assert load_ledger(path, repair=False).repaired_bytes == 0
            assert path.read_bytes() == damaged
            index = load_ledger(path)
            assert index.repaired_bytes == 3 * len(garbage) + 2
            assert path.read_bytes() == complete


@pytest.mark.parametrize("read_size", [5, 1 << 18])
def test_broken_middle_line_is_an_error(
    tmp_path: Path, read_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_files, "READ_SIZE", read_size)
    path = tmp_path / "ledger.jsonl"
    good = [orjson.dumps(header().to_record())]
    good += [
        orjson.dumps({"event": "intent", "id": str(n), "line": n, "loop_name": "x"})
        for n in range(3)
    ]
    secret = b'{"event":"intent","id":"Jane Doe, 12 Main St'
    data = b"\n".join([*good[:2], secret, *good[2:]]) + b"\n"
    path.write_bytes(data)
    for options in (
        {},
        {"repair": False},
        {"loops": True, "intents": True, "select": set(Status)},
    ):
        with pytest.raises(LedgerError, match="line 3 is not a valid record") as info:
            load_ledger(path, **options)
        assert "Jane" not in str(info.value) and "Main" not in str(info.value)
    assert path.read_bytes() == data  # nothing was cut

    # the same line at the end is a torn tail
    torn = b"\n".join([*good, secret]) + b"\n\n"
    path.write_bytes(torn)
    peek = load_ledger(path, repair=False, intents=True)
    assert [peek.has_pending_intent(str(n)) for n in range(3)] == [True, True, True]
    assert peek.records == 4 and path.read_bytes() == torn
    assert load_ledger(path).repaired_bytes == len(secret) + 2


def test_blank_lines_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(orjson.dumps(header().to_record()) + b"\n\n  \n" + b'{"event":"x"}\n\n')
    index = load_ledger(path)
    assert (index.records, index.repaired_bytes) == (2, 0)


def test_reading_without_repair_never_modifies(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    data = orjson.dumps(header().to_record()) + b'\n{"event":"intent","id":"a","li'
    path.write_bytes(data)
    for options in ({}, {"loops": True, "intents": True, "select": set(Status)}):
        index = load_ledger(path, repair=False, **options)
        assert (index.records, index.runs, index.repaired_bytes) == (1, 1, 0)
        assert not index.has_pending_intent("a")
        assert path.read_bytes() == data
    file = LocalStore(path).read()
    assert file is not None
    try:
        assert read_ledger(file, repair=False).records == 1
    finally:
        file.close()
    assert path.read_bytes() == data


def test_zero_tail_is_cut_in_linear_time_and_flat_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power loss can leave megabytes of zero bytes and no newline: the reader streams
    through them, holding at most one line's cap, and cuts them off."""
    path = tmp_path / "ledger.jsonl"
    prefix = job_line() + intent_line("a") + outcome_line("b", Status.STARTED)
    tail = 32 * MiB
    with path.open("wb") as f:
        f.write(prefix)
        f.truncate(len(prefix) + tail)  # zeros, without holding them in this process
    size = len(prefix) + tail
    reads: list[int] = []
    real_pread = os.pread

    def counting(fd: int, n: int, offset: int) -> bytes:
        block = real_pread(fd, n, offset)
        reads.append(len(block))
        return block

    monkeypatch.setattr(os, "pread", counting)
    for repair in (False, True):
        reads.clear()
        tracemalloc.start()
        try:
            index = load_ledger(path, repair=repair)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert index.records == 3 and index.lookup("a") == (None, True)
        assert index.lookup("b") == (Status.STARTED, False)
        # every byte read once, in large blocks: linear
        assert sum(reads) == size and len(reads) <= size // READ_SIZE + 2
        # memory is bounded by the line cap, not by the tail
        assert peak < MAX_LINE_BYTES + 4 * READ_SIZE < tail // 3
        if not repair:
            assert index.repaired_bytes == 0 and path.stat().st_size == size
    assert index.repaired_bytes == tail
    assert path.read_bytes() == prefix
    assert load_ledger(path).repaired_bytes == 0


@pytest.mark.parametrize("zeros", [9, MAX_LINE_BYTES + READ_SIZE + 1])
def test_zeros_followed_by_records_are_an_error(tmp_path: Path, zeros: int) -> None:
    path = tmp_path / "ledger.jsonl"
    prefix = job_line() + intent_line("Jane Doe")
    after = intent_line("Main St") + outcome_line("Jane Doe", Status.STARTED)
    with path.open("wb") as f:
        f.write(prefix)
        f.truncate(len(prefix) + zeros)
        f.seek(0, os.SEEK_END)
        f.write(b"\n" + after)
    size = path.stat().st_size
    for repair in (False, True):
        with pytest.raises(LedgerError, match="line 3 is not a valid record") as info:
            load_ledger(path, repair=repair)
        message = str(info.value)
        assert "\0" not in message and "Jane" not in message and "Main" not in message
        assert path.stat().st_size == size  # damage, not a torn tail: nothing is cut


def test_broken_tail_after_an_overlong_line(tmp_path: Path) -> None:
    """Zeros with a newline, then more zeros: still only a torn tail, cut off whole."""
    path = tmp_path / "ledger.jsonl"
    prefix = job_line()
    with path.open("wb") as f:
        f.write(prefix)
        f.truncate(len(prefix) + MAX_LINE_BYTES + 1)
        f.seek(0, os.SEEK_END)
        f.write(b"\n\0\0\0\n\n")
    index = load_ledger(path)
    assert index.repaired_bytes == MAX_LINE_BYTES + 1 + 6 and path.read_bytes() == prefix


# --------------------------------------------------------------------------------------
# the file layer


def _flatten(batches: list[tuple[list[bytes], int]]) -> tuple[list[bytes], list[int], Any]:
    """Complete lines, each batch's offset and size, and the tail, of `lines()`."""
    lines: list[bytes] = []
    starts: list[int] = []
    tail = None
    for i, (batch, offset) in enumerate(batches):
        if offset < 0:
            assert i == len(batches) - 1 and len(batch) == 1  # the tail comes last, alone
            tail = (-1 - offset, batch[0])
            continue
        starts.append(len(lines))
        assert offset >= 0 and batch
        lines.extend(batch)
    return lines, starts, tail


def _reference(data: bytes, cap: int) -> tuple[list[tuple[int, bytes]], Any]:
    parts = data.split(b"\n")
    complete, rest = parts[:-1], parts[-1]
    lines = []
    offset = 0
    for part in complete:
        lines.append((offset, TOO_LONG if len(part) > cap else part))
        offset += len(part) + 1
    tail = (offset, TOO_LONG if len(rest) > cap else rest) if rest else None
    return lines, tail


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pieces=st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from([b"x", b"\0", b"{"]), st.booleans()),
        max_size=12,
    ),
    cap=st.integers(1, 16),
    data=st.data(),
)
def test_lines_match_a_simple_split(
    tmp_path: Path, pieces: list[tuple[int, bytes, bool]], cap: int, data: st.DataObject
) -> None:
    """`LedgerFile.lines` is `split(b"\\n")` with over-long lines replaced, in batches."""
    read_size = data.draw(st.integers(1, cap), label="read_size")  # the real ones: 256K < 8M
    content = b"".join(byte * n + (b"\n" if newline else b"") for n, byte, newline in pieces)
    path = tmp_path / "lines.bin"
    path.write_bytes(content)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_files, "READ_SIZE", read_size)
        patch.setattr(_files, "MAX_LINE_BYTES", cap)
        file = LedgerFile.open(path, write=False)
        assert file is not None
        try:
            batches = list(file.lines())
        finally:
            file.close()
    lines, starts, tail = _flatten(batches)
    expected, expected_tail = _reference(content, cap)
    assert lines == [line for _, line in expected]
    assert [offset for _, offset in batches if offset >= 0] == [expected[i][0] for i in starts]
    assert tail == expected_tail


def test_lines_yield_no_empty_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_files, "READ_SIZE", 4)
    monkeypatch.setattr(_files, "MAX_LINE_BYTES", 10)
    path = tmp_path / "lines.bin"
    path.write_bytes(b"\0" * 15 + b"\n")  # over-long, its newline ends the fourth block
    file = LedgerFile.open(path, write=False)
    assert file is not None
    try:
        assert list(file.lines()) == [([TOO_LONG], 0)]
    finally:
        file.close()


def _refused_quickly(call: Callable[[], Any], fifo: Path | None = None) -> BaseException | None:
    """Run `call` in a thread and return what it raised; fail if it blocks."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed back to the test
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        if fifo is not None:  # unblock an open() waiting for a writer
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
        pytest.fail(f"{call} blocked")
    return raised[0] if raised else None


def _special_file_calls(path: Path) -> list[Callable[[], Any]]:
    async def run() -> None:
        async with open_writer(path, header()):
            pass

    async def append() -> None:
        async with open_writer(path, None):
            pass

    return [
        lambda: load_ledger(path),
        lambda: load_ledger(path, repair=False),
        lambda: LocalStore(path).read(),
        lambda: LocalStore(path).append(),
        lambda: LedgerFile.open(path, write=True, create=True, lock=True),
        lambda: anyio.run(run),
        lambda: anyio.run(append),
    ]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "ledger.jsonl"
    os.mkfifo(fifo)
    for call in _special_file_calls(fifo):
        error = _refused_quickly(call, fifo)
        assert isinstance(error, LedgerError) and "not a regular file" in str(error)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a character device")
def test_device_and_directory_are_refused(tmp_path: Path) -> None:
    device = Path(os.devnull)
    assert stat.S_ISCHR(device.stat().st_mode)
    for path in (device, tmp_path):
        for call in _special_file_calls(path):
            error = _refused_quickly(call)
            assert isinstance(error, LedgerError) and "not a regular file" in str(error)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
async def test_fifo_sidecar_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    os.mkfifo(LocalStore(path).sidecar_path)
    with anyio.fail_after(10), pytest.raises(LedgerError, match="not a regular file"):
        async with open_writer(path, header(), sidecar=True):
            pass
    assert not path.exists()  # a run refused before its first record leaves no empty file


async def test_existing_readable_ledger_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    side = Path(LocalStore(path).sidecar_path)
    path.write_bytes(job_line())
    side.write_bytes(b"")
    for p in (path, side):
        os.chmod(p, 0o644)
    load_ledger(path)  # reading never changes the mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    async with LocalStore(path).run(sidecar=True) as files:
        assert files.ledger.tightened and not files.ledger.new and files.ledger.locked
        assert files.sidecar is not None and files.sidecar.tightened
    for p in (path, side):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    async with LocalStore(path).run(sidecar=False) as files:
        assert not files.ledger.tightened  # already private
    other = tmp_path / "other.jsonl"
    other.write_bytes(job_line())
    os.chmod(other, 0o640)
    async with open_writer(other, header()):
        pass
    assert stat.S_IMODE(other.stat().st_mode) == 0o600


async def test_sidecar_torn_tail_is_cut_when_a_run_opens_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    side = Path(LocalStore(path).sidecar_path)
    whole = b'{"id":"a","loop_name":"a2ib-a","response":{}}\n'
    side.write_bytes(whole + b'{"id":"b","loop_na')
    async with open_writer(path, header(), sidecar=True) as writer:
        await writer.outcome(outcome("c", Status.STARTED, response={"r": 1}))
    assert lines_of(side) == [
        {"id": "a", "loop_name": "a2ib-a", "response": {}},
        {"id": "c", "loop_name": "a2ib-c", "response": {"r": 1}},
    ]


# --------------------------------------------------------------------------------------
# the writer


async def test_file_modes_and_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.jsonl"
    side = Path(LocalStore(path).sidecar_path)
    old_umask = os.umask(0)  # the mode must not depend on the umask
    writes: list[tuple[str, bytes]] = []
    real_append = LedgerFile.append_all

    def spy(self: LedgerFile, data: bytes) -> None:
        writes.append(("sidecar" if self.path == str(side) else "ledger", data))
        real_append(self, data)

    monkeypatch.setattr(LedgerFile, "append_all", spy)
    try:
        async with open_writer(path, header(), sidecar=True) as writer:
            await writer.outcome(outcome("plain", Status.STARTED))
            await writer.checkpoint()
            await writer.outcome(
                outcome("textract", Status.NOT_ACTIVATED, response={"Blocks": [1, 2]})
            )
            await writer.intent("queued", 3, "a2ib-queued")
            await writer.outcome(  # through the queue this time
                outcome("rekognition", Status.STARTED, response={"Labels": []})
            )
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert side.name == "ledger.jsonl.responses.jsonl"
    assert stat.S_IMODE(side.stat().st_mode) == 0o600
    assert lines_of(side) == [
        {"id": "textract", "loop_name": "a2ib-textract", "response": {"Blocks": [1, 2]}},
        {"id": "rekognition", "loop_name": "a2ib-rekognition", "response": {"Labels": []}},
    ]
    assert all("response" not in record for record in lines_of(path))
    for item in (b"textract", b"rekognition"):
        first_sidecar = next(i for i, (t, d) in enumerate(writes) if t == "sidecar" and item in d)
        ledger_line = next(i for i, (t, d) in enumerate(writes) if t == "ledger" and item in d)
        assert first_sidecar < ledger_line

    # without sidecar=True, responses are dropped and no sidecar is created
    other = tmp_path / "other.jsonl"
    async with open_writer(other, header()) as writer:
        await writer.outcome(outcome("t", Status.STARTED, response={"x": 1}))
    assert not Path(LocalStore(other).sidecar_path).exists()
    assert "response" not in lines_of(other)[-1]


async def test_intent_is_written_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header(), checkpoint_interval=3600) as writer:
        await writer.outcome(outcome("queued", Status.STARTED))
        await writer.intent("a", 1, "a2ib-a")
        written = path.read_bytes()  # what another process (or a rerun) would see now
        assert written.endswith(b"\n")
        assert [r["event"] for r in lines_of(path)] == ["job", "outcome", "intent"]
        assert writer.written == 3


async def test_drain_gives_up_on_a_hung_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def hung(fd: int) -> None:
        time.sleep(1)
        real_fsync(fd)

    path = tmp_path / "ledger.jsonl"
    with pytest.raises(LedgerWriteError, match=r"did not answer within 0\.2 seconds"):
        async with open_writer(path, header(), drain_timeout=0.2) as writer:
            await writer.intent("a", 1, "a2ib-a")
            monkeypatch.setattr(os, "fsync", hung)
    assert load_ledger(path).has_pending_intent("a")  # written, only not confirmed on disk


async def test_one_writer_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header()) as writer:
        await writer.intent("a", 1, "a2ib-a")
        with pytest.raises(LedgerError, match="in use"):
            async with open_writer(path, header()):
                pass
        # a loader meanwhile reads, but never cuts what the live writer may be appending
        with path.open("ab") as f:
            f.write(b'{"event":"intent","id":"b"')
        index = load_ledger(path)
        assert index.has_pending_intent("a") and index.repaired_bytes == 0
    # once the writer is gone, the torn tail is cut
    assert load_ledger(path).repaired_bytes > 0


async def test_a_run_needs_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    data = job_line()
    path.write_bytes(data)
    file = LedgerFile.open(path, write=True)
    assert file is not None and not file.locked
    try:
        with pytest.raises(LedgerError, match="needs the ledger's lock"):
            async with LedgerWriter.open(file, header()):
                pass
        with pytest.raises(ValueError, match="checkpoint_interval"):
            async with LedgerWriter.open(file, None, checkpoint_interval=-1):
                pass
    finally:
        file.close()
    assert path.read_bytes() == data


async def test_writer_cuts_an_unrepaired_tail(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(orjson.dumps(header().to_record()) + b'\n{"event":"intent","id":"a')
    async with open_writer(path, header()) as writer:
        await writer.intent("b", 2, "a2ib-b")
    index = load_ledger(path)
    assert index.has_pending_intent("b") and not index.has_pending_intent("a")
    assert index.runs == 2 and index.repaired_bytes == 0


async def test_append_without_header(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    with pytest.raises(LedgerError, match="does not exist"):
        async with open_writer(path, None):
            pass
    async with open_writer(path, header()):
        pass
    async with open_writer(path, None) as writer:
        await writer.record({"event": "loop_status", "id": "a", "loop_status": "Completed"})
    assert [r["event"] for r in lines_of(path)] == ["job", "loop_status"]


async def _lifecycle_append(path: Path, records: list[dict[str, Any]]) -> int:
    """Append `records` as a lifecycle command does: open for appending (no lock), read
    (repairing a dead run's torn tail), refuse a partial last line, append.  Bytes cut."""
    file = LocalStore(path).append()
    assert file is not None
    try:
        index = read_ledger(file, loops=True)
        assert file.ends_with_newline()
        async with LedgerWriter.open(file, None) as writer:
            for record in records:
                await writer.record(record)
                await anyio.lowlevel.checkpoint()
        return index.repaired_bytes
    finally:
        file.close()


def _loop_status(n: int) -> dict[str, Any]:
    return {"event": "loop_status", "id": f"i{n}", "loop_name": f"a2ib-i{n}", "loop_status": "x"}


async def test_lifecycle_append_beside_a_run_keeps_every_line_whole(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header(), checkpoint_interval=3600, buffer=4) as writer:

        async def run_records() -> None:
            for n in range(300):
                await writer.intent(f"i{n}", n, f"a2ib-i{n}")
                await writer.outcome(outcome(f"i{n}", Status.STARTED, line=n))
                if n % 7 == 0:
                    await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_records)
            tg.start_soon(_lifecycle_append, path, [_loop_status(n) for n in range(200)])
    data = path.read_bytes()
    assert data.endswith(b"\n")
    records = [orjson.loads(line) for line in data.split(b"\n")[:-1]]  # every line parses
    events = [r["event"] for r in records]
    assert events.count("intent") == events.count("outcome") == 300
    assert events.count("loop_status") == 200 and events[0] == "job"
    assert events.index("loop_status") < events.index("intent", events.index("loop_status"))
    index = load_ledger(path)
    assert index.repaired_bytes == 0 and index.counts[Status.STARTED] == 300


async def test_lifecycle_append_after_a_dead_run_keeps_every_line_whole(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header()) as writer:
        await writer.intent("a", 1, "a2ib-a")
        await writer.outcome(outcome("a", Status.STARTED))
    whole = path.read_bytes()
    torn = b'{"event":"intent","id":"b","li'
    with path.open("ab") as f:  # the run died mid-record
        f.write(torn)
    assert await _lifecycle_append(path, [_loop_status(1)]) == len(torn)
    assert await _lifecycle_append(path, [_loop_status(2)]) == 0
    data = path.read_bytes()
    assert data.startswith(whole)
    assert [r["event"] for r in lines_of(path)] == ["job", "intent", "outcome"] + 2 * [
        "loop_status"
    ]
    assert load_ledger(path).repaired_bytes == 0


async def test_open_writer_append_after_a_dead_run_keeps_every_line_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header()) as writer:
        await writer.intent("a", 1, "a2ib-a")
    with path.open("ab") as f:  # the run died mid-record
        f.write(b'{"event":"intent","id":"b","li')
    for n in range(2):
        try:
            async with open_writer(path, None) as writer:
                await writer.record(_loop_status(n))
        except LedgerError:
            pass  # refusing is fine too; gluing is not
    for line in path.read_bytes().split(b"\n")[:-1]:
        orjson.loads(line)  # every line whole
    load_ledger(path)


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The file descriptors fsynced from now on, in order (each fsync still happens)."""
    calls: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


async def test_checkpoint_fsyncs(tmp_path: Path, synced: list[int]) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header(), checkpoint_interval=3600) as writer:
        await writer.intent("a", 1, "a2ib-a")
        before = len(synced)
        await writer.checkpoint()
        assert len(synced) == before + 1
        await writer.checkpoint()  # nothing new: nothing to sync
        assert len(synced) == before + 1
        await writer.outcome(outcome("a", Status.STARTED))
    assert len(synced) == before + 2  # at exit


async def test_checkpoint_fsyncs_the_sidecar_first(tmp_path: Path, synced: list[int]) -> None:
    path = tmp_path / "ledger.jsonl"
    async with LocalStore(path).run(sidecar=True) as files:
        assert files.sidecar is not None
        read_ledger(files.ledger)
        async with LedgerWriter.open(
            files.ledger, header(), sidecar=files.sidecar, checkpoint_interval=3600
        ) as writer:
            await writer.outcome(outcome("t", Status.STARTED, response={"r": 1}))
            synced.clear()
            await writer.checkpoint()
            assert synced == [files.sidecar.fd, files.ledger.fd]


async def test_after_sync_hook_runs_after_each_sync(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    sizes: list[int] = []

    async def after_sync() -> None:
        sizes.append(path.stat().st_size)

    async with LocalStore(path).run(sidecar=False) as files:
        read_ledger(files.ledger)
        async with LedgerWriter.open(
            files.ledger, header(), checkpoint_interval=3600, after_sync=after_sync
        ) as writer:
            await writer.intent("a", 1, "a2ib-a")
            await writer.checkpoint()
            assert sizes == [path.stat().st_size]
            await writer.intent("b", 2, "a2ib-b")
    assert len(sizes) == 2 and sizes[-1] == path.stat().st_size


async def test_interval_zero_syncs_every_record(tmp_path: Path, synced: list[int]) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header(), checkpoint_interval=0) as writer:
        for n in range(3):
            synced.clear()
            await writer.intent(f"i{n}", n, f"a2ib-i{n}")  # written directly, then synced
            with anyio.fail_after(10):
                while not synced:
                    await anyio.sleep(0.001)


async def test_a_record_written_during_an_fsync_gets_a_sync_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The flag that says "written since the last fsync" must not be cleared by an fsync that
    # began before the record was written: a checkpoint after it would then sync nothing.
    real_fsync = os.fsync
    started = threading.Event()
    release = threading.Event()
    calls: list[int] = []

    def slow(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            started.set()
            release.wait(5)
        real_fsync(fd)

    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header(), checkpoint_interval=3600) as writer:
        monkeypatch.setattr(os, "fsync", slow)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.checkpoint)  # the first fsync: held until released
            with anyio.fail_after(5):
                while not started.is_set():
                    await anyio.sleep(0.001)
            await writer.intent("late", 1, "a2ib-late")  # written while that fsync runs
            release.set()
        before = len(calls)
        await writer.checkpoint()
        assert len(calls) == before + 1  # the late record was synced by this checkpoint


async def test_periodic_fsync_when_idle(tmp_path: Path, synced: list[int]) -> None:
    path = tmp_path / "ledger.jsonl"
    async with open_writer(path, header(), checkpoint_interval=0.05) as writer:
        await anyio.sleep(0.2)
        synced.clear()
        await writer.intent("a", 1, "a2ib-a")  # then nothing: the timer must sync it
        with anyio.fail_after(10):
            while not synced:
                await anyio.sleep(0.01)


@pytest.mark.parametrize("seed", range(3))
async def test_records_land_in_the_order_handed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Records go straight to the file when nothing is queued and behind the queue
    otherwise; either way the file keeps the order in which they were handed over, even
    while a slow fsync holds the writer task and producers pile up behind a small queue."""
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        time.sleep(0.002)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    rng = random.Random(seed)
    handed: list[str] = []
    path = tmp_path / "ledger.jsonl"

    async def producer(writer: LedgerWriter, p: int) -> None:
        for k in range(40):
            key = f"{p}-{k}"
            choice = rng.random()
            handed.append(key)  # in the same step as the call: the order of handing over
            if choice < 0.4:
                await writer.intent(key, k, f"a2ib-{key}")
            elif choice < 0.8:
                await writer.outcome(outcome(key, Status.STARTED, k + 1))
            elif choice < 0.9:
                await writer.record({"event": "note", "id": key})
            else:
                handed.pop()
                await writer.checkpoint()
            if rng.random() < 0.5:
                await anyio.lowlevel.checkpoint()

    direct = 0
    real_write_now = LedgerWriter._write_now

    def counting(self: LedgerWriter, line: bytes, response: bytes | None) -> bool:
        nonlocal direct
        wrote = real_write_now(self, line, response)
        direct += wrote
        return wrote

    monkeypatch.setattr(LedgerWriter, "_write_now", counting)
    async with (
        open_writer(path, header(), checkpoint_interval=0.0, buffer=4) as writer,
        anyio.create_task_group() as tg,
    ):
        for p in range(8):
            tg.start_soon(producer, writer, p)
    assert 0 < direct < len(handed)  # both ways were taken
    records = lines_of(path)
    assert records[0]["event"] == "job"
    assert [r["id"] for r in records[1:]] == handed


def _disk_full(after: int, *, short: bool = True) -> Any:
    """An `append_all_to` that fails with ENOSPC from its `after`-th call on."""
    calls = 0
    real = _files.append_all_to

    def write(fd: int, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls >= after:
            if short:  # a short write first: the torn line the reader has to cut off
                os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    return write


async def test_disk_full_at_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.jsonl"
    monkeypatch.setattr(_files, "append_all_to", _disk_full(after=1, short=False))
    with pytest.raises(LedgerWriteError, match="No space left on device") as info:
        async with open_writer(path, header()):
            pass
    assert str(path) in str(info.value)
    assert not path.exists()  # refused before its first record: no empty ledger is left


async def test_a_write_of_nothing_is_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if bytes(data).startswith(b'{"event":"job",'):  # only the ledger's first record
            return 0
        return real_write(fd, data)

    path = tmp_path / "ledger.jsonl"
    monkeypatch.setattr(os, "write", write)
    with pytest.raises(LedgerWriteError, match="No space left on device"):
        async with open_writer(path, header()):
            pass


async def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    path = tmp_path / "ledger.jsonl"

    def short(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data[:7]))

    async with open_writer(path, header()) as writer:
        monkeypatch.setattr(os, "write", short)
        await writer.intent("a", 1, "a2ib-a")
        await writer.outcome(outcome("a", Status.STARTED))
        await writer.checkpoint()
        monkeypatch.undo()
    assert [r["event"] for r in lines_of(path)] == ["job", "intent", "outcome"]


async def test_write_failure_stops_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.jsonl"
    monkeypatch.setattr(_files, "append_all_to", _disk_full(after=3))
    errors: list[BaseException] = []
    with pytest.raises(LedgerWriteError, match="No space left on device"):
        async with open_writer(path, header()) as writer:
            await writer.intent("a", 1, "a2ib-a")  # write 2
            with pytest.raises(LedgerWriteError, match="No space left on device") as info:
                await writer.intent("b", 2, "a2ib-b")  # write 3 fails
            assert str(path) in str(info.value)
            assert isinstance(writer.failed, LedgerWriteError)
            for call in (
                writer.outcome(outcome("a", Status.STARTED)),
                writer.intent("c", 3, "a2ib-c"),
                writer.record({"event": "summary"}),
                writer.checkpoint(),
            ):
                try:
                    await call
                except LedgerWriteError as exc:
                    errors.append(exc)
    assert len(errors) == 4
    assert len({id(e) for e in errors}) == 4  # a fresh exception for each caller
    monkeypatch.undo()
    index = load_ledger(path)
    assert index.repaired_bytes > 0
    assert index.has_pending_intent("a") and not index.has_pending_intent("b")


async def test_sidecar_write_failure_stops_the_job_before_its_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.jsonl"
    monkeypatch.setattr(_files, "append_all_to", _disk_full(after=2, short=False))
    with pytest.raises(LedgerWriteError, match=re.escape(LocalStore(path).sidecar_path)):
        async with open_writer(path, header(), sidecar=True) as writer:
            await writer.outcome(outcome("t", Status.STARTED, response={"r": 1}))
    monkeypatch.undo()
    assert [r["event"] for r in lines_of(path)] == ["job"]  # no outcome without its response


async def test_write_failure_wakes_every_waiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.jsonl"
    monkeypatch.setattr(_files, "append_all_to", _disk_full(after=2))
    failures = 0

    async def produce(n: int, writer: LedgerWriter) -> None:
        nonlocal failures
        try:
            await writer.intent(str(n), n, f"a2ib-{n}")
            for _ in range(50):
                await writer.outcome(outcome(str(n), Status.STARTED))
        except LedgerWriteError:
            failures += 1

    with pytest.raises(LedgerWriteError), anyio.fail_after(10):
        async with (
            open_writer(path, header(), buffer=4) as writer,
            anyio.create_task_group() as tg,
        ):
            for n in range(64):
                tg.start_soon(produce, n, writer)
    assert failures == 64


async def test_body_exception_is_not_wrapped(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        async with open_writer(tmp_path / "ledger.jsonl", header()):
            raise KeyError("boom")


async def test_cancellation_keeps_queued_records(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    with anyio.CancelScope() as scope:
        async with open_writer(path, header(), buffer=5000) as writer:
            for n in range(3000):
                await writer.outcome(outcome(f"i{n}", Status.STARTED, line=n))
            scope.cancel()
            await anyio.sleep(10)
    assert scope.cancelled_caught
    index = load_ledger(path)
    assert index.repaired_bytes == 0 and index.counts[Status.STARTED] == 3000


async def test_cancellation_with_blocked_producers(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    handed: set[str] = set()

    async def produce(n: int, writer: LedgerWriter) -> None:
        for k in range(1000):
            item = f"p{n}-{k}"
            await writer.intent(item, k, f"a2ib-{item}")
            await writer.outcome(outcome(item, Status.STARTED))
            handed.add(item)

    with anyio.move_on_after(0.3):
        async with (
            open_writer(path, header(), buffer=8) as writer,
            anyio.create_task_group() as tg,
        ):
            for n in range(32):
                tg.start_soon(produce, n, writer)
    index = load_ledger(path)
    assert index.repaired_bytes == 0
    assert handed and all(index.state(item) is Status.STARTED for item in handed)


# --------------------------------------------------------------------------------------
# kill -9

_CHILD = textwrap.dedent(
    """
    import os, sys, time, anyio
    from a2ibatch import Outcome, Status, TaskType
    from a2ibatch.ledger import JobHeader, load_ledger, open_writer
    from a2ibatch.ledger import _files

    path, acks, round_ = sys.argv[1], sys.argv[2], sys.argv[3]
    header = JobHeader(TaskType.CUSTOM, "arn:fd", "a2ib", "m.jsonl", {{}})

    if {split}:
        # short writes, as a full disk or a huge batch produce: kills land mid-record
        def write(fd, data):
            for start in range(0, len(data), 61):
                os.write(fd, data[start:start + 61])
                time.sleep(0.0002)
        _files.append_all_to = write

    async def produce(writer, ack, worker):
        for n in range(10**9):
            item = f"r{{round_}}-w{{worker}}-{{n}}"
            await writer.intent(item, n, "a2ib-" + item)
            os.write(ack, (item + "\\n").encode())
            await writer.outcome(Outcome(item, n, Status.STARTED, "a2ib-" + item,
                                         "arn:" + "x" * (n % 300), attempts=1))

    async def main():
        load_ledger(path)  # a rerun repairs the tail first
        ack = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        async with open_writer(path, header, checkpoint_interval={interval}) as writer:
            async with anyio.create_task_group() as tg:
                for worker in range(16):
                    tg.start_soon(produce, writer, ack, worker)

    anyio.run(main)
    """
)


def _kill_rounds(tmp_path: Path, rounds: int, seed: int) -> Iterator[tuple[Path, Path]]:
    """Run the writer process `rounds` times on one ledger, killing it at random moments.

    Yields the ledger and the file of intents acknowledged in that round.
    """
    rng = random.Random(seed)
    path = tmp_path / "ledger.jsonl"
    for round_ in range(rounds):
        acks = tmp_path / f"acks-{round_}.txt"
        split = round_ % 2
        code = _CHILD.format(interval=rng.choice([0, 0.01, 1.0]), split=split)
        child = subprocess.Popen([sys.executable, "-c", code, str(path), str(acks), str(round_)])
        # bytes of acknowledgements to wait for: a random moment
        target = rng.randint(1, 3_000 if split else 20_000)
        deadline = time.monotonic() + 60
        while not acks.exists() or acks.stat().st_size < target:
            assert child.poll() is None, "the writer process died on its own"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        time.sleep(rng.random() * 0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        yield path, acks


def test_kill_9_leaves_a_loadable_ledger(tmp_path: Path) -> None:
    acked: list[str] = []
    torn = rounds = 0
    # At least 6 rounds, and on until a kill has torn a record (how often one does depends
    # on the machine's timing: the test must exercise the repair, not hope to).
    for path, acks in _kill_rounds(tmp_path, rounds=40, seed=20261125):
        rounds += 1
        index = load_ledger(path)  # never raises
        torn += index.repaired_bytes > 0
        assert path.read_bytes().endswith(b"\n")
        assert load_ledger(path).repaired_bytes == 0
        # every intent that returned to its caller, in this round or before, is recorded
        acked += acks.read_text().split("\n")[:-1]
        for item in acked:
            assert index.has_pending_intent(item) or index.state(item) is Status.STARTED
        if rounds >= 6 and torn:
            break
    assert index.runs == rounds
    assert torn  # the repair was exercised
