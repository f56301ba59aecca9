"""A long-lived submitter for a service: `Submitter` sends items one at a time, exactly once.

A job reads a manifest to its end; a service receives items one by one, for months.  A
`Submitter` opens once what a job opens for a run, in the same order (the ledger's lock,
then the ledger read under it, the clients, the meters and rate control, the ledger writer),
and decides and sends each item it is handed through the job's own plan rule
(`Planner.decide`) and send (`ItemSender.send`):

* One loop per id, whoever asks.  The first `submit` of an id sends it; a `submit` of an id
  in flight awaits that send's outcome and never sends again; an id whose outcome is known
  (this process decided it, or the ledger had it when the service started) is answered
  without any call.  The send runs in the Submitter's own task group, so a caller's
  cancellation stops only that caller's wait: the call completes and is recorded.
* Backpressure: a new send waits for a slot of the in-flight cap (`meters.cap.limit`, the
  job's rate x latency rule or `concurrency`), so callers wait instead of queueing.
* Bounded memory: per id only the ledger index's `IdTable` entry (12 to 19 bytes), plus a
  small cache of recent outcomes (`recent`) and one entry per send in flight.

The ledger index keeps states, not ARNs: an answer from the ledger is rebuilt from the id's
deterministic loop name (`Planner.namer`) and the flow definition's partition, region and
account (`arn:aws:sagemaker:REGION:ACCOUNT:human-loop/NAME`), with ``attempts=0`` and an
empty ``at``.  It names the loop of the content submitted now: an id is the item's key.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import anyio
import anyio.to_thread
import orjson
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from ._aws import A2I_SERVICE, versions
from ._aws import open_clients as _open_clients
from ._calls import Caller
from ._counters import Counters
from ._errors import A2IBatchError, ConfigError, JobAborted, LedgerWriteError, SourceError, setting
from ._idtable import digest
from ._job import Summary, as_async, job_planner
from ._log import get_logger
from ._meters import Meters
from ._models import MAX_INPUT_CONTENT_CHARS, ErrorInfo, Invalid, Item, Outcome, S3Ref, Status
from ._plan import Planner, Resend, Skip
from ._preflight import preflight
from ._retry import RetryPolicy
from ._sender import ItemSender, invalid_outcome
from ._settings import SubmitSettings
from ._tasks import RequestOptions, TaskAdapter, adapter_for
from .ledger import JobHeader, LedgerIndex, LedgerWriter, LocalStore, read_ledger
from .ledger._index import INVALID_VALUE, PENDING, STATE_MASK, STATE_VALUES, UNVERIFIED_VALUE
from .manifest import MAX_ID_CHARS

log = get_logger()

#: outcomes of recent sends kept whole (ARN, activation, error) for repeats of their ids
DEFAULT_RECENT: Final = 1024
Items = Iterable[Item] | AsyncIterable[Item]
_SKIPPED: Final = {
    Skip.DONE: ("skipped", None),
    Skip.FAILED: ("skipped_failed", Status.FAILED),
    Skip.NAME_TAKEN: ("skipped_name_taken", Status.NAME_TAKEN),
}


@dataclass(frozen=True)
class SubmitterStats:
    """A Submitter's figures at one moment, for a health endpoint or metrics.

    `counts` are the summary's counters since the Submitter opened (``started``,
    ``failed``, ``skipped`` for answers without a call, ``calls``, ``throttled`` ...).
    """

    counts: Mapping[str, Any]
    in_flight: int  # sends under way
    waiting: int  # callers waiting for a slot of the in-flight cap
    concurrency: int  # the in-flight cap now
    rate: float  # the start API's current request rate (requests/second)
    paused: bool  # the in-progress loop quota is full: sends wait
    unreachable: bool  # the endpoint does not answer: sends wait
    shared: int  # submits that awaited another caller's send of the same id
    ledger_ids: int  # ids in the ledger index
    index_bytes: int  # memory of the ledger index
    uptime: float  # seconds since the Submitter opened

    def as_dict(self) -> dict[str, Any]:
        """One flat, JSON-ready mapping."""
        live = {k: v for k, v in vars(self).items() if k != "counts"}
        return {**self.counts, **live}


class _Entry:
    """One send in flight: its callers wait for `done`."""

    __slots__ = ("done", "error", "outcome")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None

    async def result(self) -> Outcome | None:
        """The outcome; None when the first caller left before the send began."""
        await self.done.wait()
        if self.error is not None:
            raise _fresh(self.error)
        return self.outcome


class Submitter:
    """Send items to A2I from a long-running service, exactly once per item id.

    ``async with Submitter(settings) as submitter: outcome = await submitter.submit(item)``
    from any number of tasks.  `settings` are a job's (`SubmitSettings`); `manifest`,
    `max_failures` and `max_failure_ratio` are not used.  `session` is your own
    `aioboto3.Session`; `recent` is how many recent outcomes are kept whole.  Closing
    lets the calls in flight finish (within `grace_period`), then syncs the ledger.
    """

    def __init__(
        self,
        settings: SubmitSettings,
        *,
        session: Any | None = None,
        retry_policy: RetryPolicy | None = None,
        recent: int = DEFAULT_RECENT,
    ) -> None:
        if str(settings.ledger).startswith("s3://") or getattr(settings, "shards", 1) > 1:
            raise ConfigError(
                f"a Submitter writes one local ledger file: give {setting('ledger')} as a file "
                f"path, without {setting('shards')}"
            )
        self.settings = settings
        self.adapter: TaskAdapter = adapter_for(settings.task)
        self.policy = retry_policy or RetryPolicy(max_attempts=settings.max_attempts)
        self.counters = Counters()
        self.meters = Meters(
            self.counters,
            ceiling=settings.rate,
            concurrency=settings.concurrency,
            quota_pause=settings.quota_pause,
            quota_wait_limit=settings.quota_wait_limit,
            outage_limit=settings.outage_limit,
            primary=self.adapter.operation,
        )
        self._session = session
        self._recent: OrderedDict[str, Outcome] = OrderedDict()
        self._recent_size = max(0, recent)
        self._flight: dict[str, _Entry] = {}
        self._arn_prefix = _arn_prefix(settings.flow_definition_arn)
        self._state = "new"  # -> open -> closing -> closed
        self._stack: AsyncExitStack | None = None
        self._index = LedgerIndex(str(settings.ledger))
        self._planner: Planner | None = None
        self._slots: anyio.CapacityLimiter | None = None
        self._tasks: TaskGroup | None = None
        self._writer: LedgerWriter | None = None
        self._sender: ItemSender | None = None
        self._failed: LedgerWriteError | None = None
        self._sending = 0
        self._idle = anyio.Event()
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
        log.info("submitter_open", ledger=str(self.settings.ledger), ids=len(self._index))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _open(self, stack: AsyncExitStack) -> None:
        s = self.settings
        store = LocalStore(s.ledger)
        files = await stack.enter_async_context(
            store.run(sidecar=self.adapter.service != A2I_SERVICE)
        )
        if files.ledger.tightened:
            log.warning("ledger_mode_tightened", ledger=store.label, mode="0600")
        index = await anyio.to_thread.run_sync(read_ledger, files.ledger, abandon_on_cancel=True)
        index.check_compatible(s.task, s.flow_definition_arn, s.name_prefix)
        if index.repaired_bytes:
            log.warning("ledger_tail_cut", ledger=store.label, bytes=index.repaired_bytes)
        self._index = index
        caller = Caller(self.meters, self.policy)
        pool = max(s.concurrency or 0, 1024)
        services = {service: pool for service in (self.adapter.service, A2I_SERVICE)}
        clients = await _open_clients(stack, s.aws, self._session, services)
        if s.preflight:
            report = await preflight(
                s, session=self._session, items=None, buckets=(), caller=caller
            )
            for warning in report.warnings:
                log.warning("preflight", detail=warning)
        header = JobHeader(
            task=s.task,
            flow_definition_arn=s.flow_definition_arn,
            name_prefix=s.name_prefix,
            manifest="<submitter>",
            versions=versions(),
        )
        self._writer = await stack.enter_async_context(
            LedgerWriter.open(
                files.ledger,
                header,
                sidecar=files.sidecar,
                checkpoint_interval=s.checkpoint_interval,
                after_sync=files.after_sync,
            )
        )
        options = RequestOptions(s.flow_definition_arn, s.content_classifiers, s.feature_types)
        self._sender = ItemSender(
            adapter=self.adapter, clients=clients, writer=self._writer, caller=caller,
            options=options,
        )  # fmt: skip
        slots = self._slots = anyio.CapacityLimiter(self.meters.cap.limit)
        self.meters.cap.on_change = lambda limit: setattr(slots, "total_tokens", limit)
        stack.push_async_callback(self._write_summary)
        self._tasks = await stack.enter_async_context(anyio.create_task_group())

    async def aclose(self) -> None:
        """Take no new items, let the sends in flight finish within `grace_period` (then
        cancel them: their intents stay pending and a restart checks them), write the
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
            # What is left: sends past the grace period and submit_many feeders.
            self._tasks.cancel_scope.cancel()
        finally:
            try:
                await stack.aclose()
            finally:
                self._state = "closed"
                log.info("submitter_closed", **self.counters.as_dict())

    async def _write_summary(self) -> None:
        if self._writer is None or self._failed is not None or self._writer.failed:
            return
        elapsed = time.monotonic() - self._opened_at
        summary = Summary(str(self.settings.ledger), self.settings.task.value,
                          self.counters.as_dict(), elapsed)  # fmt: skip
        with anyio.CancelScope(shield=True):
            await self._writer.record(summary.to_record())

    # -- submitting ---------------------------------------------------------------------

    async def submit(self, item: Item) -> Outcome:
        """The outcome of `item`: sent now, awaited from a send in flight, or known.

        Per-item problems are outcomes (``failed``, ``invalid`` ...), never raised.  Raises
        `JobAborted` for what stops every item (access denied, an endpoint unreachable for
        `outage_limit`; later items may succeed once it clears) and when the Submitter
        is closed, `LedgerWriteError` once the ledger cannot be written.
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
            decision = self._decide(item)
            if isinstance(decision, Outcome):
                return decision
            if isinstance(decision, Invalid):
                return await self._record_invalid(invalid_outcome(decision))
            entry = self._flight[item_id] = _Entry()
            slots = self._slots
            assert slots is not None and self._tasks is not None
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
            self._tasks.start_soon(self._send, entry, item, *decision)
            outcome = await entry.result()
            assert outcome is not None
            return outcome

    async def submit_many(self, items: Items) -> AsyncIterator[Outcome]:
        """Submit every item of `items` (an iterable or async iterable), at most the
        in-flight cap at a time, and yield outcomes as they are decided (in any order).

        Leaving the loop early stops reading `items`; sends already begun still finish and
        are recorded.  An error of your iterable is raised as `SourceError`.
        """
        self._check_open()
        assert self._tasks is not None
        send, receive = anyio.create_memory_object_stream[Outcome | BaseException](0)
        self._tasks.start_soon(self._feed, items, send)
        async with receive:
            async for result in receive:
                if isinstance(result, BaseException):
                    raise result
                yield result

    async def _feed(
        self, items: Items, send: MemoryObjectSendStream[Outcome | BaseException]
    ) -> None:
        """Read `items` and submit each, for `submit_many` (in the Submitter's task group:
        it never raises; every error goes to the iterating caller)."""
        limiter = anyio.CapacityLimiter(max(1, self.meters.cap.limit))

        async def one(item: Item, token: object) -> None:
            try:
                result: Outcome | BaseException = await self.submit(item)
            except Exception as exc:
                result = exc
            finally:
                limiter.release_on_behalf_of(token)
            try:
                await send.send(result)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                tg.cancel_scope.cancel()  # the caller left the loop

        try:
            async with send, anyio.create_task_group() as tg:
                try:
                    async for entry in as_async(items):
                        if not isinstance(entry, Item):
                            raise TypeError("submit_many takes a2ibatch.Item values")
                        token = object()
                        await limiter.acquire_on_behalf_of(token)
                        tg.start_soon(one, entry, token)
                except Exception as exc:
                    error = SourceError(
                        f"the source of items raised {type(exc).__name__}; the outcomes "
                        "decided so far are in the ledger",
                        code="SourceFailed",
                    )
                    error.__cause__ = exc
                    with anyio.move_on_after(self.settings.grace_period):
                        await send.send(error)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def _check_open(self) -> None:
        if self._failed is not None:
            raise _fresh(self._failed)
        if self._state != "open":
            raise JobAborted(
                "the Submitter is not open: use it inside `async with Submitter(settings)`",
                code="SubmitterClosed",
            )

    def _decide(self, item: Item) -> Outcome | Invalid | tuple[str, bool]:
        """An answer without a call, an invalid item, or (loop name, ambiguous) to send."""
        problem = _problem(self.adapter, item)
        if problem is not None:
            return Invalid(item.line, problem, item.id)
        planner = self._planner
        if planner is None or item.name is not None:
            # A job's planner reads the ledger only if it had ids when built, and remembers
            # explicit names to refuse repeats within one manifest, which a service asking
            # again for the same item must not trip over: such items get a planner each.
            planner = job_planner(self.settings, self._index, unique=False)
            if item.name is None and len(self._index):
                self._planner = planner
        decision = planner.decide(item)
        if type(decision) is str or type(decision) is Resend:
            return str(decision), type(decision) is Resend
        if isinstance(decision, Invalid):
            return decision
        assert isinstance(decision, Skip)
        counter, status = _SKIPPED.get(decision, ("skipped", None))
        setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        known = self._recent.get(item.id)
        state = self._index.state(item.id)
        if known is not None and known.status is state:
            return known
        name = item.name or planner.namer.generated(item.id, self.adapter.payload_key(item))
        status = status or state or Status.STARTED
        started = status is Status.STARTED
        error = None
        if not status.done:
            error = ErrorInfo(
                "SkippedEarlier",
                f"the ledger has this item as {status.value}; retry_failed=True sends it again",
            )
        return Outcome(
            id=item.id, line=item.line, status=status, loop_name=name,
            human_loop_arn=self._arn_prefix + name if started else None, error=error,
        )  # fmt: skip

    async def _send(self, entry: _Entry, item: Item, name: str, ambiguous: bool) -> None:
        """One item's send, in the Submitter's task group: never raises but cancellation."""
        assert self._sender is not None and self._slots is not None
        counters = self.counters
        counters.in_flight += 1
        try:
            outcome = await self._sender.send(item, name, ambiguous)
            await self._write(outcome)
        except BaseException as exc:
            # No outcome: the intent (written before the first call) stays pending, and a
            # later submit of the id (or a restart) checks before sending again.
            self._mark(item.id, PENDING)
            if isinstance(exc, LedgerWriteError):
                self._failed = exc
            entry.error = exc
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                entry.error = JobAborted(
                    "the Submitter closed before the call was answered; the item's intent is "
                    "in the ledger, and the next start checks it before sending",
                    code="SubmitterClosed",
                )
                raise
            if not isinstance(exc, Exception):
                raise
        else:
            counters.count(outcome.status)
            self._note(outcome)
            entry.outcome = outcome
        finally:
            counters.in_flight -= 1
            if self._flight.get(item.id) is entry:
                del self._flight[item.id]
            self._slots.release_on_behalf_of(entry)
            self._sending -= 1
            if not self._sending:
                self._idle.set()
            entry.done.set()

    async def _write(self, outcome: Outcome) -> None:
        """Hand `outcome` to the ledger writer and return once it is written (survives
        `kill -9`): the writer appends at once unless records are queued, then it syncs."""
        writer = self._writer
        assert writer is not None
        before = writer.written
        await writer.outcome(outcome)
        if writer.written == before:
            await writer.checkpoint()

    async def _record_invalid(self, outcome: Outcome) -> Outcome:
        await self._write(outcome)
        self.counters.count(Status.INVALID)
        self._note(outcome)
        return outcome

    def _note(self, outcome: Outcome) -> None:
        """Put a decided outcome into the index (as the reader would on a restart) and, with
        its ARN and error, into the cache of recent outcomes."""
        if outcome.id is None:
            return
        table = self._index.table
        key = digest(outcome.id)
        old = table.get(key, 0)
        code = STATE_VALUES[outcome.status.value]
        if code == INVALID_VALUE:
            if old & STATE_MASK:
                return  # an invalid item never undoes its id's real state
            new = old | code
        else:
            new = (old & ~(STATE_MASK | PENDING)) | code
            if code == UNVERIFIED_VALUE:
                new |= PENDING
        table.set(key, new)
        if self._recent_size:
            recent = self._recent
            recent[outcome.id] = outcome
            recent.move_to_end(outcome.id)
            if len(recent) > self._recent_size:
                recent.popitem(last=False)

    def _mark(self, item_id: str, bits: int) -> None:
        key = digest(item_id)
        self._index.table.set(key, self._index.table.get(key, 0) | bits)
        self._recent.pop(item_id, None)

    # -- what a health endpoint reads -----------------------------------------------------

    def stats(self) -> SubmitterStats:
        """The counters and live figures now (cheap: no call, no lock)."""
        c = self.counters
        slots = self._slots
        return SubmitterStats(
            counts=c.as_dict(),
            in_flight=c.in_flight,
            waiting=slots.statistics().tasks_waiting if slots is not None else 0,
            concurrency=self.meters.cap.limit,
            rate=self.meters.rate(self.adapter.operation).rate,
            paused=c.paused,
            unreachable=c.unreachable,
            shared=self._shared,
            ledger_ids=len(self._index),
            index_bytes=self._index.table.nbytes,
            uptime=time.monotonic() - self._opened_at if self._state != "new" else 0.0,
        )

    def instrument(self, meter: Any | None = None) -> None:
        """Report `stats` as OpenTelemetry metrics (observable instruments) on `meter`, or
        on a meter of the global meter provider; needs ``pip install 'a2ibatch[otel]'``."""
        from ._otel import instrument

        instrument(self, meter)


def _arn_prefix(flow_definition_arn: str) -> str:
    """``arn:PARTITION:sagemaker:REGION:ACCOUNT:human-loop/`` of the flow definition's
    partition, region and account: loops live where their flow definition does."""
    parts = flow_definition_arn.split(":", 5)
    if len(parts) != 6 or not all(parts[1:5]):
        raise ConfigError(
            f"{setting('flow_definition_arn')} must be a flow definition ARN "
            "(arn:aws:sagemaker:REGION:ACCOUNT:flow-definition/NAME)"
        )
    return f"arn:{parts[1]}:sagemaker:{parts[3]}:{parts[4]}:human-loop/"


def _problem(adapter: TaskAdapter, item: Item) -> str | None:
    """Why `item` cannot be sent for this task type (the manifest's rules for what an
    `Item` carries), or None.  Reasons never quote a value."""
    if not isinstance(item.id, str) or not item.id or len(item.id) > MAX_ID_CHARS:
        return f"id must be a non-empty string of at most {MAX_ID_CHARS} characters"
    if adapter.service == A2I_SERVICE:
        content = item.input_content
        if not isinstance(content, str) or item.s3 is not None:
            return "a custom task's item needs input_content (a JSON document) and no s3"
        if len(content) > MAX_INPUT_CONTENT_CHARS:
            return f"input content is {len(content)} characters long; the limit is " + str(
                MAX_INPUT_CONTENT_CHARS
            )
        try:
            orjson.loads(content)
        except orjson.JSONDecodeError:
            return "input_content does not hold a JSON document"
    elif not isinstance(item.s3, S3Ref) or item.input_content is not None:
        return f"a {adapter.task.value} task's item needs s3 (an S3Ref) and no input_content"
    return None


def _fresh(error: BaseException) -> BaseException:
    """A copy of one of our errors for one more caller (one instance raised in many tasks
    would gather all their tracebacks); other exceptions as they are."""
    if not isinstance(error, A2IBatchError):
        return error
    try:
        copy = type(error)(error.message, code=error.code)
    except TypeError:
        return error
    copy.__cause__ = error.__cause__
    return copy
