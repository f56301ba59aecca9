"""The one writer of a ledger: records in order, durable before the calls that depend on them.

One class, two modes.  A *run* (`header` given) appends its ``job`` record first and writes
intents, outcomes and the summary; it needs the file's exclusive lock, which the caller took
before reading the ledger.  An *append* (no header) adds lifecycle records (``loop_status``,
``loop_action``) beside a run that may be writing the same file; each batch of whole lines is
one ``O_APPEND`` write, which the operating system never interleaves with another writer's.

Durability: every record is handed to the operating system (``write`` has returned) before
the next call that depends on it: `LedgerWriter.intent` returns only after its record is
written, and the runner sends an item's first call only after that.  Killing the process,
even with ``kill -9``, therefore loses nothing that matters: at worst the last line is torn,
and the next reader cuts it off (that record's call was never sent).  The file is fsynced at
most every ``checkpoint_interval`` seconds while records arrive, on `checkpoint` and when the
writer closes, so an operating-system crash or a power loss can lose at most the records of
the last checkpoint interval; the rerun recovers those items through the service, because
loop names are deterministic.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, TypeAlias

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from .._errors import LedgerError, LedgerWriteError
from .._models import Outcome
from ._files import LedgerFile
from ._format import JobHeader, dumps, event_record, intent_line, outcome_record, sidecar_line

__all__ = ["LedgerWriter"]

_DEFAULT_DRAIN_TIMEOUT: Final = 30.0
#: called after each fsync of the ledger (a store that keeps a copy elsewhere uploads then)
SyncHook: TypeAlias = Callable[[], Awaitable[None]]


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


class LedgerWriter:
    """The one writer of a ledger file during a run, or beside one (append mode).

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
        file: LedgerFile,
        sidecar: LedgerFile | None,
        buffer: int,
        checkpoint_interval: float,
        after_sync: SyncHook | None,
    ) -> None:
        self.path = file.path
        self._file = file
        self._sidecar = sidecar
        self._after_sync = after_sync
        self._queue: deque[_Message] = deque()
        self._waiting: deque[tuple[_Message, anyio.Event]] = deque()  # for room, in order
        self._buffer = max(1, buffer)
        self._wake = anyio.Event()  # set when the writer has something to do
        self._sync_due = False
        self._interval = checkpoint_interval
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
        file: LedgerFile,
        header: JobHeader | None,
        *,
        sidecar: LedgerFile | None = None,
        checkpoint_interval: float = 1.0,
        buffer: int = 1024,
        drain_timeout: float = _DEFAULT_DRAIN_TIMEOUT,
        after_sync: SyncHook | None = None,
    ) -> AsyncIterator[LedgerWriter]:
        """Write to the open ledger `file`: a run when `header` is given, else append mode.

        A run needs `file` locked by this process, and the file read (and so repaired)
        under that lock.  With `sidecar`, full service responses of outcomes go there.  On
        exit every record handed over is written and the files are fsynced, even when the
        surrounding scope is cancelled (waiting at most `drain_timeout` seconds for that).
        A failed write raises LedgerWriteError here and from every later call.  The files
        stay open: their opener closes them.
        """
        if checkpoint_interval < 0 or math.isnan(checkpoint_interval):
            raise ValueError("checkpoint_interval must be >= 0")
        if header is not None and not file.locked:
            raise LedgerError(f"ledger {file.path}: a run needs the ledger's lock")
        if header is None and not file.ends_with_newline():
            # Appending now would glue our records to a record still being written (or to
            # a torn one that only the lock's holder may cut).
            raise LedgerError(
                f"ledger {file.path} ends with a partial record while another process writes "
                "it; try again in a moment"
            )
        writer = cls(file, sidecar, buffer, checkpoint_interval, after_sync)
        if header is not None:
            try:
                file.append_all(dumps(header.to_record()))
            except OSError as exc:
                raise writer._fail(exc, file.path) from exc
            writer._written += 1
            writer._dirty = True
        # anyio wraps an exception of the body in an ExceptionGroup when it leaves the task
        # group; callers get it unwrapped, as from any other context manager.
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

    async def _drain(self, seconds: float) -> None:
        """Wait for the writer task to write everything queued, even when cancelled."""
        with anyio.CancelScope(shield=True) as drain:
            drain.deadline = anyio.current_time() + seconds
            await self._done.wait()
        if drain.cancelled_caught:
            self._scope.cancel()
            if self._failed is None:
                self._failed = LedgerWriteError(
                    f"cannot finish writing ledger {self.path}: the disk did not answer "
                    f"within {seconds:g} seconds"
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

    async def intent(
        self, item_id: str, line: int, loop_name: str, region: str | None = None
    ) -> None:
        """Record that a call for `item_id` is about to be sent (to `region`, in a job of
        several regions); return once it is written.

        Written means handed to the operating system, so the record survives the process
        being killed from then on.
        """
        data = intent_line(item_id, line, loop_name, region)
        if not self._write_now(data, None):
            await self._wait(_Waiter(data, False))

    async def outcome(self, outcome: Outcome) -> None:
        """Write `outcome`'s record (and its response, for the sidecar) or queue it; waits
        only for room in the queue.

        An outcome in the ledger implies its response line is in the sidecar: the sidecar
        line is written first.
        """
        line = dumps(outcome_record(outcome))
        if outcome.response is not None and self._sidecar is not None:
            pair = (sidecar_line(outcome), line)
            if not self._write_now(line, pair[0]):
                await self._put(pair)
        elif not self._write_now(line, None):
            await self._put(line)

    async def record(self, record: Mapping[str, Any]) -> None:
        """Queue any other record (``summary``, ``loop_status``...); ``at`` is added if missing."""
        await self._put(dumps(event_record(record.get("event"), record)))  # type: ignore[arg-type]

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
        target = self._file
        try:
            if response is not None:
                assert self._sidecar is not None
                target = self._sidecar
                target.append_all(response)
                target = self._file
            target.append_all(line)
        except OSError as exc:
            self._fail(exc, target.path)
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

    def _fail(self, exc: OSError, path: str) -> LedgerWriteError:
        if self._failed is None:
            self._failed = LedgerWriteError(
                f"cannot write ledger file {path}: {exc.strerror or exc}; the job stopped. "
                "Free the space or fix the disk, then run the same command to resume"
            )
            self._failed.__cause__ = exc
        return self._failed

    async def _sync(self) -> None:
        """fsync the sidecar, then the ledger; then the store's hook (an upload, say)."""
        # Clean from here: a record written while the fsync runs makes the files dirty again,
        # so it gets a sync of its own (clearing the flag after the fsync would lose it).
        self._dirty = False
        for file in (self._sidecar, self._file):
            if file is None:
                continue
            try:
                await anyio.to_thread.run_sync(file.fsync, abandon_on_cancel=True)
            except OSError as exc:
                self._dirty = True
                self._fail(exc, file.path)
                return
        self._last_sync = time.monotonic()
        if self._after_sync is not None:
            await self._after_sync()

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
            target = self._file
            try:
                if responses:
                    assert self._sidecar is not None
                    target = self._sidecar
                    target.append_all(b"".join(responses))
                    target = self._file
                if lines:
                    target.append_all(b"".join(lines))
                    self._written += len(lines)
                    self._dirty = True
            except OSError as exc:
                self._fail(exc, target.path)
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
