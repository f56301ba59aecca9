"""The job loop: take an entry, ask the plan, send through the caller, record the outcome.

One item travels one way: manifest entry -> `Planner.decide` (skip, invalid, or a loop name)
-> the adapter's request -> `Caller.attempt` (meters, retries) -> outcome -> the ledger
writer.  A `WorkerPool` as large as the in-flight cap takes entries when workers are free
(backpressure), so memory holds at most a cap's worth of items whatever the manifest's size.

Exactly once: an item's loop name is fixed before its first call and an `intent` record
reaches the ledger before the call is sent.  Whenever a call may have taken effect without
our seeing the answer (a lost response, a read timeout, a 5xx, a kill), the next attempt
uses the same name, and a "name in use" answer is reconciled with DescribeHumanLoop instead
of being reported as a failure.  A loop that exists is never recorded `failed`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._aws import Clients
from ._calls import Caller, CallFailed, Found
from ._counters import Counters
from ._errors import A2IBatchError, JobAborted, SourceError, setting
from ._models import ErrorInfo, Invalid, Item, Outcome, Status
from ._plan import Planner, Resend, Skip
from ._pool import WorkerPool
from ._retry import CallError, ErrorKind
from ._tasks import RequestOptions, TaskAdapter
from .ledger import LedgerWriter, iso_time, utc_timestamp

DESCRIBE_OPERATION = "DescribeHumanLoop"

OutcomeHook = Callable[[Outcome], Awaitable[None]]
_SKIP_COUNTERS = {
    Skip.DONE: "skipped",
    Skip.FAILED: "skipped_failed",
    Skip.NAME_TAKEN: "skipped_name_taken",
}


@dataclass(frozen=True)
class RunOptions:
    """The runner's share of the settings."""

    options: RequestOptions
    max_failures: int | None = None
    max_failure_ratio: float | None = None
    grace_period: float = 30.0


class _Unverified(Exception):
    """DescribeHumanLoop could not tell whether a loop exists."""

    def __init__(self, name: str, error: CallError) -> None:
        super().__init__(f"could not check loop {name!r}: {error.code} {error.message}".rstrip())
        self.error = error


class Runner:
    """Runs one job's entries to outcomes.  Built and driven by `a2ibatch.Job`."""

    def __init__(
        self,
        *,
        adapter: TaskAdapter,
        clients: Clients,
        writer: LedgerWriter,
        planner: Planner,
        caller: Caller,
        settings: RunOptions,
        on_outcome: OutcomeHook | None = None,
    ) -> None:
        self.adapter = adapter
        self.writer = writer
        self.planner = planner
        self.caller = caller
        self.settings = settings
        self.on_outcome = on_outcome
        self.counters: Counters = caller.counters
        self._send = getattr(clients.by_service(adapter.service), adapter.method)
        self._a2i = clients.a2i
        self._entries: AsyncIterator[Item | Invalid] | None = None
        self._source_error: SourceError | None = None
        self.pool: WorkerPool[tuple[Item, str, bool]] = WorkerPool(
            caller.meters.cap, self._take, self._process
        )

    # -- control -------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The current rate of the job's main API."""
        return self.caller.meters.rate(self.adapter.operation).rate

    def stop(self) -> None:
        """Stop reading new entries; calls in flight finish within the grace period."""
        self.pool.stop()

    @property
    def stopping(self) -> bool:
        return self.pool.stopped

    async def run(self, source: AsyncIterable[Item | Invalid]) -> None:
        """Process every entry of `source`, or until stopped or aborted."""
        self._entries = aiter(source)
        await self.pool.run(self.settings.grace_period)
        if self._source_error is not None:
            raise self._source_error

    # -- taking entries ----------------------------------------------------------------

    async def _take(self) -> tuple[Item, str, bool] | None:
        """The next item to send, its loop name and whether it is ambiguous; None once the
        source is drained or the job stops.  Entries that need no call are settled here,
        by whichever worker reads them."""
        entries = self._entries
        assert entries is not None
        decide = self.planner.decide
        counters = self.counters
        while not self.pool.stopped:
            try:
                entry = await anext(entries)
            except StopAsyncIteration:
                return None
            except A2IBatchError:
                raise
            except Exception as exc:  # the caller's own source of items raised
                # Stop as on a graceful stop: the calls in flight finish and are recorded,
                # then the job ends with the caller's exception inside ours.
                error = SourceError(
                    f"the source of items raised {type(exc).__name__}; the job stopped there "
                    "and every outcome decided so far is in the ledger",
                    code="SourceFailed",
                )
                error.__cause__ = exc
                self._source_error = error
                self.pool.stop()
                return None
            decision = decide(entry)
            kind = type(decision)
            if kind is str:
                item = entry
                ambiguous = False
            elif kind is Resend:
                item = entry
                ambiguous = True
            elif kind is Skip:
                name = _SKIP_COUNTERS[decision]  # type: ignore[index]
                setattr(counters, name, getattr(counters, name) + 1)
                continue
            else:
                assert isinstance(decision, Invalid)
                await self._record(_invalid(decision))
                continue
            if self.pool.stopped:
                return None  # read while stopping: left for the next run, like any unread entry
            assert isinstance(item, Item)
            return item, str(decision), ambiguous
        return None

    async def _process(self, taken: tuple[Item, str, bool]) -> None:
        item, name, ambiguous = taken
        self.counters.in_flight += 1
        try:
            try:
                outcome = await self._submit(item, name, ambiguous)
            except _Unverified as exc:
                info = ErrorInfo("Unverified", f"{exc}; a rerun checks again before sending")
                outcome = _outcome(item, Status.UNVERIFIED, name, 0, error=info)
            await self._record(outcome)
        finally:
            self.counters.in_flight -= 1

    # -- one item ------------------------------------------------------------------------

    async def _submit(self, item: Item, name: str, ambiguous: bool) -> Outcome:
        adapter = self.adapter
        request = adapter.request(item, name, self.settings.options)
        if not ambiguous:
            await self.writer.intent(item.id, item.line, name)
        check = self._check_before_resend(name) if adapter.describe_before_resend else None
        try:
            answer, attempts = await self.caller.attempt(
                adapter.operation,
                self._send,
                request,
                classify=adapter.classify,
                ambiguous=ambiguous,
                resend_check=check,
            )
        except CallFailed as failed:
            return await self._failed(item, name, failed)
        if type(answer) is Found:
            return self._reconciled(item, name, answer.value, answer.attempts)
        read = adapter.read_answer(answer)
        return _outcome(
            item,
            read.status,
            name,
            attempts,
            arn=read.human_loop_arn,
            activation=read.activation,
            response=read.response,
        )

    def _check_before_resend(self, name: str) -> Callable[[], Awaitable[Any]]:
        """For built-in tasks, where a resend is paid twice: is the loop there already?"""

        async def check() -> Any:
            found = await self._describe(name)
            if found is None:
                # No loop: the item is sent (again); if an earlier attempt was analysed
                # without activating a loop, this one analyses it once more.
                self.counters.reanalysed += 1
            return found

        return check

    async def _failed(self, item: Item, name: str, failed: CallFailed) -> Outcome:
        error, attempts = failed.error, failed.attempts
        if error.kind is ErrorKind.NAME_IN_USE:
            return await self._name_in_use(item, name, attempts, failed.ambiguous, error)
        if error.kind is ErrorKind.ITEM:
            return _outcome(item, Status.FAILED, name, attempts, error=error.info())
        if failed.ambiguous:
            found = await self._describe(name)
            if found is not None:
                return self._reconciled(item, name, found, attempts)
        info = ErrorInfo(
            error.code, f"gave up after {attempts} attempts: {error.message}".rstrip(": ")
        )
        return _outcome(item, Status.FAILED, name, attempts, error=info)

    async def _name_in_use(
        self, item: Item, name: str, attempts: int, ambiguous: bool, error: CallError
    ) -> Outcome:
        found = await self._describe(name)
        # A generated name is a digest of the job and the item: whoever holds it sent this
        # very input under this flow definition, i.e. this job.  An explicit name is ours
        # only if one of our own calls for it may have gone through.
        ours = item.name is None or ambiguous
        if found is not None and ours:
            return self._reconciled(item, name, found, attempts)
        if found is None:
            facts: dict[str, Any] = {"status": "Deleted"}
            message = (
                f"loop name {name!r} is held by a loop the service no longer describes "
                f"(deleted: names stay taken): {error.message}".rstrip(": ")
            )
        else:
            facts = _facts(found)
            message = (
                f"loop name {name!r} is held by a loop this ledger has no record of starting "
                f"(created {facts.get('creation_time')}, {facts.get('status')}); if this job "
                "started it and lost the record, nothing more is needed; otherwise choose "
                "another name"
            )
        return _outcome(
            item,
            Status.NAME_TAKEN,
            name,
            attempts,
            arn=None if found is None else found.get("HumanLoopArn"),
            error=ErrorInfo("NameInUse", message),
            loop=facts,
        )

    def _reconciled(
        self, item: Item, name: str, found: Mapping[str, Any], attempts: int
    ) -> Outcome:
        flow = self.settings.options.flow_definition_arn
        if found.get("FlowDefinitionArn") not in (None, flow):
            info = ErrorInfo(
                "NameInUse",
                f"loop name {name!r} belongs to a loop of another flow definition; "
                f"for a review of its own, use a new {setting('name_prefix')}",
            )
            return _outcome(
                item,
                Status.NAME_TAKEN,
                name,
                attempts,
                arn=found.get("HumanLoopArn"),
                error=info,
                loop=_facts(found),
            )
        self.counters.recovered += 1
        return _outcome(
            item, Status.STARTED, name, attempts, arn=found.get("HumanLoopArn"), recovered=True
        )

    async def _describe(self, name: str) -> dict[str, Any] | None:
        """DescribeHumanLoop with retries; None when no such loop exists."""
        try:
            response = await self.caller.call(
                DESCRIBE_OPERATION, self._a2i.describe_human_loop, HumanLoopName=name
            )
        except CallFailed as exc:
            if exc.not_found:
                return None
            raise _Unverified(name, exc.error) from None
        return dict(response)

    # -- outcomes ------------------------------------------------------------------------

    async def _record(self, outcome: Outcome) -> None:
        await self.writer.outcome(outcome)
        self.counters.count(outcome.status)
        if outcome.status is Status.FAILED:
            self._check_failures()
        if self.on_outcome is not None:
            await self.on_outcome(outcome)

    def _check_failures(self) -> None:
        counters = self.counters
        failed = counters.failed
        limit = self.settings.max_failures
        if limit is not None and failed >= limit:
            raise JobAborted(
                f"{failed} items failed, reaching {setting('max_failures')} {limit}; the "
                "ledger's failed outcomes say why (each carries the service's error)",
                code="MaxFailures",
            )
        ratio = self.settings.max_failure_ratio
        decided = counters.started + counters.not_activated + failed
        enough = ratio is not None and decided >= max(20, math.ceil(1 / ratio))
        if ratio is not None and enough and failed / decided >= ratio:
            raise JobAborted(
                f"{failed} of {decided} items failed ({failed / decided:.0%}), reaching "
                f"{setting('max_failure_ratio')} {ratio:.0%}; the ledger says why",
                code="MaxFailures",
            )


def _facts(found: Mapping[str, Any]) -> dict[str, Any]:
    """What DescribeHumanLoop said of a loop, as the ledger records it."""
    created = found.get("CreationTime")
    return {
        "creation_time": iso_time(created),
        "flow_definition_arn": found.get("FlowDefinitionArn"),
        "status": found.get("HumanLoopStatus"),
        "human_loop_arn": found.get("HumanLoopArn"),
    }


def _outcome(
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
    loop: Mapping[str, Any] | None = None,
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
        loop=loop,
        response=response,
    )


def _invalid(entry: Invalid) -> Outcome:
    return Outcome(
        id=entry.id,
        line=entry.line,
        status=Status.INVALID,
        error=ErrorInfo("InvalidInput", entry.reason),
        at=utc_timestamp(),
    )
