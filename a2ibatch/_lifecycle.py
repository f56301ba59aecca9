"""After submit: follow the job's human loops to their answers, and clean up after them.

Every function here works from a ledger written by submit and touches only the loops that
ledger names (its ``started`` outcomes):

* `track` asks DescribeHumanLoop for every loop not yet known to be final and appends a
  ``loop_status`` record whenever a loop's status changed;
* `results` reads the reviewers' answers (each Completed loop's ``output.json`` in S3) into
  a JSONL or CSV file, resumably and without holding the answers in memory;
* `stop_loops` and `delete_loops` stop the in-progress loops and delete the finished ones,
  appending a ``loop_action`` record per action;
* `reconcile` compares the ledger with ListHumanLoops and reports what either side lacks.

Calls go through `Caller`: the same per-API `RateController`, concurrency governor and
`RetryPolicy` that submit uses, so a tracker polling a million loops stays under the
account's quota.  Nothing here prints or exits; the CLI is a shell around these functions.

Lifecycle records are appended with `LedgerAppender`, which takes no lock: a tracker may run
while submit is still writing the same ledger.  Each batch of whole lines goes out in one
``O_APPEND`` write, which the operating system never interleaves with another writer's.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_thread
import orjson
import structlog

from ._calls import Caller, CallFailed
from ._clients import client_kwargs, make_session, open_client
from ._config import AwsSettings, SubmitSettings
from ._errors import (
    ConfigError,
    JobAborted,
    LedgerError,
    LedgerWriteError,
)
from ._ledger import JobHeader, iter_records, last_line_end, utc_timestamp
from ._models import Status
from ._retry import (
    RetryPolicy,
)
from ._tasks import A2I_SERVICE

if sys.platform != "win32":
    import fcntl

log = structlog.get_logger("a2ibatch")

__all__ = [
    "DEFAULT_INTERVAL",
    "FINAL_STATUSES",
    "ActionReport",
    "LedgerAppender",
    "LedgerLoop",
    "LedgerLoops",
    "LoopState",
    "ReconcileReport",
    "ServiceLoop",
    "TrackReport",
    "action_past",
    "delete_loops",
    "load_loops",
    "reconcile",
    "stop_loops",
    "track",
]

#: statuses after which a loop never changes again ("Deleted": the service no longer has it)
FINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped", "Deleted"})
#: the only statuses A2I lets DeleteHumanLoop act on
DELETABLE_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
DEFAULT_INTERVAL = 60.0
#: ListHumanLoops may report a loop created a little before the ledger's clock said
RECONCILE_SLACK = timedelta(minutes=1)
_FLUSH_BYTES = 1 << 20

T = TypeVar("T")


# --------------------------------------------------------------------------------------
# the ledger: reading what the job started, appending what happened since


@dataclass(slots=True)
class LoopState:
    """One human loop the ledger names, with the last status recorded for it."""

    id: str
    loop_name: str
    human_loop_arn: str | None
    status: str | None = None  # the last loop_status record's; None = never tracked
    output_s3_uri: str | None = None
    deleted_by_us: bool = False  # a delete action of ours removed it

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass
class LedgerLoops:
    """What a ledger says about its job's loops (read with `load_loops`).

    Memory grows with the number of loops (one small entry each): a ledger of a million
    loops takes a few hundred megabytes.
    """

    path: str
    header: JobHeader
    started_at: str  # the first job record's time
    loops: dict[str, LoopState]  # by loop name
    intents: set[str] = field(default_factory=set)  # loop names of intents (if asked)

    def candidates(self, action: Literal["stop", "delete"]) -> list[LoopState]:
        """Loops an action may apply to, before the service is asked about them."""
        if action == "stop":
            return [loop for loop in self.loops.values() if not loop.final]
        return [loop for loop in self.loops.values() if loop.status != "Deleted"]

    def counts(self) -> dict[str, int]:
        """Loops by their last recorded status ("Untracked" when none was recorded)."""
        return dict(Counter(loop.status or "Untracked" for loop in self.loops.values()))


def load_loops(path: str | os.PathLike[str], *, intents: bool = False) -> LedgerLoops:
    """Read the job's identity and loops from the ledger at `path` (blocking; use a thread).

    A loop belongs to the job when the last outcome of its item is ``started``.  With
    `intents`, the loop names of every ``intent`` record are collected as well (reconcile
    needs them to tell a loop whose outcome was lost from a stranger's).
    """
    p = os.fspath(path)
    header: JobHeader | None = None
    started_at = ""
    loops: dict[str, LoopState] = {}
    by_id: dict[str, str] = {}
    names: set[str] = set()
    events = ["job", "outcome", "loop_status", "loop_action"]
    if intents:
        events.append("intent")
    for record in iter_records(p, events=events):
        event = record["event"]
        if event == "outcome":
            item_id = record.get("id")
            if not isinstance(item_id, str):
                continue
            name = record.get("loop_name")
            if record.get("status") == Status.STARTED.value and isinstance(name, str):
                previous = by_id.get(item_id)
                if previous is not None and previous != name:
                    loops.pop(previous, None)
                by_id[item_id] = name
                arn = record.get("human_loop_arn")
                loops[name] = LoopState(item_id, name, arn if isinstance(arn, str) else None)
        elif event == "loop_status":
            loop = loops.get(str(record.get("loop_name")))
            if loop is not None:
                status = record.get("loop_status")
                loop.status = status if isinstance(status, str) else None
                uri = record.get("output_s3_uri")
                if isinstance(uri, str):
                    loop.output_s3_uri = uri
        elif event == "loop_action":
            loop = loops.get(str(record.get("loop_name")))
            if loop is not None and record.get("action") == "delete":
                loop.deleted_by_us = loop.deleted_by_us or record.get("result") == "deleted"
        elif event == "intent":
            name = record.get("loop_name")
            if isinstance(name, str):
                names.add(name)
        elif event == "job" and header is None:
            try:
                header = JobHeader.from_record(record)
            except (KeyError, TypeError, ValueError):
                raise LedgerError(f"ledger {p}: its first job record is malformed") from None
            started_at = str(record.get("at") or "")
    if header is None:
        raise LedgerError(
            f"{p} has no job record: it is not an a2ibatch ledger, or submit never ran"
        )
    return LedgerLoops(p, header, started_at, loops, names)


class LedgerAppender:
    """Appends lifecycle records to a ledger, beside a submit that may be writing it.

    No lock is taken.  Records are buffered and written as whole lines, each batch with a
    single ``os.write`` on an ``O_APPEND`` descriptor, so they never interleave with the
    other writer's lines; `close` fsyncs.  A torn last line left by a crash is cut off first
    (only when no writer holds the ledger's lock: a live writer's tail is its own business).
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._buffer: list[bytes] = []
        self._size = 0
        self.written = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> LedgerAppender:
        p = os.fspath(path)
        flags = os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(p, flags)
        except FileNotFoundError:
            raise LedgerError(f"ledger {p} does not exist") from None
        except OSError as exc:
            raise LedgerError(f"cannot open ledger {p}: {exc.strerror or exc}") from None
        try:
            _cut_torn_tail(p, fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(p, fd)

    def add(self, record: Mapping[str, Any]) -> None:
        """Queue one record (``event`` first, ``at`` added when missing)."""
        full = {"event": record["event"], **record}
        full.setdefault("at", utc_timestamp())
        line = orjson.dumps(full, option=orjson.OPT_APPEND_NEWLINE)
        self._buffer.append(line)
        self._size += len(line)
        if self._size >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the queued records: one write of whole lines."""
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        count = len(self._buffer)
        self._buffer.clear()
        self._size = 0
        try:
            written = os.write(self._fd, data)
        except OSError as exc:
            raise LedgerWriteError(
                f"cannot write ledger {self.path}: {exc.strerror or exc}"
            ) from exc
        if written != len(data):  # a short write of a regular file: the disk is full
            raise LedgerWriteError(
                f"cannot write ledger {self.path}: only {written} of {len(data)} bytes "
                "were written (disk full?); the ledger ends with a torn line, which the "
                "next run cuts off"
            )
        self.written += count

    def close(self) -> None:
        """Flush, fsync and close."""
        try:
            self.flush()
            os.fsync(self._fd)
        except OSError as exc:
            raise LedgerWriteError(
                f"cannot sync ledger {self.path}: {exc.strerror or exc}"
            ) from exc
        finally:
            os.close(self._fd)


def _cut_torn_tail(path: str, fd: int) -> None:
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    if sys.platform != "win32":
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LedgerError(
                f"ledger {path} ends with a partial line while another process writes it; "
                "try again in a moment"
            ) from None
    try:
        end = last_line_end(fd, size)
        os.ftruncate(fd, end)
        os.fsync(fd)
        log.warning("ledger_tail_cut", ledger=path, bytes=size - end)
    finally:
        if sys.platform != "win32":
            fcntl.flock(fd, fcntl.LOCK_UN)


def _status_record(
    loop: LoopState, status: str, output: str | None, failure: str | None
) -> dict[str, Any]:
    return {
        "event": "loop_status",
        "id": loop.id,
        "loop_name": loop.loop_name,
        "human_loop_arn": loop.human_loop_arn,
        "loop_status": status,
        "output_s3_uri": output,
        "failure_reason": failure,
        "at": utc_timestamp(),
    }


def _action_record(loop: LoopState, action: str, result: str) -> dict[str, Any]:
    return {
        "event": "loop_action",
        "action": action,
        "loop_name": loop.loop_name,
        "id": loop.id,
        "result": result,
        "at": utc_timestamp(),
    }


# --------------------------------------------------------------------------------------
# shared plumbing


def job_settings(loops: LedgerLoops, aws: AwsSettings) -> SubmitSettings:
    header = loops.header
    return SubmitSettings(
        task=header.task,
        flow_definition_arn=header.flow_definition_arn,
        ledger=Path(loops.path),
        name_prefix=header.name_prefix,
        aws=aws,
    )


async def job_client(
    stack: AsyncExitStack,
    settings: SubmitSettings,
    session: Any | None,
    service: str,
    pool: int = 1024,
) -> Any:
    kwargs = client_kwargs(settings, pool)
    return await open_client(stack, make_session(settings, session), service, kwargs)


async def load_loops_async(path: str | os.PathLike[str], *, intents: bool = False) -> LedgerLoops:
    return await anyio.to_thread.run_sync(lambda: load_loops(path, intents=intents))


class _Observer:
    """Describes loops and records what changed; shared by track, stop and delete."""

    def __init__(self, caller: Caller, a2i: Any, appender: LedgerAppender) -> None:
        self.caller = caller
        self.a2i = a2i
        self.appender = appender
        self.changed = 0
        self.errors: Counter[str] = Counter()

    async def describe(self, loop: LoopState) -> Mapping[str, Any] | None:
        """The loop's DescribeHumanLoop answer (its change recorded); None if unknown now."""
        try:
            response: Mapping[str, Any] = await self.caller.call(
                "DescribeHumanLoop", self.a2i.describe_human_loop, HumanLoopName=loop.loop_name
            )
        except CallFailed as exc:
            if exc.not_found:
                self.observe(loop, "Deleted", None, "the service no longer has this loop")
                return {"HumanLoopStatus": "Deleted"}
            self.errors[exc.error.code] += 1
            log.warning("describe_failed", loop=loop.loop_name, code=exc.error.code)
            return None
        output = response.get("HumanLoopOutput") or {}
        self.observe(
            loop,
            str(response.get("HumanLoopStatus")),
            output.get("OutputS3Uri"),
            response.get("FailureReason"),
        )
        return response

    async def refresh(self, loop: LoopState) -> None:
        """`describe` for `fan_out`: only the recorded change matters."""
        await self.describe(loop)

    def observe(
        self, loop: LoopState, status: str, output: str | None, failure: str | None
    ) -> None:
        if status == loop.status:
            return
        self.appender.add(_status_record(loop, status, output, failure))
        loop.status = status
        loop.output_s3_uri = output or loop.output_s3_uri
        self.changed += 1


# --------------------------------------------------------------------------------------
# track


@dataclass
class TrackReport:
    """What `track` found: every loop's last known status, and what changed this time."""

    ledger: str
    counts: dict[str, int]  # loops by last known status ("Untracked": never described)
    changed: int  # loop_status records appended
    rounds: int
    pending: int  # loops not (yet) known to be final
    errors: dict[str, int]  # describe failures by error code (those loops stay pending)
    timed_out: bool
    elapsed: float
    calls: int = 0
    throttled: int = 0

    @property
    def done(self) -> bool:
        """Every loop is final."""
        return self.pending == 0

    @property
    def exit_code(self) -> int:
        return 1 if self.errors or self.timed_out else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "loops": self.counts,
            "changed": self.changed,
            "rounds": self.rounds,
            "pending": self.pending,
            "errors": self.errors,
            "timed_out": self.timed_out,
            "elapsed_s": round(self.elapsed, 3),
            "calls": self.calls,
            "throttled": self.throttled,
        }


async def track(
    ledger: str | os.PathLike[str],
    *,
    session: Any | None = None,
    aws: AwsSettings | None = None,
    watch: bool = False,
    interval: float = DEFAULT_INTERVAL,
    timeout: float | None = None,
    rate: float | None = None,
    concurrency: int | None = None,
    retry_policy: RetryPolicy | None = None,
    on_round: Callable[[TrackReport], Awaitable[None]] | None = None,
) -> TrackReport:
    """Describe every loop of the ledger not known to be final; record each change.

    With `watch`, repeat every `interval` seconds until every loop is final or `timeout`
    seconds have passed (`timed_out` is then set); each round reads the ledger again, so
    loops that a submit still running starts meanwhile are tracked too.  `on_round`
    receives the report after each round (for a progress display).  Records of each round
    are written before the next round starts.
    """
    if interval < 0 or (timeout is not None and timeout < 0):
        raise ConfigError("--interval and --timeout must not be negative")
    began = time.monotonic()
    deadline = math.inf if timeout is None else began + timeout
    table = await load_loops_async(ledger)
    settings = job_settings(table, aws or AwsSettings())
    caller = Caller(retry_policy, rate=rate, concurrency=concurrency)
    appender = LedgerAppender.open(ledger)
    try:
        async with AsyncExitStack() as stack:
            a2i = await job_client(stack, settings, session, A2I_SERVICE)
            observer = _Observer(caller, a2i, appender)
            rounds = 0
            timed_out = False
            while True:
                if rounds:
                    # Loops a submit still running has started since, and records of
                    # other trackers, are in the ledger now: read it again.
                    table = await load_loops_async(ledger)
                pending = [loop for loop in table.loops.values() if not loop.final]
                observer.errors.clear()
                if pending:
                    rounds += 1
                    await caller.fan_out(pending, observer.refresh)
                    appender.flush()
                report = _track_report(table, observer, caller, rounds, False, began)
                if on_round is not None:
                    await on_round(report)
                if not watch or report.done:
                    break
                now = time.monotonic()
                if now >= deadline:
                    timed_out = True
                    break
                await anyio.sleep(min(interval, deadline - now))
    finally:
        appender.close()
    return _track_report(table, observer, caller, rounds, timed_out, began)


def _track_report(
    table: LedgerLoops,
    observer: _Observer,
    caller: Caller,
    rounds: int,
    timed_out: bool,
    began: float,
) -> TrackReport:
    return TrackReport(
        ledger=table.path,
        counts=table.counts(),
        changed=observer.changed,
        rounds=rounds,
        pending=sum(not loop.final for loop in table.loops.values()),
        errors=dict(observer.errors),
        timed_out=timed_out,
        elapsed=time.monotonic() - began,
        calls=caller.counts.calls,
        throttled=caller.counts.throttled,
    )


# --------------------------------------------------------------------------------------
# stop and delete


@dataclass
class ActionReport:
    """What `stop_loops` or `delete_loops` did."""

    action: Literal["stop", "delete"]
    acted: int  # loops stopped / deleted
    skipped: dict[str, int]  # loops left alone, by the status the service reported
    errors: dict[str, int]  # failed describes and actions, by error code
    candidates: int  # loops the ledger offered

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "acted": self.acted,
            "skipped": self.skipped,
            "errors": self.errors,
            "candidates": self.candidates,
        }


async def stop_loops(
    ledger: str | os.PathLike[str],
    *,
    session: Any | None = None,
    aws: AwsSettings | None = None,
    rate: float | None = None,
    concurrency: int | None = None,
    retry_policy: RetryPolicy | None = None,
) -> ActionReport:
    """StopHumanLoop for each of the job's loops that DescribeHumanLoop shows InProgress.

    A stopped loop goes Stopping, then Stopped; `track` records that.  Loops the ledger
    does not name are never touched.
    """
    return await _act("stop", ledger, session, aws, rate, concurrency, retry_policy)


async def delete_loops(
    ledger: str | os.PathLike[str],
    *,
    session: Any | None = None,
    aws: AwsSettings | None = None,
    rate: float | None = None,
    concurrency: int | None = None,
    retry_policy: RetryPolicy | None = None,
) -> ActionReport:
    """DeleteHumanLoop for each of the job's loops that DescribeHumanLoop shows finished.

    Only Completed, Failed or Stopped loops are deleted (A2I refuses the rest, and deleting
    is for cleaning up, not for cancelling work).  Answers already in your S3 bucket stay.
    """
    return await _act("delete", ledger, session, aws, rate, concurrency, retry_policy)


async def _act(
    action: Literal["stop", "delete"],
    ledger: str | os.PathLike[str],
    session: Any | None,
    aws: AwsSettings | None,
    rate: float | None,
    concurrency: int | None,
    retry_policy: RetryPolicy | None,
) -> ActionReport:
    table = await load_loops_async(ledger)
    settings = job_settings(table, aws or AwsSettings())
    caller = Caller(retry_policy, rate=rate, concurrency=concurrency)
    candidates = table.candidates(action)
    acted = 0
    skipped: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    appender = LedgerAppender.open(ledger)
    try:
        async with AsyncExitStack() as stack:
            a2i = await job_client(stack, settings, session, A2I_SERVICE)
            observer = _Observer(caller, a2i, appender)

            async def one(loop: LoopState) -> None:
                nonlocal acted
                found = await observer.describe(loop)
                if found is None:
                    return
                status = str(found.get("HumanLoopStatus"))
                if action == "stop":
                    wanted = status == "InProgress"
                else:
                    wanted = status in DELETABLE_STATUSES
                if not wanted:
                    skipped[status] += 1
                    return
                method = a2i.stop_human_loop if action == "stop" else a2i.delete_human_loop
                operation = "StopHumanLoop" if action == "stop" else "DeleteHumanLoop"
                try:
                    await caller.call(operation, method, HumanLoopName=loop.loop_name)
                except CallFailed as exc:
                    errors[exc.error.code] += 1
                    appender.add(_action_record(loop, action, exc.error.code))
                    return
                acted += 1
                appender.add(_action_record(loop, action, action_past(action)))
                if action == "delete":
                    loop.deleted_by_us = True
                    observer.observe(loop, "Deleted", None, None)

            await caller.fan_out(candidates, one)
            errors.update(observer.errors)
    finally:
        appender.close()
    return ActionReport(action, acted, dict(skipped), dict(errors), len(candidates))


def action_past(action: str) -> str:
    """The ``result`` a successful action records: "stopped" or "deleted"."""
    return "stopped" if action == "stop" else "deleted"


# --------------------------------------------------------------------------------------
# reconcile


@dataclass(frozen=True)
class ServiceLoop:
    """A loop ListHumanLoops reports that the ledger has no outcome for."""

    loop_name: str
    status: str
    creation_time: str
    #: the ledger has an intent for it: a call whose answer was lost; rerunning submit
    #: with the same manifest records it
    pending_intent: bool


@dataclass(frozen=True)
class LedgerLoop:
    """A loop the ledger started that the service does not list."""

    id: str
    loop_name: str
    human_loop_arn: str | None
    last_status: str | None


@dataclass
class ReconcileReport:
    """Differences between the ledger and the service, for one job."""

    ledger: str
    flow_definition_arn: str
    name_prefix: str
    since: str  # CreationTimeAfter used for the listing
    service_loops: int  # loops listed under the flow definition since then
    ledger_loops: int  # loops the ledger started
    missing_from_ledger: list[ServiceLoop]
    unknown_to_service: list[LedgerLoop]

    @property
    def ok(self) -> bool:
        return not self.missing_from_ledger and not self.unknown_to_service

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "flow_definition_arn": self.flow_definition_arn,
            "name_prefix": self.name_prefix,
            "since": self.since,
            "service_loops": self.service_loops,
            "ledger_loops": self.ledger_loops,
            "missing_from_ledger": [vars(x) for x in self.missing_from_ledger],
            "unknown_to_service": [vars(x) for x in self.unknown_to_service],
            "ok": self.ok,
        }


async def reconcile(
    ledger: str | os.PathLike[str],
    *,
    session: Any | None = None,
    aws: AwsSettings | None = None,
    retry_policy: RetryPolicy | None = None,
) -> ReconcileReport:
    """List the flow definition's loops since the job began and compare with the ledger.

    Reported: loops named with the job's prefix that the ledger has no ``started`` outcome
    for, and loops the ledger started that the service does not list (deleted outside
    a2ibatch, or aged out: A2I removes finished loops after 30 days).  Loops deleted with
    `delete_loops` are expected to be gone and are not reported.
    """
    table = await load_loops_async(ledger, intents=True)
    settings = job_settings(table, aws or AwsSettings())
    since = _parse_time(table.started_at) - RECONCILE_SLACK
    caller = Caller(retry_policy)
    prefix = table.header.name_prefix + "-"
    seen: set[str] = set()
    missing: list[ServiceLoop] = []
    listed = 0
    async with AsyncExitStack() as stack:
        a2i = await job_client(stack, settings, session, A2I_SERVICE, pool=4)
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "FlowDefinitionArn": table.header.flow_definition_arn,
                "CreationTimeAfter": since,
                "MaxResults": 100,
            }
            if token:
                kwargs["NextToken"] = token
            try:
                page = await caller.call("ListHumanLoops", a2i.list_human_loops, **kwargs)
            except CallFailed as exc:
                raise JobAborted(
                    f"cannot list the flow definition's human loops: {exc.error.code} "
                    f"{exc.error.message}".rstrip(),
                    code=exc.error.code,
                ) from None
            for summary in page.get("HumanLoopSummaries", []):
                listed += 1
                name = str(summary.get("HumanLoopName"))
                seen.add(name)
                if name in table.loops or not name.startswith(prefix):
                    continue
                created = summary.get("CreationTime")
                missing.append(
                    ServiceLoop(
                        loop_name=name,
                        status=str(summary.get("HumanLoopStatus")),
                        creation_time=(
                            created.isoformat() if isinstance(created, datetime) else str(created)
                        ),
                        pending_intent=name in table.intents,
                    )
                )
            token = page.get("NextToken")
            if not token:
                break
    unknown = [
        LedgerLoop(loop.id, loop.loop_name, loop.human_loop_arn, loop.status)
        for loop in table.loops.values()
        if loop.loop_name not in seen and not loop.deleted_by_us
    ]
    return ReconcileReport(
        ledger=table.path,
        flow_definition_arn=table.header.flow_definition_arn,
        name_prefix=table.header.name_prefix,
        since=since.isoformat().replace("+00:00", "Z"),
        service_loops=listed,
        ledger_loops=len(table.loops),
        missing_from_ledger=missing,
        unknown_to_service=unknown,
    )


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LedgerError(f"the ledger's job record has an unreadable time {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
