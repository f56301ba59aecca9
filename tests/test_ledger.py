"""The ledger: record formats, resume index, torn-tail repair, writer failure and crashes."""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
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
    _ledger,
)
from a2ibatch.ledger import (
    JobHeader,
    LedgerWriter,
    iter_records,
    load_ledger,
    outcome_record,
    sidecar_path,
    utc_timestamp,
)

pytestmark = pytest.mark.anyio  # the async tests; sync ones are unaffected

FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/review"


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


async def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with LedgerWriter.open(path, header()) as writer:
        for n, item in enumerate(["s", "n", "f", "pending"], start=1):
            await writer.intent(item, n, f"a2ib-{item}")
        await writer.outcome(outcome("s", Status.STARTED, human_loop_arn="arn:loop/s"))
        await writer.outcome(outcome("n", Status.NOT_ACTIVATED, line=2))
        await writer.outcome(outcome("f", Status.FAILED, line=3, error=ErrorInfo("E", "m")))
        await writer.outcome(outcome("bad", Status.INVALID, line=5))
        await writer.outcome(outcome(None, Status.INVALID, line=6))  # id unreadable
        await writer.record({"event": "summary", "started": 1, "failed": 1})
    assert writer.written == 1 + 4 + 5 + 1

    index = load_ledger(path)
    assert index.header == header(run=index.header.run if index.header else "")
    assert index.state("s") is Status.STARTED
    assert index.state("n") is Status.NOT_ACTIVATED
    assert index.state("f") is Status.FAILED
    assert index.state("bad") is Status.INVALID
    assert index.state("pending") is None
    assert index.state("never-seen") is None
    assert index.has_pending_intent("pending")
    assert not index.has_pending_intent("s")
    assert not index.has_pending_intent("bad")
    assert index.pending == 1
    assert dict(index.counts) == {
        Status.STARTED: 1,
        Status.NOT_ACTIVATED: 1,
        Status.FAILED: 1,
        Status.INVALID: 1,
    }
    assert "s" in index and "pending" not in index and len(index) == 4
    assert (index.records, index.runs, index.repaired_bytes) == (11, 1, 0)

    # a second run: an outcome for the pending item, a new intent for a failed one
    first_run = index.header
    async with LedgerWriter.open(path, header()) as writer:
        await writer.outcome(outcome("pending", Status.STARTED, recovered=True))
        await writer.intent("f", 3, "a2ib-f")
    index = load_ledger(path)
    assert index.header == first_run  # the first job record is the job's identity
    assert index.runs == 2
    assert index.state("pending") is Status.STARTED
    assert not index.has_pending_intent("pending")
    assert index.state("f") is Status.FAILED
    assert index.has_pending_intent("f")  # outcome, then a new intent: pending again


async def test_last_outcome_is_the_state(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with LedgerWriter.open(path, header()) as writer:
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


async def test_missing_ledger_is_empty(tmp_path: Path) -> None:
    index = load_ledger(tmp_path / "nope.jsonl")
    assert index.header is None and len(index) == 0 and index.records == 0
    assert all(n == 0 for n in index.counts.values())
    index.check_compatible(TaskType.TEXTRACT, "anything", "any")  # nothing to compare
    with pytest.raises(LedgerError, match="does not exist"):
        list(iter_records(tmp_path / "nope.jsonl"))


async def test_records_keep_unknown_events_and_serialize_datetimes_and_tuples(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.jsonl"
    when = dt.datetime(2026, 11, 25, 6, 0, 0, 123000, tzinfo=dt.UTC)
    async with LedgerWriter.open(path, header()) as writer:
        await writer.record({"loop_status": "Completed", "event": "loop_status", "id": "a"})
        await writer.record({"event": "future_thing", "when": when, "pair": (1, 2), "at": "x"})
        with pytest.raises(ValueError, match="event"):
            await writer.record({"no": "event"})
    records = lines_of(path)
    assert next(iter(records[1])) == "event"  # the event key always comes first
    assert re.fullmatch(r".*\.\d{3}Z", records[1]["at"])
    assert records[2] == {
        "event": "future_thing",
        "when": "2026-11-25T06:00:00.123000Z",
        "pair": [1, 2],
        "at": "x",
    }
    index = load_ledger(path)  # unknown events are ignored
    assert index.records == 3 and len(index) == 0
    assert [r["event"] for r in iter_records(path, events={"loop_status"})] == ["loop_status"]
    assert [r["event"] for r in iter_records(path)] == ["job", "loop_status", "future_thing"]


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
    manifest.write_bytes(b'{"id": "a", "text": "secret"}\n{"id": "b", "text": "secret"}\n')
    with pytest.raises(LedgerError, match="line 1 is not a ledger record") as info:
        load_ledger(manifest)
    assert "secret" not in str(info.value)
    headless = tmp_path / "headless.jsonl"
    headless.write_bytes(b'{"event": "intent", "id": "a", "line": 1, "loop_name": "n"}\n')
    with pytest.raises(LedgerError, match="no job record"):
        load_ledger(headless)


# --------------------------------------------------------------------------------------
# torn tails and broken lines


def _ledger_bytes(tmp_path: Path, ops: list[tuple[str, str, Status]], name: str) -> bytes:
    """The bytes the writer produces for `ops` (intent / outcome per id)."""
    path = tmp_path / name

    async def write() -> None:
        async with LedgerWriter.open(path, header(), checkpoint_interval=0) as writer:
            for n, (kind, item_id, status) in enumerate(ops, start=1):
                if kind == "intent":
                    await writer.intent(item_id, n, f"a2ib-{item_id}")
                elif kind == "outcome":
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
                pending.discard(record["id"])
    return states, pending, records


def _check_cut(path: Path, data: bytes, cut: int, ids: set[str]) -> None:
    path.write_bytes(data[:cut])
    complete = data[: data.rfind(b"\n", 0, cut) + 1]
    states, pending, records = _expected(complete)
    index = load_ledger(path)
    assert path.read_bytes() == complete
    assert index.repaired_bytes == cut - len(complete)
    assert index.records == records
    for item_id in ids:
        assert index.state(item_id) is states.get(item_id)
        assert index.has_pending_intent(item_id) == (item_id in pending)
    assert sum(index.counts.values()) == len(states) == len(index)
    assert (index.header is None) == (records == 0)
    again = load_ledger(path)  # idempotent
    assert again.repaired_bytes == 0 and again.records == index.records
    assert path.read_bytes() == complete
    assert sum(1 for _ in iter_records(path)) == records


def test_truncation_at_every_offset(tmp_path: Path) -> None:
    ops = [
        ("intent", "a", Status.STARTED),
        ("intent", "b", Status.STARTED),
        ("outcome", "a", Status.STARTED),
        ("outcome", "b", Status.FAILED),
        ("loop_status", "a", Status.STARTED),
        ("intent", "b", Status.STARTED),
        ("outcome", "b", Status.NOT_ACTIVATED),
        ("intent", "é-ü-ø", Status.STARTED),
    ]
    data = _ledger_bytes(tmp_path, ops, "source.jsonl")
    path = tmp_path / "cut.jsonl"
    for cut in range(len(data) + 1):
        _check_cut(path, data, cut, {"a", "b", "é-ü-ø"})


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
        patch.setattr(_ledger, "_READ_SIZE", read_size)  # lines across read boundaries
        _check_cut(path, data, cut, {"a", "b", "c", "d/e", "ünï", "x" * 40})
        if garbage:  # what a power loss can leave: zeros, a newline, even several lines
            complete = path.read_bytes()
            path.write_bytes(complete + garbage + b"\n" + garbage + b"\n" + garbage)
            index = load_ledger(path)
            assert index.repaired_bytes == 3 * len(garbage) + 2
            assert path.read_bytes() == complete


@pytest.mark.parametrize("read_size", [5, 1 << 18])
def test_broken_middle_line_is_an_error(
    tmp_path: Path, read_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_ledger, "_READ_SIZE", read_size)
    path = tmp_path / "ledger.jsonl"
    good = [orjson.dumps(header().to_record())]
    good += [
        orjson.dumps({"event": "intent", "id": str(n), "line": n, "loop_name": "x"})
        for n in range(3)
    ]
    secret = b'{"event":"intent","id":"Jane Doe, 12 Main St'
    data = b"\n".join([*good[:2], secret, *good[2:]]) + b"\n"
    path.write_bytes(data)
    for read in (
        load_ledger,
        lambda p: list(iter_records(p)),
        lambda p: list(iter_records(p, events=["intent"])),
    ):
        with pytest.raises(LedgerError, match="line 3 is not valid JSON") as info:
            read(path)
        assert "Jane" not in str(info.value) and "Main" not in str(info.value)
    assert path.read_bytes() == data  # nothing was cut

    # the same line at the end is a torn tail
    path.write_bytes(b"\n".join([*good, secret]) + b"\n\n")
    assert [r["id"] for r in iter_records(path, events={"intent"})] == ["0", "1", "2"]
    assert load_ledger(path).repaired_bytes == len(secret) + 2


def test_blank_lines_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(orjson.dumps(header().to_record()) + b"\n\n  \n" + b'{"event":"x"}\n\n')
    index = load_ledger(path)
    assert (index.records, index.repaired_bytes) == (2, 0)


def test_iter_records_never_modifies(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    data = orjson.dumps(header().to_record()) + b'\n{"event":"intent","id":"a","li'
    path.write_bytes(data)
    assert [r["event"] for r in iter_records(path)] == ["job"]
    assert path.read_bytes() == data


# --------------------------------------------------------------------------------------
# the writer


async def test_file_modes_and_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.jsonl"
    old_umask = os.umask(0)  # the mode must not depend on the umask
    writes: list[tuple[str, bytes]] = []
    real_write = LedgerWriter._write

    def spy(self: LedgerWriter, fd: int, data: bytes) -> None:
        target = "sidecar" if fd == self._sidecar_fd else "ledger"
        writes.append((target, data))
        real_write(self, fd, data)

    monkeypatch.setattr(LedgerWriter, "_write", spy)
    try:
        async with LedgerWriter.open(path, header(), sidecar=True) as writer:
            await writer.outcome(outcome("plain", Status.STARTED))
            await writer.checkpoint()
            await writer.outcome(
                outcome("textract", Status.NOT_ACTIVATED, response={"Blocks": [1, 2]})
            )
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    side = Path(sidecar_path(path))
    assert side.name == "ledger.jsonl.responses.jsonl"
    assert stat.S_IMODE(side.stat().st_mode) == 0o600
    assert lines_of(side) == [
        {"id": "textract", "loop_name": "a2ib-textract", "response": {"Blocks": [1, 2]}}
    ]
    assert "response" not in lines_of(path)[-1]
    first_sidecar = next(i for i, (t, _) in enumerate(writes) if t == "sidecar")
    ledger_line = next(i for i, (t, d) in enumerate(writes) if t == "ledger" and b"textract" in d)
    assert first_sidecar < ledger_line

    # without sidecar=True, responses are dropped and no sidecar is created
    other = tmp_path / "other.jsonl"
    async with LedgerWriter.open(other, header()) as writer:
        await writer.outcome(outcome("t", Status.STARTED, response={"x": 1}))
    assert not Path(sidecar_path(other)).exists()


async def test_intent_is_written_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with LedgerWriter.open(path, header(), checkpoint_interval=3600) as writer:
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
        async with LedgerWriter.open(path, header(), drain_timeout=0.2) as writer:
            await writer.intent("a", 1, "a2ib-a")
            monkeypatch.setattr(os, "fsync", hung)
    assert load_ledger(path).has_pending_intent("a")  # written, only not confirmed on disk


async def test_one_writer_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    async with LedgerWriter.open(path, header()) as writer:
        await writer.intent("a", 1, "a2ib-a")
        with pytest.raises(LedgerError, match="in use"):
            async with LedgerWriter.open(path, header()):
                pass
        # a loader meanwhile reads, but never cuts what the live writer may be appending
        with path.open("ab") as f:
            f.write(b'{"event":"intent","id":"b"')
        index = load_ledger(path)
        assert index.has_pending_intent("a") and index.repaired_bytes == 0
    # once the writer is gone, the torn tail is cut
    assert load_ledger(path).repaired_bytes > 0


async def test_writer_cuts_an_unrepaired_tail(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(orjson.dumps(header().to_record()) + b'\n{"event":"intent","id":"a')
    async with LedgerWriter.open(path, header()) as writer:
        await writer.intent("b", 2, "a2ib-b")
    index = load_ledger(path)
    assert index.has_pending_intent("b") and not index.has_pending_intent("a")
    assert index.runs == 2


async def test_append_without_header(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    with pytest.raises(LedgerError, match="does not exist"):
        async with LedgerWriter.open(path, None):
            pass
    async with LedgerWriter.open(path, header()):
        pass
    async with LedgerWriter.open(path, None) as writer:
        await writer.record({"event": "loop_status", "id": "a", "loop_status": "Completed"})
    assert [r["event"] for r in lines_of(path)] == ["job", "loop_status"]


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
    async with LedgerWriter.open(path, header(), checkpoint_interval=3600) as writer:
        await writer.intent("a", 1, "a2ib-a")
        before = len(synced)
        await writer.checkpoint()
        assert len(synced) == before + 1
        await writer.outcome(outcome("a", Status.STARTED))
    assert len(synced) == before + 2  # at exit


async def test_interval_zero_syncs_every_record(tmp_path: Path, synced: list[int]) -> None:
    path = tmp_path / "ledger.jsonl"
    async with LedgerWriter.open(path, header(), checkpoint_interval=0) as writer:
        for n in range(3):
            synced.clear()
            await writer.intent(f"i{n}", n, f"a2ib-i{n}")  # written directly, then synced
            with anyio.fail_after(2):
                while not synced:
                    await anyio.sleep(0.001)


async def test_periodic_fsync_when_idle(tmp_path: Path, synced: list[int]) -> None:
    path = tmp_path / "ledger.jsonl"
    async with LedgerWriter.open(path, header(), checkpoint_interval=0.05) as writer:
        await anyio.sleep(0.2)
        synced.clear()
        await writer.intent("a", 1, "a2ib-a")  # then nothing: the timer must sync it
        with anyio.fail_after(2):
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
                await anyio.sleep(0)

    direct = 0
    real_write_now = LedgerWriter._write_now

    def counting(self: LedgerWriter, line: bytes, response: bytes | None) -> bool:
        nonlocal direct
        wrote = real_write_now(self, line, response)
        direct += wrote
        return wrote

    monkeypatch.setattr(LedgerWriter, "_write_now", counting)
    async with (
        LedgerWriter.open(path, header(), checkpoint_interval=0.0, buffer=4) as writer,
        anyio.create_task_group() as tg,
    ):
        for p in range(8):
            tg.start_soon(producer, writer, p)
    assert 0 < direct < len(handed)  # both ways were taken
    records = lines_of(path)
    assert records[0]["event"] == "job"
    assert [r["id"] for r in records[1:]] == handed


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
async def test_disk_full_at_open() -> None:
    with pytest.raises(LedgerWriteError, match="No space left on device") as info:
        async with LedgerWriter.open("/dev/full", header()):
            pass
    assert "/dev/full" in str(info.value)


def _disk_full(after: int) -> Any:
    """A `LedgerWriter._write` that fails with ENOSPC from its `after`-th call on."""
    calls = 0
    real = LedgerWriter._write

    def write(writer: LedgerWriter, fd: int, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls >= after:
            # a short write first: the torn line the reader has to cut off
            os.write(fd, data[: len(data) // 2])
            raise OSError(28, os.strerror(28))
        real(writer, fd, data)

    return write


async def test_write_failure_stops_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.jsonl"
    monkeypatch.setattr(LedgerWriter, "_write", _disk_full(after=3))
    errors: list[BaseException] = []
    with pytest.raises(LedgerWriteError, match="No space left on device"):
        async with LedgerWriter.open(path, header()) as writer:
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
    monkeypatch.undo()
    index = load_ledger(path)
    assert index.repaired_bytes > 0
    assert index.has_pending_intent("a") and not index.has_pending_intent("b")


async def test_write_failure_wakes_every_waiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.jsonl"
    monkeypatch.setattr(LedgerWriter, "_write", _disk_full(after=2))
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
            LedgerWriter.open(path, header(), buffer=4) as writer,
            anyio.create_task_group() as tg,
        ):
            for n in range(64):
                tg.start_soon(produce, n, writer)
    assert failures == 64


async def test_body_exception_is_not_wrapped(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        async with LedgerWriter.open(tmp_path / "ledger.jsonl", header()):
            raise KeyError("boom")


async def test_cancellation_keeps_queued_records(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    with anyio.CancelScope() as scope:
        async with LedgerWriter.open(path, header(), buffer=5000) as writer:
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
            LedgerWriter.open(path, header(), buffer=8) as writer,
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
    from a2ibatch.ledger import JobHeader, LedgerWriter, load_ledger

    path, acks, round_ = sys.argv[1], sys.argv[2], sys.argv[3]
    header = JobHeader(TaskType.CUSTOM, "arn:fd", "a2ib", "m.jsonl", {{}})

    if {split}:
        # short writes, as a full disk or a huge batch produce: kills land mid-record
        def write(self, fd, data):
            for start in range(0, len(data), 61):
                os.write(fd, data[start:start + 61])
                time.sleep(0.0002)
        LedgerWriter._write = write

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
        async with LedgerWriter.open(path, header, checkpoint_interval={interval}) as writer:
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
    torn = 0
    for path, acks in _kill_rounds(tmp_path, rounds=6, seed=20261125):
        index = load_ledger(path)  # never raises
        torn += index.repaired_bytes > 0
        assert path.read_bytes().endswith(b"\n")
        assert load_ledger(path).repaired_bytes == 0
        # every intent that returned to its caller, in this round or before, is recorded
        acked += acks.read_text().split("\n")[:-1]
        for item in acked:
            assert index.has_pending_intent(item) or index.state(item) is Status.STARTED
    assert index.runs == 6
    assert torn  # the repair was exercised
