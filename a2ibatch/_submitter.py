"""A long-lived submitter for a service: `Submitter` sends items one at a time, exactly once.

A job reads a manifest to its end; a service receives items one by one, for months.  A
`Submitter` opens once what a job opens for a run, in the same order (the ledger's lock,
the ledger read under it, the clients, the meters and rate control, the ledger writer), and
decides and sends each item through the job's own plan rule (`Planner.decide`) and send
(`ItemSender.send`).  One loop per id, whoever asks: the first `submit` of an id sends it,
a `submit` of an id in flight awaits that send, and an id whose outcome is known (decided
in this process, or in the ledger at start: `_recall`) is answered without a call.  The
send runs in the Submitter's own task group, so a caller's cancellation stops only its
own wait; a new send waits for a slot of the in-flight cap (backpressure, no queue).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import AsyncExitStack, suppress
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from ._aws import A2I_SERVICE, open_clients, versions
from ._calls import Caller
from ._counters import Counters
from ._entries import as_async
from ._errors import ConfigError, JobAborted, LedgerWriteError, SourceError, setting
from ._log import get_logger
from ._meters import InFlightCap, job_meters
from ._models import Invalid, Item, Outcome, Status
from ._pool import WorkerPool
from ._preflight import preflight
from ._quotas import start_at_applied_quota
from ._recall import DEFAULT_RECENT, Recall, SubmitterStats
from ._resuming import read_resumable
from ._retry import RetryPolicy
from ._sender import ItemSender, invalid_outcome
from ._settings import SubmitSettings
from ._summary import Summary
from ._tasks import RequestOptions, TaskAdapter, adapter_for
from .ledger import FileLocation, JobHeader, LedgerIndex, LedgerWriter, LocalStore

log = get_logger()

Items = Iterable[Item] | AsyncIterable[Item]


class _Entry:
    """One send in flight; its callers wait for `done`."""

    __slots__ = ("done", "error", "outcome")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None

    async def result(self) -> Outcome | None:
        """The outcome; None when the first caller left before the send began."""
        await self.done.wait()
        if self.error is not None:  # a copy each: one raised in many tasks gathers them all
            raise copy.copy(self.error) from self.error.__cause__
        return self.outcome


class Submitter:
    """Send items to A2I from a long-running service, exactly once per item id.

    ``async with Submitter(settings) as submitter: outcome = await submitter.submit(item)``
    from any number of tasks (open and close it in one task, as ``async with`` does).
    `settings` are a job's; `manifest`, `max_failures` and `max_failure_ratio` are not
    used.  `session` is your own `aioboto3.Session`; `recent` is how many recent outcomes
    are kept whole.  Closing lets the calls in flight finish within `grace_period`, writes
    a summary record and syncs the ledger.
    """

    def __init__(
        self,
        settings: SubmitSettings,
        *,
        session: Any | None = None,
        retry_policy: RetryPolicy | None = None,
        recent: int = DEFAULT_RECENT,
    ) -> None:
        ledger = str(settings.ledger)
        local_file = not ledger.startswith("s3://") and not ledger.endswith("/")
        several = len(settings.flow_definition_arns) > 1  # one Submitter (and ledger) a region
        if not local_file or os.path.isdir(ledger) or settings.shards > 1 or several:
            raise ConfigError(
                f"a Submitter writes one local ledger file: give {setting('ledger')} as a file "
                f"path (not a directory or an S3 prefix), without {setting('shards')}, and "
                f"one {setting('flow_definition_arn')}"
            )
        self.settings = settings
        self.adapter: TaskAdapter = adapter_for(settings.task)
        self.policy = retry_policy or RetryPolicy(max_attempts=settings.max_attempts)
        self.counters = Counters()
        self.meters = job_meters(settings, self.counters, self.adapter.operation)
        self._session = session
        self._recall = Recall(settings, self.adapter, LedgerIndex(ledger), recent)
        self._flight: dict[str, _Entry] = {}  # id -> its send in flight
        self._state = "new"  # -> opening -> open -> closing -> closed
        self._stack: AsyncExitStack | None = None
        self._slots: anyio.CapacityLimiter | None = None
        self._tasks: TaskGroup | None = None
        self._writer: LedgerWriter | None = None
        self._sender: ItemSender | None = None
        self._failed: LedgerWriteError | None = None
        self._sending = 0
        self._idle: anyio.Event | None = None
        self._shared = 0
        self._opened_at = time.monotonic()

    # -- opening and closing ------------------------------------------------------------

    async def __aenter__(self) -> Submitter:
        if self._state != "new":
            raise ConfigError("a Submitter opens once: make a new one to open again")
        self._state = "opening"
        try:
            async with AsyncExitStack() as stack:
                await self._open(stack)
                self._stack = stack.pop_all()
        except BaseException:
            self._state = "closed"
            raise
        self._state = "open"
        self._opened_at = time.monotonic()
        log.info("submitter_open", ledger=str(self.settings.ledger), ids=len(self._recall.index))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _open(self, stack: AsyncExitStack) -> None:
        """A job's set-up, in a job's order: lock, read, check, clients, preflight, writer."""
        s = self.settings
        store = LocalStore(s.ledger)
        sidecar = self.adapter.service != A2I_SERVICE
        files = await stack.enter_async_context(store.run(sidecar=sidecar))
        if files.ledger.tightened:
            log.warning("ledger_mode_tightened", ledger=store.label, mode="0600")
        # Through the ledger's resume point: a service restarted after months need not read
        # tens of millions of records before its first answer.
        location = FileLocation(str(s.ledger))
        index, resumption = await read_resumable(
            s, location, files.ledger, self.counters, items=True
        )
        index.check_compatible(s.task, s.flow_definition_arn, s.name_prefix)
        if index.repaired_bytes:
            log.warning("ledger_tail_cut", ledger=store.label, bytes=index.repaired_bytes)
        self._recall.index = index  # nothing was decided yet: nothing else to update
        caller = Caller(self.meters, self.policy)
        pool = max(s.concurrency or 0, 1024)
        services = dict.fromkeys((self.adapter.service, A2I_SERVICE), pool)
        clients = await open_clients(stack, s.aws, self._session, services)
        start_at_applied_quota(self.meters, s, self._session, self.adapter.operation, self.policy)
        if s.preflight:  # the flow definition and work team; no items, so no cost estimate
            session = self._session
            report = await preflight(s, session=session, items=None, buckets=(), caller=caller)
            for warning in report.warnings:
                log.warning("preflight", detail=warning)
        arn = s.flow_definition_arns[0]
        header = JobHeader(s.task, arn, s.name_prefix, "<submitter>", versions())
        self._writer = await stack.enter_async_context(
            LedgerWriter.open(
                files.ledger,
                header,
                sidecar=files.sidecar,
                checkpoint_interval=s.checkpoint_interval,
                after_sync=files.after_sync,
            )
        )
        if resumption is not None:  # saved every resume_interval, and at the close
            await stack.enter_async_context(resumption.keeping(self._writer))
        options = RequestOptions(arn, s.content_classifiers, s.feature_types)
        self._sender = ItemSender(
            adapter=self.adapter, clients=clients, writer=self._writer, caller=caller,
            options=options,
        )  # fmt: skip
        slots = self._slots = anyio.CapacityLimiter(self.meters.cap.limit)
        self.meters.cap.on_change = lambda limit: setattr(slots, "total_tokens", limit)
        stack.push_async_callback(self._write_summary)  # after the tasks, before the writer
        self._tasks = await stack.enter_async_context(anyio.create_task_group())

    async def aclose(self) -> None:
        """Take no new items, let the sends in flight finish within `grace_period` (then
        cancel them: their intents stay pending, and the next start checks them), write the
        summary and sync the ledger.  Idempotent."""
        if self._state != "open":
            return
        self._state = "closing"
        stack, self._stack = self._stack, None
        assert stack is not None and self._tasks is not None
        try:
            with anyio.CancelScope(shield=True) as drain:
                drain.deadline = anyio.current_time() + self.settings.grace_period
                while self._sending:
                    self._idle = anyio.Event()
                    await self._idle.wait()
            if self._sending:
                log.warning("submitter_grace_expired", in_flight=self._sending)
            self._tasks.cancel_scope.cancel()  # sends past the grace; submit_many's readers
        finally:
            try:
                await stack.aclose()
            finally:
                self._state = "closed"
                log.info("submitter_closed", **self.counters.as_dict())

    async def _write_summary(self) -> None:
        writer, s, elapsed = self._writer, self.settings, time.monotonic() - self._opened_at
        if writer is not None and writer.failed is None:
            summary = Summary(str(s.ledger), s.task.value, self.counters.as_dict(), elapsed)
            with anyio.CancelScope(shield=True):
                await writer.record(summary.to_record())

    # -- submitting ---------------------------------------------------------------------

    async def submit(self, item: Item) -> Outcome:
        """The outcome of `item`: sent now, awaited from a send in flight, or known.

        Per-item problems are outcomes (``failed``, ``invalid`` ...), never raised.  Raises
        `JobAborted` for what stops every item (access denied, an endpoint unreachable for
        `outage_limit`: later items may succeed once it clears) and when the Submitter is
        closed, `LedgerWriteError` once the ledger cannot be written.
        """
        if type(item) is not Item:
            raise TypeError(f"submit takes an a2ibatch.Item, not {type(item).__name__}")
        item_id = item.id
        while True:
            self._check_open()
            entry = self._flight.get(item_id)
            if entry is not None:
                self._shared += 1
                outcome = await entry.result()
                if outcome is not None:
                    return outcome
                continue  # its first caller left before sending: decide afresh
            decision = self._recall.decide(item, self.counters)
            if isinstance(decision, Outcome):
                return decision
            if isinstance(decision, Invalid):
                outcome = invalid_outcome(decision)
                await self._write(outcome)
                self.counters.count(Status.INVALID)
                self._recall.note(outcome)
                return outcome
            entry = self._flight[item_id] = _Entry()
            slots, tasks = self._slots, self._tasks
            assert slots is not None and tasks is not None
            acquired = False
            try:
                await slots.acquire_on_behalf_of(entry)
                acquired = True
                self._check_open()
            except BaseException:
                # Cancelled while waiting for a slot, or closed meanwhile: nothing was sent.
                if self._flight.get(item_id) is entry:
                    del self._flight[item_id]
                entry.done.set()  # callers that joined decide afresh
                if acquired:
                    slots.release_on_behalf_of(entry)
                raise
            self._sending += 1
            tasks.start_soon(self._send, entry, item, *decision)
            outcome = await entry.result()
            assert outcome is not None
            return outcome

    async def submit_many(self, items: Items) -> AsyncIterator[Outcome]:
        """Submit every item of `items` (an iterable or async iterable), at most the
        in-flight cap at a time, and yield each outcome as it is decided (in any order).

        Leaving the loop early stops reading `items`; sends already begun still finish and
        are recorded.  An error of your iterable is raised as `SourceError`.
        """
        self._check_open()
        assert self._tasks is not None
        send, receive = anyio.create_memory_object_stream[Outcome | BaseException](0)
        read_all = anyio.Event()
        self._tasks.start_soon(self._feed, items, send, read_all)
        async with receive:
            async for result in receive:
                if isinstance(result, BaseException):
                    raise result
                yield result
        if not read_all.is_set():  # the Submitter closed while items were still read
            self._check_open()
            raise JobAborted(
                "the Submitter closed before every item was read", code="SubmitterClosed"
            )

    async def _feed(
        self, items: Items, send: MemoryObjectSendStream[Outcome | Exception], read_all: anyio.Event
    ) -> None:
        """`submit_many`'s reader, in the Submitter's task group: a pool as large as the
        in-flight cap submits the items.  It never raises: errors go to the caller."""
        entries = aiter(as_async(items))

        async def take() -> Item | None:
            entry = await anext(entries, None)
            if entry is not None and not isinstance(entry, Item):
                raise TypeError("submit_many takes a2ibatch.Item values")
            return entry

        async def work(item: Item) -> None:
            try:
                result: Outcome | Exception = await self.submit(item)
            except Exception as exc:
                result = exc
            await send.send(result)

        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):  # caller left
            async with send:
                try:
                    await WorkerPool(InFlightCap(max(1, self.meters.cap.limit)), take, work).run()
                    read_all.set()
                except Exception as exc:
                    if isinstance(exc, anyio.BrokenResourceError | anyio.ClosedResourceError):
                        raise
                    name = type(exc).__name__
                    error = SourceError(f"the source of items raised {name}", code="SourceFailed")
                    error.__cause__ = exc
                    read_all.set()
                    await send.send(error)

    def _check_open(self) -> None:
        if self._failed is not None:  # a fresh error each time: none gathers tracebacks
            raise LedgerWriteError(self._failed.message) from self._failed.__cause__
        if self._state != "open":
            raise JobAborted(
                "the Submitter is not open: use it inside `async with Submitter(settings)`",
                code="SubmitterClosed",
            )

    async def _send(self, entry: _Entry, item: Item, name: str, ambiguous: bool) -> None:
        """One item's send, in the Submitter's task group: it raises only cancellation."""
        assert self._sender is not None and self._slots is not None
        counters = self.counters
        counters.in_flight += 1
        try:
            outcome = await self._sender.send(item, name, ambiguous)
            await self._write(outcome)
        except BaseException as exc:
            # No outcome recorded: the intent (written before the first call) is pending,
            # and a later submit of the id, or the next start, checks before sending again.
            self._recall.pending(item.id)
            if isinstance(exc, LedgerWriteError):
                self._failed = exc
            entry.error = exc
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                entry.error = JobAborted(
                    "the Submitter closed before the call was answered; the item's intent is "
                    "in the ledger, and the next start checks it before sending",
                    code="SubmitterClosed",
                )
            if not isinstance(exc, Exception):
                raise
        else:
            counters.count(outcome.status)
            self._recall.note(outcome)
            entry.outcome = outcome
        finally:
            counters.in_flight -= 1
            if self._flight.get(item.id) is entry:
                del self._flight[item.id]
            self._slots.release_on_behalf_of(entry)
            self._sending -= 1
            if not self._sending and self._idle is not None:
                self._idle.set()
            entry.done.set()

    async def _write(self, outcome: Outcome) -> None:
        """Hand `outcome` to the ledger writer; return once it is written (it survives
        ``kill -9``).  The writer appends at once unless records are queued ahead of it
        (`written` did not move): then it is waited for, with the sync that follows."""
        writer = self._writer
        assert writer is not None
        before = writer.written
        await writer.outcome(outcome)
        if writer.written == before:
            await writer.checkpoint()

    # -- what a health endpoint reads -----------------------------------------------------

    def stats(self) -> SubmitterStats:
        """The counters and live figures now (cheap: no call, no lock)."""
        c, slots = self.counters, self._slots
        return SubmitterStats(
            counts=c.as_dict(),
            in_flight=c.in_flight,
            waiting=slots.statistics().tasks_waiting if slots is not None else 0,
            concurrency=self.meters.cap.limit,
            rate=self.meters.rate(self.adapter.operation).rate,
            paused=c.paused,
            unreachable=c.unreachable,
            shared=self._shared,
            recent=self._recall.recent,
            ledger_ids=len(self._recall.index),
            index_bytes=self._recall.index.table.nbytes,
            uptime=time.monotonic() - self._opened_at if self._state != "new" else 0.0,
        )

    @property
    def open(self) -> bool:
        """Whether `submit` takes items now."""
        return self._state == "open"

    def instrument(self, meter: Any | None = None) -> None:
        """Report `stats` as OpenTelemetry metrics (observable instruments) on `meter`, or on
        a meter of the global meter provider; needs ``pip install 'a2ibatch[otel]'``."""
        from ._recall import instrument

        instrument(self, meter)
