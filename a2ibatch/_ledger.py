"""The ledger: the append-only JSONL record that makes a job resumable and exactly-once.

Every run appends to one ledger file: a ``job`` record naming the job, an ``intent`` record
for each item before its first call is sent, an ``outcome`` record for each item whose fate is
decided, a ``summary`` at the end, and later whatever lifecycle tools add (``loop_status``
and others).  A rerun reads the ledger back with `load_ledger` and learns, per item id, the
state left by its last outcome and whether a call may have reached the service without an
outcome being recorded (a *pending intent*), which the runner reconciles with the service
instead of sending blindly.  Record formats and the resume procedure are described in
``docs/ledger.md``.

Durability guarantee
--------------------
Every record is handed to the operating system (``os.write`` has returned) before the next
call that depends on it: `LedgerWriter.intent` returns only after its record is written, and
the runner sends an item's first call only after that.  Killing the process, even with
``kill -9``, therefore loses nothing that matters: at worst the last line is torn, and
`load_ledger` cuts it off (that record's call was never sent).  The file is ``fsync``-ed at
most every ``checkpoint_interval`` seconds while records arrive, on `LedgerWriter.checkpoint`
and when the writer closes, so an operating-system crash or a power loss can lose at most
the records of the last checkpoint interval.  The rerun recovers those items through the
service: loop names are deterministic, so an item whose intent or outcome was lost is found
(or safely started) under the same name, never started twice.

One process writes a ledger at a time: `LedgerWriter.open` takes an exclusive ``flock`` on
the file for the duration of the run.
"""

from __future__ import annotations

import base64
import errno
import functools
import hashlib
import math
import os
import stat
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import anyio
import anyio.to_thread
import orjson
from anyio.abc import TaskStatus

from ._errors import LedgerError, LedgerWriteError
from ._models import Outcome, Status, TaskType

if sys.platform != "win32":
    import fcntl

__all__ = [
    "SIDECAR_SUFFIX",
    "JobHeader",
    "LedgerIndex",
    "LedgerWriter",
    "iter_records",
    "load_ledger",
    "outcome_record",
    "sidecar_path",
    "utc_timestamp",
]

#: the sidecar holding full service responses lives next to the ledger, under this suffix
SIDECAR_SUFFIX: Final = ".responses.jsonl"

# 256 KiB reads: few system calls, and each block's lines stay in the CPU cache while they
# are parsed (measured faster than both smaller reads and multi-MiB ones)
_READ_SIZE: Final = 1 << 18
_DUMPS_OPTIONS: Final = orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
_STATUSES: Final[tuple[Status, ...]] = tuple(Status)
_STATUS_CODES: Final[dict[str, int]] = {status.value: code for code, status in enumerate(_STATUSES)}
_EVENT_PREFIX: Final = b'{"event":"'
_DEFAULT_DRAIN_TIMEOUT: Final = 30.0


def _blake2b_key(item_id: str) -> int:
    digest = hashlib.blake2b(item_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


# An index lives in one process only, so its keys need to agree within that process only.
# Python's own string hash is a 64-bit keyed SipHash on 64-bit builds: as collision-resistant
# as a 64-bit BLAKE2b digest for these purposes (and randomly keyed), and several times
# cheaper, which matters when a million ids are indexed.  Narrower builds use BLAKE2b.
_key: Callable[[str], int] = hash if sys.hash_info.width >= 64 else _blake2b_key


def utc_timestamp(when: float | None = None) -> str:
    """ISO-8601 UTC time with millisecond precision, as every ledger record's ``at`` uses.

    `when` is seconds since the epoch; the default is now.
    """
    millis = int((time.time() if when is None else when) * 1000)
    seconds, millis = divmod(millis, 1000)
    return f"{_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    """The whole-second part of a timestamp: formatted once per second, not per record."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def sidecar_path(path: str | os.PathLike[str]) -> str:
    """Where the responses of the ledger at `path` are kept."""
    return os.fspath(path) + SIDECAR_SUFFIX


def _json_default(value: Any) -> Any:
    """Serialize the few non-JSON types service responses and records carry."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"type {type(value).__name__} cannot be written to the ledger")


def _dumps(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(record, default=_json_default, option=_DUMPS_OPTIONS)


# --------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class JobHeader:
    """The identity of a job: what its first ``job`` record says, and every run repeats.

    A ledger belongs to one job (task type, flow definition, name prefix): loop names derive
    from these, so resuming under other values would break the exactly-once guarantee.
    """

    task: TaskType
    flow_definition_arn: str
    name_prefix: str
    manifest: str
    versions: Mapping[str, str]
    run: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_record(self) -> dict[str, Any]:
        """The ``job`` record that starts a run."""
        return {
            "event": "job",
            "run": self.run,
            "task": TaskType(self.task).value,
            "flow_definition_arn": self.flow_definition_arn,
            "name_prefix": self.name_prefix,
            "manifest": self.manifest,
            "versions": dict(self.versions),
            "at": utc_timestamp(),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> JobHeader:
        """The header a ``job`` record describes; ValueError or KeyError when malformed."""
        versions = record.get("versions") or {}
        if not isinstance(versions, Mapping):
            raise ValueError("versions is not an object")
        fields = {
            name: record[name] for name in ("flow_definition_arn", "name_prefix", "manifest", "run")
        }
        for name, value in fields.items():
            if not isinstance(value, str):
                raise ValueError(f"{name} is not a string")
        return cls(
            task=TaskType(record["task"]),
            versions={str(k): str(v) for k, v in versions.items()},
            **fields,
        )


def outcome_record(outcome: Outcome) -> dict[str, Any]:
    """The ``outcome`` record of `outcome`; the service response is left out (sidecar)."""
    activation = outcome.activation
    error = outcome.error
    return {
        "event": "outcome",
        "id": outcome.id,
        "line": outcome.line,
        "status": Status(outcome.status).value,
        "loop_name": outcome.loop_name,
        "human_loop_arn": outcome.human_loop_arn,
        "activation": (
            None
            if activation is None
            else {"reasons": list(activation.reasons), "conditions": activation.conditions}
        ),
        "attempts": outcome.attempts,
        "error": None if error is None else {"code": error.code, "message": error.message},
        "recovered": outcome.recovered,
        "at": outcome.at or utc_timestamp(),
    }


# --------------------------------------------------------------------------------------
# reading


def _try_lock(fd: int) -> bool:
    """Take the exclusive writer lock without waiting; False when another holder has it.

    Filesystems without locks count as locked: there is nothing to coordinate with.
    """
    if sys.platform == "win32":
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
    return True


def _read_blocks(fd: int) -> Iterator[tuple[list[bytes], int]]:
    """The file's complete lines in big batches, each with the file offset of its first line.

    A last item whose list holds one element that ends without a newline is yielded with
    offset ``-1 - offset``: the incomplete tail.
    """
    partial = b""
    offset = 0
    while block := os.read(fd, _READ_SIZE):
        data = partial + block if partial else block
        lines = data.split(b"\n")
        partial = lines.pop()
        if lines:
            yield lines, offset
            offset += len(data) - len(partial)
    if partial:
        yield [partial], -1 - offset


def _line_offset(lines: list[bytes], index: int, offset: int) -> int:
    return offset + sum(len(line) + 1 for line in lines[:index])


def _broken_line(path: str, lineno: int, detail: str) -> LedgerError:
    # Never quote the line: ledgers hold ids and messages that may be personal data.
    return LedgerError(
        f"ledger {path}: line {lineno} {detail}; only the last line of a ledger may be torn. "
        "Restore the file from a backup, or remove or fix that line and rerun"
    )


def _broken_json(path: str, broken: tuple[int, int]) -> LedgerError:
    lineno, pos = broken
    return _broken_line(path, lineno, f"is not valid JSON (at byte {pos + 1})")


class _Indexer:
    """Builds a `LedgerIndex` from batches of complete lines."""

    __slots__ = (
        "broken",
        "header",
        "lineno",
        "path",
        "pending",
        "records",
        "runs",
        "states",
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self.states: dict[int, int] = {}
        self.pending: set[int] = set()
        self.header: JobHeader | None = None
        self.lineno = 0
        self.records = 0
        self.runs = 0
        #: (line number, file offset, byte in line) of the first line of a run of broken lines
        self.broken: tuple[int, int, int] | None = None

    def feed(self, lines: list[bytes], offset: int) -> None:
        """Index the complete `lines`; `offset` is where the first starts in the file."""
        # The hot loop: one parse and a few dict and set operations per line, nothing else.
        # Line numbers are worked out only when an error needs one.
        states = self.states
        pending_add = self.pending.add
        pending_discard = self.pending.discard
        codes = _STATUS_CODES
        invalid = codes[Status.INVALID.value]
        loads = orjson.loads
        key = _key
        broken = self.broken
        skipped = 0
        line = b""
        try:
            for line in lines:
                try:
                    record = loads(line)
                except orjson.JSONDecodeError as exc:
                    skipped += 1
                    if broken is None and line.strip():  # blank lines are harmless
                        index = lines.index(line)
                        start = _line_offset(lines, index, offset)
                        broken = self.broken = (self.lineno + 1 + index, start, exc.pos)
                    continue
                if broken is not None:
                    self._raise_broken()
                event = record["event"]
                if event == "outcome":
                    item_id = record["id"]
                    code = codes[record["status"]]
                    if item_id is not None:
                        k = key(item_id)
                        if code == invalid:
                            # A broken or duplicate line never undoes its id's real state.
                            states.setdefault(k, code)
                        else:
                            states[k] = code
                            pending_discard(k)
                elif event == "intent":
                    pending_add(key(record["id"]))
                elif event == "job":
                    self._job(record, self._lineno(lines, line))
        except LedgerError:
            raise
        except KeyError as exc:
            raise _broken_line(
                self.path,
                self._lineno(lines, line),
                f"is not a ledger record (bad or missing {exc})",
            ) from None
        except (TypeError, ValueError, AttributeError):
            raise _broken_line(
                self.path, self._lineno(lines, line), "is not a ledger record"
            ) from None
        self.lineno += len(lines)
        self.records += len(lines) - skipped

    def _lineno(self, lines: list[bytes], line: bytes) -> int:
        # The first line equal to `line` is the one: an equal line before it would have
        # failed (or been a job record) the same way.
        return self.lineno + 1 + lines.index(line)

    def _job(self, record: dict[str, Any], lineno: int) -> None:
        self.runs += 1
        if self.header is None:
            try:
                self.header = JobHeader.from_record(record)
            except (KeyError, TypeError, ValueError):
                raise _broken_line(self.path, lineno, "is not a valid job record") from None

    def _raise_broken(self) -> None:
        assert self.broken is not None
        lineno, _, pos = self.broken
        raise _broken_json(self.path, (lineno, pos))


class LedgerIndex:
    """What a rerun needs to know about a ledger: each id's state and pending intents.

    Ids are kept as 64-bit keys, not as strings, so that a ledger of millions of records
    indexes in little memory.
    """

    __slots__ = (
        "_pending",
        "_states",
        "counts",
        "header",
        "path",
        "records",
        "repaired_bytes",
        "runs",
    )

    def __init__(
        self,
        path: str,
        header: JobHeader | None,
        states: dict[int, int],
        pending: set[int],
        *,
        records: int = 0,
        runs: int = 0,
        repaired_bytes: int = 0,
    ) -> None:
        self.path = path
        #: the first ``job`` record: the job's identity (None for a new ledger)
        self.header = header
        self._states = states
        self._pending = pending
        #: number of ids by their last state (every status present, zero when unused)
        self.counts: Mapping[Status, int] = _count(states)
        #: records read (blank lines and a cut-off tail excluded)
        self.records = records
        #: ``job`` records: how many runs wrote to the ledger
        self.runs = runs
        #: bytes of torn tail cut off the file while loading
        self.repaired_bytes = repaired_bytes

    def state(self, item_id: str) -> Status | None:
        """The status of `item_id`'s last outcome; None when it has none."""
        code = self._states.get(_key(item_id))
        return None if code is None else _STATUSES[code]

    def has_pending_intent(self, item_id: str) -> bool:
        """Whether a call for `item_id` may have reached the service with no outcome since."""
        return _key(item_id) in self._pending

    @property
    def pending(self) -> int:
        """How many ids have a pending intent."""
        return len(self._pending)

    def check_compatible(
        self, task: TaskType | str, flow_definition_arn: str, name_prefix: str
    ) -> None:
        """Refuse (LedgerError) to resume a ledger that was written for another job."""
        header = self.header
        if header is None:
            return
        wanted = {
            "task": TaskType(task).value,
            "flow definition": flow_definition_arn,
            "name prefix": name_prefix,
        }
        found = {
            "task": header.task.value,
            "flow definition": header.flow_definition_arn,
            "name prefix": header.name_prefix,
        }
        differences = [
            f"its {name} is {found[name]!r}, this run's is {wanted[name]!r}"
            for name in wanted
            if wanted[name] != found[name]
        ]
        if differences:
            raise LedgerError(
                f"ledger {self.path} was written for another job: "
                + "; ".join(differences)
                + ". Loop names depend on these, so the job cannot be resumed with other "
                "values: use the ledger's values, or a new ledger file for a new job"
            )

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and _key(item_id) in self._states

    def __len__(self) -> int:
        return len(self._states)

    def __repr__(self) -> str:
        counts = ", ".join(f"{status.value}={n}" for status, n in self.counts.items())
        return (
            f"LedgerIndex({self.path!r}, ids={len(self)}, {counts}, pending={self.pending}, "
            f"records={self.records}, runs={self.runs}, repaired_bytes={self.repaired_bytes})"
        )


def _count(states: dict[int, int]) -> dict[Status, int]:
    by_code = Counter(states.values())
    return {status: by_code.get(code, 0) for code, status in enumerate(_STATUSES)}


def load_ledger(path: str | os.PathLike[str]) -> LedgerIndex:
    """Index the ledger at `path` for a rerun, cutting off a torn last line.

    A missing file gives an empty index.  A torn tail (an incomplete last line, or last
    lines that are not valid JSON: what a crash mid-write leaves) is truncated away, unless
    another process is writing the ledger right now, in which case it is only skipped.  A
    broken line followed by valid records raises LedgerError naming the line.
    """
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY)
    except FileNotFoundError:
        return LedgerIndex(p, None, {}, set())
    except OSError as exc:
        raise LedgerError(f"cannot read ledger {p}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LedgerError(f"ledger {p} is not a regular file")
    try:
        exclusive = _try_lock(fd)
        indexer = _Indexer(p)
        cut: int | None = None
        try:
            size = os.fstat(fd).st_size
            for lines, offset in _read_blocks(fd):
                if offset < 0:
                    cut = -1 - offset  # incomplete last line
                else:
                    indexer.feed(lines, offset)
        except OSError as exc:
            raise LedgerError(f"cannot read ledger {p}: {exc.strerror or exc}") from exc
        if indexer.broken is not None:
            cut = indexer.broken[1]
        if indexer.records and indexer.header is None:
            raise LedgerError(f"{p} is not an a2ibatch ledger: it has records but no job record")
        repaired = 0
        # Cut only what was read, and only when no writer can be appending right now.
        if cut is not None and exclusive and os.fstat(fd).st_size == size:
            repaired = _truncate(p, fd, cut)
        return LedgerIndex(
            p,
            indexer.header,
            indexer.states,
            indexer.pending,
            records=indexer.records,
            runs=indexer.runs,
            repaired_bytes=repaired,
        )
    finally:
        os.close(fd)


def _truncate(path: str, fd: int, size: int) -> int:
    """Cut the file to `size` bytes, durably; how many bytes went."""
    try:
        before = os.fstat(fd).st_size
        os.truncate(path, size)
        os.fsync(fd)
    except OSError as exc:
        raise LedgerError(
            f"ledger {path} ends with a torn record that cannot be cut off: {exc.strerror or exc}"
        ) from exc
    return before - size


def iter_records(
    path: str | os.PathLike[str], *, events: Collection[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the ledger's records in order, optionally only those of the given `events`.

    For lifecycle tools: the file is never modified, a torn tail is skipped, and a broken
    line followed by valid records raises LedgerError.  Records of unwanted events are
    skipped without being parsed when their line starts with the ``event`` key, as every
    line a2ibatch writes does.
    """
    p = os.fspath(path)
    wanted = None if events is None else frozenset(events)
    wanted_bytes = None if wanted is None else {e.encode() for e in wanted}
    try:
        fd = os.open(p, os.O_RDONLY)
    except FileNotFoundError:
        raise LedgerError(f"ledger {p} does not exist") from None
    except OSError as exc:
        raise LedgerError(f"cannot read ledger {p}: {exc.strerror or exc}") from exc
    prefix_len = len(_EVENT_PREFIX)
    loads = orjson.loads
    lineno = 0
    broken: tuple[int, int] | None = None  # (line number, byte in line) of a broken line
    try:
        for lines, offset in _read_blocks(fd):
            if offset < 0:
                return  # an incomplete last line
            for line in lines:
                lineno += 1
                if wanted_bytes is not None and line.startswith(_EVENT_PREFIX):
                    end = line.find(b'"', prefix_len)
                    name = line[prefix_len:end]
                    if end > 0 and b"\\" not in name and name not in wanted_bytes:
                        if broken is not None:
                            raise _broken_json(p, broken)
                        continue
                try:
                    record = loads(line)
                except orjson.JSONDecodeError as exc:
                    if line.strip() and broken is None:
                        broken = (lineno, exc.pos)
                    continue
                if broken is not None:
                    raise _broken_json(p, broken)  # a record follows: not a torn tail
                if not isinstance(record, dict) or "event" not in record:
                    raise _broken_line(p, lineno, "is not a ledger record")
                if wanted is None or record["event"] in wanted:
                    yield record
    except OSError as exc:
        raise LedgerError(f"cannot read ledger {p}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# writing


class _Waiter:
    """A message whose sender waits: an intent (until written) or a checkpoint (synced)."""

    __slots__ = ("error", "event", "line", "sync")

    def __init__(self, line: bytes | None, sync: bool) -> None:
        self.line = line
        self.sync = sync
        self.event = anyio.Event()
        self.error: LedgerWriteError | None = None


#: a ledger line; (sidecar line, ledger line); or a waiter
_Message: TypeAlias = bytes | tuple[bytes, bytes] | _Waiter


def _open_append(path: str) -> tuple[int, bool]:
    """Open `path` for appending, creating it private (0600); (fd, whether it is new)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | os.O_EXCL, 0o600)
        return fd, True
    except FileExistsError:
        pass
    except OSError as exc:
        raise LedgerError(f"cannot open ledger file {path}: {exc.strerror or exc}") from exc
    try:
        return os.open(path, flags, 0o600), False
    except OSError as exc:
        raise LedgerError(f"cannot open ledger file {path}: {exc.strerror or exc}") from exc


def last_line_end(fd: int, size: int) -> int:
    """Offset just past the last newline among the first `size` bytes of `fd` (0 if none).

    Everything after it is a line whose writing was cut off: the torn tail to drop.
    """
    end = size
    while end > 0:
        start = max(0, end - 65536)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _cut_incomplete_tail(path: str) -> int:
    """Drop bytes after the last newline (a torn record); how many went.

    The runner loads (and so fully repairs) a ledger before writing to it; this keeps a
    writer opened on an unrepaired file from turning a torn tail into a broken middle line.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise LedgerError(f"cannot read ledger file {path}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            return 0
        end = last_line_end(fd, info.st_size)
        return _truncate(path, fd, end) if end < info.st_size else 0
    except OSError as exc:
        raise LedgerError(f"cannot read ledger file {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _fsync_directory(path: str) -> None:
    """Make a new file's directory entry durable (best effort: not every system can)."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LedgerWriter:
    """The one writer of a ledger file during a run.

    A record is appended at once by the task that hands it over when nothing is queued
    ahead of it (the common case: a record costs one ``os.write`` and no task switch), and
    queued otherwise, behind the records before it.  A single writer task drains the queue
    in batches (one ``os.write`` per batch), wakes the producers that wait for their record,
    and fsyncs periodically.  The writer writes what it takes from the queue before it next
    yields, so "nothing queued" means "everything handed over is written": records reach
    the file in the order they were handed over.  Producers wait, in order, while `buffer`
    records are queued.  Use `LedgerWriter.open`.
    """

    def __init__(
        self,
        path: str,
        fd: int,
        sidecar_fd: int | None,
        buffer: int,
        checkpoint_interval: float,
    ) -> None:
        self.path = path
        self._fd = fd
        self._sidecar_fd = sidecar_fd
        self._queue: deque[_Message] = deque()
        self._waiting: deque[tuple[_Message, anyio.Event]] = deque()  # for room, in order
        self._buffer = max(1, buffer)
        self._wake = anyio.Event()  # set when the writer has something to do
        self._sync_due = False
        self._interval = checkpoint_interval
        self._regular = stat.S_ISREG(os.fstat(fd).st_mode)
        self._written = 0
        self._closed = False
        self._dirty = False
        self._last_sync = time.monotonic()
        self._failed: LedgerWriteError | None = None
        self._done = anyio.Event()
        self._scope = anyio.CancelScope(shield=True)
        self._ticker = anyio.CancelScope()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: str | os.PathLike[str],
        header: JobHeader | None,
        *,
        checkpoint_interval: float = 1.0,
        sidecar: bool = False,
        buffer: int = 1024,
        drain_timeout: float = _DEFAULT_DRAIN_TIMEOUT,
    ) -> AsyncIterator[LedgerWriter]:
        """Open the ledger at `path` for a run, appending `header`'s ``job`` record.

        `header` None appends to an existing ledger without starting a run (for tools that
        add lifecycle events).  With `sidecar`, full service responses of outcomes go to
        ``<path>.responses.jsonl``.  On exit every record handed over is written and the
        files are fsynced, even when the surrounding scope is cancelled (waiting at most
        `drain_timeout` seconds for that).  A failed write raises LedgerWriteError here
        and from every later call.
        """
        if checkpoint_interval < 0 or math.isnan(checkpoint_interval):
            raise ValueError("checkpoint_interval must be >= 0")
        p = os.fspath(path)
        if header is None and not os.path.exists(p):
            raise LedgerError(f"ledger {p} does not exist")
        fd, new = _open_append(p)
        sidecar_fd: int | None = None
        try:
            if not _try_lock(fd):
                raise LedgerError(
                    f"ledger {p} is in use by another process (is the job already running?)"
                )
            if not new:
                _cut_incomplete_tail(p)
            if sidecar:
                side = sidecar_path(p)
                sidecar_fd, side_new = _open_append(side)
                if not side_new:
                    _cut_incomplete_tail(side)
            writer = cls(p, fd, sidecar_fd, buffer, checkpoint_interval)
            if header is not None:
                try:
                    writer._write(fd, _dumps(header.to_record()))
                except OSError as exc:
                    raise writer._fail(exc, p) from exc
                writer._written += 1
                writer._dirty = True
            if new:
                await anyio.to_thread.run_sync(_fsync_directory, p)
            # anyio wraps an exception of the body in an ExceptionGroup when it leaves the
            # task group; callers get it unwrapped, as from any other context manager.
            body_error: BaseException | None = None
            try:
                async with anyio.create_task_group() as tg:
                    await tg.start(writer._run)
                    tg.start_soon(writer._tick)
                    try:
                        yield writer
                    except BaseException as exc:
                        body_error = exc
                        raise
                    finally:
                        writer._closed = True
                        writer._wake.set()
                        writer._ticker.cancel()
                        await writer._drain(drain_timeout)
            except BaseExceptionGroup as group:
                if body_error is None or group.exceptions != (body_error,):
                    raise
            if body_error is not None:
                raise body_error
            if writer._failed is not None:
                raise writer._error()
        finally:
            if sidecar_fd is not None:
                os.close(sidecar_fd)
            os.close(fd)  # also releases the lock

    async def _drain(self, timeout: float) -> None:
        """Wait for the writer task to write everything queued, even when cancelled."""
        with anyio.CancelScope(shield=True) as drain:
            drain.deadline = anyio.current_time() + timeout
            await self._done.wait()
        if drain.cancelled_caught:
            self._scope.cancel()
            if self._failed is None:
                self._failed = LedgerWriteError(
                    f"cannot finish writing ledger {self.path}: the disk did not answer "
                    f"within {timeout:g} seconds"
                )

    # -- producers --------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Ledger records handed to the operating system so far, the job record included."""
        return self._written

    @property
    def failed(self) -> BaseException | None:
        """The error that stopped the writer, if one did."""
        return self._failed

    async def intent(self, item_id: str, line: int, loop_name: str) -> None:
        """Record that a call for `item_id` is about to be sent; return once it is written.

        Written means handed to the operating system, so the record survives the process
        being killed from then on.
        """
        record = {
            "event": "intent",
            "id": item_id,
            "line": line,
            "loop_name": loop_name,
            "at": utc_timestamp(),
        }
        data = _dumps(record)
        if not self._write_now(data, None):
            await self._wait(_Waiter(data, False))

    async def outcome(self, outcome: Outcome) -> None:
        """Write `outcome`'s record (and its response, for the sidecar) or queue it; waits
        only for room in the queue.

        An outcome in the ledger implies its response line is in the sidecar: the sidecar
        line is written first.
        """
        line = _dumps(outcome_record(outcome))
        if outcome.response is not None and self._sidecar_fd is not None:
            response = {
                "id": outcome.id,
                "loop_name": outcome.loop_name,
                "response": outcome.response,
            }
            pair = (_dumps(response), line)
            if not self._write_now(line, pair[0]):
                await self._put(pair)
        elif not self._write_now(line, None):
            await self._put(line)

    async def record(self, record: Mapping[str, Any]) -> None:
        """Queue any other record (``summary``, ``loop_status``...); ``at`` is added if missing."""
        event = record.get("event")
        if not isinstance(event, str) or not event:
            raise ValueError("a ledger record needs an 'event' string")
        full = {"event": event, **record}
        if "at" not in full:
            full["at"] = utc_timestamp()
        await self._put(_dumps(full))

    async def checkpoint(self) -> None:
        """Write everything queued so far and fsync it; return once it is on disk."""
        await self._wait(_Waiter(None, True))

    def _write_now(self, line: bytes, response: bytes | None) -> bool:
        """Append a record from the calling task if nothing is queued ahead of it.

        False: records are queued (or the writer is closed); hand this one over as well.
        """
        if self._failed is not None:
            raise self._error()
        if self._queue or self._waiting or self._closed:
            return False
        target = self.path
        try:
            if response is not None:
                assert self._sidecar_fd is not None
                target = sidecar_path(self.path)
                self._write(self._sidecar_fd, response)
                target = self.path
            self._write(self._fd, line)
        except OSError as exc:
            self._fail(exc, target)
            raise self._error() from None
        self._written += 1
        self._dirty = True
        if self._interval <= 0:  # every record is to be synced soon: the writer does it
            self._sync_due = True
            self._wake.set()
        return True

    async def _put(self, message: _Message) -> None:
        if self._failed is not None:
            raise self._error()
        if self._closed:
            raise LedgerError(f"the writer of ledger {self.path} is closed")
        self._wake.set()
        if not self._waiting and len(self._queue) < self._buffer:
            self._queue.append(message)
            return
        # The queue is full: wait, in order, until the writer takes this record.
        entry = (message, anyio.Event())
        self._waiting.append(entry)
        try:
            await entry[1].wait()
        except BaseException:
            if entry in self._waiting:  # not taken: withdrawn, never written
                self._waiting.remove(entry)
            raise

    async def _wait(self, waiter: _Waiter) -> None:
        await self._put(waiter)
        await waiter.event.wait()
        if waiter.error is not None:
            raise self._error()

    def _error(self) -> LedgerWriteError:
        """A fresh exception for one caller (one instance raised in many tasks would
        accumulate their tracebacks)."""
        assert self._failed is not None
        error = LedgerWriteError(str(self._failed))
        error.__cause__ = self._failed.__cause__
        return error

    # -- the writer task --------------------------------------------------------------

    def _write(self, fd: int, data: bytes) -> None:
        """Append `data` with as many ``os.write`` calls as it takes."""
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            if n <= 0:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            view = view[n:]

    def _fail(self, exc: OSError, path: str) -> LedgerWriteError:
        if self._failed is None:
            self._failed = LedgerWriteError(
                f"cannot write ledger file {path}: {exc.strerror or exc}; the job stopped. "
                "Free the space or fix the disk, then run the same command to resume"
            )
            self._failed.__cause__ = exc
        return self._failed

    async def _sync(self) -> None:
        """fsync the sidecar, then the ledger."""
        for fd, path in ((self._sidecar_fd, sidecar_path(self.path)), (self._fd, self.path)):
            if fd is None:
                continue
            try:
                await anyio.to_thread.run_sync(os.fsync, fd, abandon_on_cancel=True)
            except OSError as exc:
                if exc.errno == errno.EINVAL and not self._regular:
                    continue  # a device or pipe: nothing to sync
                self._fail(exc, path)
                return
        self._dirty = False
        self._last_sync = time.monotonic()

    async def _run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # Shielded: records already handed over are written even when the job is cancelled.
        # The loop ends once `open` closes the writer and the queue is empty; `open` cancels
        # this scope only if draining takes longer than its timeout.
        with self._scope:
            task_status.started()
            try:
                while True:
                    if self._queue or self._waiting:
                        await self._handle(self._take())
                    elif self._sync_due:
                        self._sync_due = False
                        await self._handle([])
                    elif self._closed:
                        break
                    else:
                        self._wake = anyio.Event()
                        await self._wake.wait()
                if self._dirty:
                    await self._sync()  # after a failure too: what was written is worth keeping
            finally:
                self._done.set()

    def _take(self) -> list[_Message]:
        """Everything queued, then the records of producers waiting for room (in order)."""
        batch = list(self._queue)
        self._queue.clear()
        while self._waiting:
            message, taken = self._waiting.popleft()
            batch.append(message)
            taken.set()
        return batch

    async def _handle(self, batch: list[_Message]) -> None:
        lines: list[bytes] = []
        responses: list[bytes] = []
        waiters: list[_Waiter] = []
        sync = False
        for message in batch:
            if type(message) is bytes:
                lines.append(message)
            elif type(message) is tuple:
                responses.append(message[0])
                lines.append(message[1])
            elif isinstance(message, _Waiter):
                if message.line is not None:
                    lines.append(message.line)
                sync = sync or message.sync
                waiters.append(message)
        if self._failed is None:
            target = self.path
            try:
                if responses:
                    assert self._sidecar_fd is not None
                    target = sidecar_path(self.path)
                    self._write(self._sidecar_fd, b"".join(responses))
                    target = self.path
                if lines:
                    self._write(self._fd, b"".join(lines))
                    self._written += len(lines)
                    self._dirty = True
            except OSError as exc:
                self._fail(exc, target)
        # Intents are durable against a crash of this process now: wake them before fsync.
        for waiter in waiters:
            if not waiter.sync:
                waiter.error = self._failed
                waiter.event.set()
        if (
            self._failed is None
            and self._dirty
            and (sync or time.monotonic() - self._last_sync >= self._interval)
        ):
            await self._sync()
        for waiter in waiters:
            if waiter.sync:
                waiter.error = self._failed
                waiter.event.set()

    async def _tick(self) -> None:
        """Wake the writer to fsync when records have waited about one interval."""
        interval = self._interval
        if interval <= 0 or math.isinf(interval):
            return  # every batch syncs, or only checkpoints and the end do
        with self._ticker:
            while True:
                delay = interval
                if self._dirty:
                    delay = max(0.001, self._last_sync + interval - time.monotonic())
                await anyio.sleep(delay)
                if self._dirty and self._failed is None:
                    self._sync_due = True
                    self._wake.set()
