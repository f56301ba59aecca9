"""The job loop: read, name, gate on the in-flight cap and the rate, call, retry, record.

One item travels one way: manifest entry -> loop name -> request -> rate gate -> call (the
retry policy decides every retry) -> outcome -> the one ledger writer.  A pool of workers,
as many as the in-flight cap, read the manifest one entry at a time when they are free
(backpressure, as in aiometer), so memory holds at most `concurrency` items whatever the
manifest's size.

Exactly once: an item's loop name is fixed before its first call and an `intent` record
reaches the ledger before the call is sent.  Whenever a call may have taken effect without
our seeing the answer (a lost response, a read timeout, a 5xx, a kill), the next attempt
uses the same name, and a "name in use" answer is reconciled with DescribeHumanLoop instead
of being reported as a failure.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from ._calls import Caller, CallFailed
from ._errors import JobAborted
from ._ledger import LedgerIndex, LedgerWriter, utc_timestamp
from ._models import ErrorInfo, Invalid, Item, Outcome, Status
from ._naming import Namer
from ._rate import DEFAULT_CEILING, ConcurrencyGovernor, RateController, RateSettings
from ._retry import CallError, ErrorKind, RetryEvent, RetryPolicy, fatal_message
from ._tasks import A2I_SERVICE, RequestOptions, TaskAdapter

log = structlog.get_logger("a2ibatch")

DESCRIBE_OPERATION = "DescribeHumanLoop"
MAX_QUOTA_PAUSE = 300.0
#: items in a row whose every attempt failed to connect: the service is out of reach
UNREACHABLE_LIMIT = 5


@dataclass
class Counters:
    """What a run did so far; read by progress displays while the job runs."""

    started: int = 0
    not_activated: int = 0
    failed: int = 0
    invalid: int = 0
    skipped: int = 0  # already done in the ledger
    skipped_failed: int = 0  # failed earlier, not retried without --retry-failed
    recovered: int = 0  # loops found to exist after an ambiguous attempt
    calls: int = 0
    throttled: int = 0
    retries: int = 0
    in_flight: int = 0
    paused: bool = False
    paused_seconds: float = 0.0

    def count(self, status: Status) -> None:
        setattr(self, status.value, getattr(self, status.value) + 1)

    @property
    def decided(self) -> int:
        return self.started + self.not_activated + self.failed + self.invalid

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in ("in_flight", "paused")}


class QuotaPause:
    """The job-wide pause while too many human loops are in progress.

    One item's ServiceQuotaExceeded/HumanLoopQuotaExceeded answer pauses every item: sending
    more would only collect more of the same.  The pause doubles while the quota stays full
    and the job gives up once it has stayed full for `limit` seconds.
    """

    def __init__(self, first: float, limit: float, counters: Counters) -> None:
        self._first = first
        self._limit = limit
        self._counters = counters
        self._wait = first
        self._until = 0.0
        self._full_since: float | None = None

    def trip(self) -> None:
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        if now - self._full_since > self._limit:
            raise JobAborted(
                f"the account's in-progress human loop quota stayed full for "
                f"{self._limit:.0f} s; finish or stop running loops (or raise the quota in "
                "Service Quotas), then rerun the same command to carry on",
                code="ServiceQuotaExceeded",
            )
        if now >= self._until:
            self._until = now + self._wait
            self._wait = min(self._wait * 2, MAX_QUOTA_PAUSE)
            log.warning("quota_pause", seconds=round(self._until - now, 1))

    def clear(self) -> None:
        if self._full_since is not None:
            self._full_since = None
            self._wait = self._first

    async def wait(self) -> None:
        while (delay := self._until - time.monotonic()) > 0:
            self._counters.paused = True
            started = time.monotonic()
            await anyio.sleep(delay)
            self._counters.paused_seconds += time.monotonic() - started
        self._counters.paused = False


@dataclass(frozen=True)
class RunOptions:
    """The runner's share of the settings."""

    options: RequestOptions
    name_prefix: str
    policy: RetryPolicy
    rate_ceiling: float | None
    concurrency: int | None
    retry_failed: bool
    max_failures: int | None
    max_failure_ratio: float | None
    quota_pause: float
    quota_wait_limit: float
    grace_period: float


OutcomeHook = Callable[[Outcome], Awaitable[None]]


@dataclass
class Runner:
    """Runs one job's items to outcomes.  Built and driven by `a2ibatch.Job`."""

    adapter: TaskAdapter
    clients: Mapping[str, Any]  # aiobotocore clients by service name
    writer: LedgerWriter
    index: LedgerIndex
    settings: RunOptions
    on_outcome: OutcomeHook | None = None
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        ceiling = self.settings.rate_ceiling or DEFAULT_CEILING
        self.rates: dict[str, RateController] = {
            op: RateController(RateSettings(ceiling=ceiling))
            for op in (self.adapter.operation, DESCRIBE_OPERATION)
        }
        self._caller = Caller(
            self.settings.policy, rate=ceiling, counts=self.counters, rates=self.rates
        )
        self.governor = ConcurrencyGovernor(None, fixed=self.settings.concurrency)
        self._pause = QuotaPause(
            self.settings.quota_pause, self.settings.quota_wait_limit, self.counters
        )
        self._namer = Namer(
            self.settings.name_prefix,
            self.settings.options.flow_definition_arn,
            self.adapter.task.value,
        )
        self._rng = random.Random()
        self._unreachable = 0  # items in a row that never reached the service
        self._entries: AsyncIterator[Item | Invalid] | None = None
        self._reading = anyio.Lock(fast_acquire=True)  # one reader of the source at a time
        self._exhausted = False
        self._resuming = len(self.index) > 0
        self._workers = 0
        self._tasks: TaskGroup | None = None
        self._stop = anyio.Event()
        self._over = anyio.Event()  # stopped, or every worker has finished
        self._idle = anyio.Event()

    # -- control -------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The current rate of the job's main API."""
        return self.rates[self.adapter.operation].rate

    def stop(self) -> None:
        """Stop reading new items; calls in flight finish within the grace period."""
        self._stop.set()
        self._over.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the loop ------------------------------------------------------------------------

    async def run(self, source: AsyncIterable[Item | Invalid]) -> None:
        """Process every entry of `source`, or until stopped or aborted.

        A pool of worker tasks, as many as the concurrency governor allows, each take the
        next entry from `source` when they are free: an entry is read only when a worker
        can start it (backpressure), and no task is created per item.
        """
        self._entries = aiter(source)
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            self._grow()
            await self._over.wait()
            if self._stop.is_set():
                with anyio.move_on_after(self.settings.grace_period):
                    while self.counters.in_flight:
                        self._idle = anyio.Event()
                        await self._idle.wait()
                tasks.cancel_scope.cancel()

    def _grow(self) -> None:
        """Start workers up to the governor's limit, while there may be entries left."""
        tasks = self._tasks
        assert tasks is not None
        while (
            self._workers < self.governor.limit and not self._exhausted and not self._stop.is_set()
        ):
            self._workers += 1
            tasks.start_soon(self._work)

    async def _work(self) -> None:
        counters = self.counters
        try:
            # A worker above the limit (the governor lowered it) leaves after its item.
            while self._workers <= self.governor.limit:
                taken = await self._next()
                if taken is None:
                    return
                counters.in_flight += 1
                try:
                    await self._process(*taken)
                finally:
                    counters.in_flight -= 1
                    if not counters.in_flight:
                        self._idle.set()
        finally:
            self._workers -= 1
            if not self._workers:
                self._over.set()

    async def _next(self) -> tuple[Item, str] | None:
        """The next item to send and its loop name; None once the source is drained or the
        job stops.  Entries that need no call (invalid, done, failed before) are settled
        here, by whichever worker reads them."""
        entries = self._entries
        assert entries is not None
        async with self._reading:
            while not self._exhausted and not self._stop.is_set():
                try:
                    entry = await anext(entries)
                except StopAsyncIteration:
                    self._exhausted = True
                    break
                if isinstance(entry, Invalid):
                    await self._record(self._invalid(entry.line, entry.id, entry.reason))
                    continue
                state = self.index.state(entry.id) if self._resuming else None
                if state is not None and state.done:
                    self.counters.skipped += 1
                    continue
                if (
                    state is Status.FAILED
                    and not self.settings.retry_failed
                    and not self.index.has_pending_intent(entry.id)  # a retry may have gone
                ):
                    self.counters.skipped_failed += 1
                    continue
                payload = self.adapter.payload_key(entry)
                name, problem = self._namer.name(entry.id, entry.name, payload)
                if problem is not None:
                    await self._record(self._invalid(entry.line, entry.id, problem))
                    continue
                if self._stop.is_set():
                    break  # read while stopping: left for the next run, like any unread entry
                return entry, name
        return None

    async def _process(self, item: Item, name: str) -> None:
        try:
            outcome = await self._submit(item, name)
        except _Unverified as exc:
            info = ErrorInfo("Unverified", f"{exc}; a rerun checks again")
            outcome = self._outcome(item, Status.FAILED, name, 0, error=info)
        await self._record(outcome)

    # -- one item ------------------------------------------------------------------------

    async def _submit(self, item: Item, name: str) -> Outcome:
        adapter = self.adapter
        client = self.clients[adapter.service]
        rate = self.rates[adapter.operation]
        request = adapter.request(item, name, self.settings.options)
        # A call of an earlier run may have reached the service: treat it as ambiguous.
        ambiguous = self.index.has_pending_intent(item.id)
        if not ambiguous:
            await self.writer.intent(item.id, item.line, name)
        attempts = 0
        error: CallError | None = None
        while True:
            if ambiguous and adapter.describe_before_resend:
                found = await self._describe(name)
                if found is not None:
                    return self._reconciled(item, name, found, attempts, None)
            await self._pause.wait()
            await rate.acquire()
            attempts += 1
            self.counters.calls += 1
            sent = time.monotonic()
            try:
                response = await adapter.send(client, request)
            except Exception as exc:
                error = adapter.classify(exc)
            else:
                rate.on_success(time.monotonic() - sent)
                self._pause.clear()
                self._unreachable = 0
                self._resize()
                answer = adapter.read_answer(response)
                return self._outcome(
                    item,
                    answer.status,
                    name,
                    attempts,
                    arn=answer.human_loop_arn,
                    activation=answer.activation,
                    response=answer.response,
                )
            kind = error.kind
            if kind is ErrorKind.FATAL:
                raise JobAborted(fatal_message(error), code=error.code)
            if kind is ErrorKind.NAME_IN_USE:
                return await self._name_in_use(item, name, attempts, ambiguous, error)
            if kind is ErrorKind.ITEM:
                return self._outcome(item, Status.FAILED, name, attempts, error=error.info())
            if kind is ErrorKind.QUOTA:
                attempts -= 1  # a pause for the whole job, not this item's fault
                self._pause.trip()
                continue
            if kind is ErrorKind.THROTTLED:
                self.counters.throttled += 1
                rate.on_throttle(error.retry_after, sent=sent)
            elif kind is ErrorKind.AMBIGUOUS:
                ambiguous = True
            if attempts >= self.settings.policy.max_attempts:
                return await self._give_up(item, name, attempts, ambiguous, error)
            await self._backoff(adapter.operation, attempts, error)

    async def _backoff(self, operation: str, attempts: int, error: CallError) -> None:
        policy = self.settings.policy
        wait = policy.wait(attempts, error, self._rng)
        policy.notify(RetryEvent(operation, attempts, error, wait))
        self.counters.retries += 1
        await anyio.sleep(wait)

    async def _give_up(
        self, item: Item, name: str, attempts: int, ambiguous: bool, error: CallError
    ) -> Outcome:
        if error.kind is ErrorKind.NOT_SENT:
            self._unreachable += 1
            if self._unreachable >= UNREACHABLE_LIMIT:
                raise JobAborted(
                    f"cannot connect to the service ({error.message}); check "
                    "--endpoint-url, --region and the network, then rerun the same command",
                    code="EndpointUnreachable",
                )
        if ambiguous:
            found = await self._describe(name)
            if found is not None:
                return self._reconciled(item, name, found, attempts, None)
        info = ErrorInfo(
            error.code, f"gave up after {attempts} attempts: {error.message}".rstrip(": ")
        )
        return self._outcome(item, Status.FAILED, name, attempts, error=info)

    async def _name_in_use(
        self, item: Item, name: str, attempts: int, ambiguous: bool, error: CallError
    ) -> Outcome:
        found = await self._describe(name)
        # A generated name is a digest of the job and the item: whoever holds it sent this
        # very input under this flow definition, i.e. this job.  An explicit name is ours
        # only if one of our own calls for it may have gone through.
        ours = item.name is None or ambiguous
        if found is not None and ours:
            return self._reconciled(item, name, found, attempts, error)
        if found is None:
            message = (
                f"loop name {name!r} is in use but no such loop can be described "
                f"(deleted?): {error.message}"
            )
        else:
            message = (
                f"loop name {name!r} is already used by a loop this job did not start; "
                "choose another name (for a deliberate second review, a new --name-prefix)"
            )
        info = ErrorInfo("NameInUse", message)
        return self._outcome(item, Status.FAILED, name, attempts, error=info)

    def _reconciled(
        self,
        item: Item,
        name: str,
        found: Mapping[str, Any],
        attempts: int,
        error: CallError | None,
    ) -> Outcome:
        flow = self.settings.options.flow_definition_arn
        if found.get("FlowDefinitionArn") not in (None, flow):
            info = ErrorInfo(
                "NameInUse",
                f"loop name {name!r} belongs to a loop of another flow definition; "
                "use a new --name-prefix",
            )
            return self._outcome(item, Status.FAILED, name, attempts, error=info)
        self.counters.recovered += 1
        return self._outcome(
            item,
            Status.STARTED,
            name,
            attempts,
            arn=found.get("HumanLoopArn"),
            recovered=True,
        )

    async def _describe(self, name: str) -> dict[str, Any] | None:
        """DescribeHumanLoop with retries; None when no such loop exists."""
        client = self.clients[A2I_SERVICE]
        try:
            response: dict[str, Any] = await self._caller.call(
                DESCRIBE_OPERATION, client.describe_human_loop, HumanLoopName=name
            )
        except CallFailed as exc:
            if exc.not_found:
                return None
            raise _Unverified(name, exc.error) from None
        return response

    def _resize(self) -> None:
        rate = self.rates[self.adapter.operation]
        limit = self.governor.limit
        self.governor.update(rate.rate, rate.latency)
        if self.governor.limit > limit:
            self._grow()

    # -- outcomes ------------------------------------------------------------------------

    def _outcome(
        self,
        item: Item,
        status: Status,
        name: str,
        attempts: int,
        *,
        arn: str | None = None,
        activation: Any = None,
        error: ErrorInfo | None = None,
        recovered: bool = False,
        response: dict[str, Any] | None = None,
    ) -> Outcome:
        return Outcome(
            id=item.id,
            line=item.line,
            status=status,
            loop_name=name,
            human_loop_arn=arn,
            activation=activation,
            attempts=attempts,
            error=error,
            recovered=recovered,
            at=utc_timestamp(),
            response=response,
        )

    def _invalid(self, line: int, item_id: str | None, reason: str) -> Outcome:
        return Outcome(
            id=item_id,
            line=line,
            status=Status.INVALID,
            error=ErrorInfo("InvalidInput", reason),
            at=utc_timestamp(),
        )

    async def _record(self, outcome: Outcome) -> None:
        await self.writer.outcome(outcome)
        self.counters.count(outcome.status)
        if outcome.status is Status.FAILED:
            self._check_failures()
        if self.on_outcome is not None:
            await self.on_outcome(outcome)

    def _check_failures(self) -> None:
        failed = self.counters.failed
        limit = self.settings.max_failures
        if limit is not None and failed >= limit:
            raise JobAborted(
                f"{failed} items failed, reaching --max-failures {limit}; the ledger says "
                "why (a2ibatch status LEDGER)",
                code="MaxFailures",
            )
        ratio = self.settings.max_failure_ratio
        decided = self.counters.started + self.counters.not_activated + failed
        enough = ratio is not None and decided >= max(20, math.ceil(1 / ratio))
        if ratio is not None and enough and failed / decided >= ratio:
            raise JobAborted(
                f"{failed} of {decided} items failed ({failed / decided:.0%}), reaching "
                f"--max-failures {ratio:.0%}; the ledger says why",
                code="MaxFailures",
            )


class _Unverified(Exception):
    """DescribeHumanLoop could not tell whether a loop exists."""

    def __init__(self, name: str, error: CallError) -> None:
        super().__init__(f"could not check loop {name!r}: {error.code} {error.message}")
        self.error = error
