"""The job loop: take an entry, ask the plan, send it, record the outcome.

One item travels one way: manifest entry -> `Planner.decide` (skip, invalid, or a loop name)
-> `ItemSender.send` (the intent, the call through the caller, what the answer means) ->
outcome -> the ledger writer.  A `WorkerPool` as large as the in-flight cap takes entries
when workers are free (backpressure), so memory holds at most a cap's worth of items
whatever the manifest's size.  The runner also stops the job when too many items failed.

A job of flows in several regions gives the runner its `Lanes` (one per region: clients,
meters, sender): the pool is as large as their in-flight caps together, the regions of a
batch's new buckets are learnt before its entries are decided, and each item is sent in
its region's lane, within that lane's cap.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from ._aws import Clients
from ._calls import Caller
from ._counters import Counters
from ._errors import A2IBatchError, JobAborted, SourceError, setting
from ._lanes import Lanes
from ._marks import INVALID, OTHER_SHARD, SKIPPED, SKIPPED_FAILED, SKIPPED_NAME_TAKEN, Marking
from ._models import Invalid, Item, Outcome, Status
from ._plan import Planner, Resend, Skip
from ._pool import WorkerPool
from ._sender import ItemSender, invalid_outcome
from ._tasks import RequestOptions, TaskAdapter
from .ledger import LedgerWriter
from .manifest import Entry

OutcomeHook = Callable[[Outcome], Awaitable[None]]
_SKIP_CODES = {
    Skip.DONE: SKIPPED,
    Skip.FAILED: SKIPPED_FAILED,
    Skip.NAME_TAKEN: SKIPPED_NAME_TAKEN,
    Skip.OTHER_SHARD: OTHER_SHARD,
}
_SKIP_COUNTERS = {
    Skip.DONE: "skipped",
    Skip.FAILED: "skipped_failed",
    Skip.NAME_TAKEN: "skipped_name_taken",
    Skip.OTHER_SHARD: "other_shards",
}


@dataclass(frozen=True)
class RunOptions:
    """The runner's share of the settings."""

    options: RequestOptions
    max_failures: int | None = None
    max_failure_ratio: float | None = None
    grace_period: float = 30.0


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
        marking: Marking | None = None,
        lanes: Lanes | None = None,
    ) -> None:
        self.adapter = adapter
        #: a job of several regions: each item goes through its region's lane
        self.lanes = lanes
        #: which lines are settled, for a resume point's mark (a local manifest only)
        self.marking = marking
        self.writer = writer
        self.planner = planner
        self.caller = caller
        self.settings = settings
        self.on_outcome = on_outcome
        self.counters: Counters = caller.counters
        self.sender = ItemSender(
            adapter=adapter, clients=clients, writer=writer, caller=caller, options=settings.options
        )
        self._batches: AsyncIterator[list[Entry]] | None = None
        self._batch: list[Entry] = []  # the batch being taken from, and the next entry's place
        self._at = 0
        self._source_error: SourceError | None = None
        self.pool: WorkerPool[tuple[Item, str, bool, int]] = (
            WorkerPool(caller.meters.cap, self._take, self._process)
            if lanes is None
            else WorkerPool(lanes.cap, self._take, self._process_in_lane)
        )

    # -- control -------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The current rate of the job's main API (of every region together)."""
        if self.lanes is not None:
            return self.lanes.rate(self.adapter.operation)
        return self.caller.meters.rate(self.adapter.operation).rate

    def stop(self) -> None:
        """Stop reading new entries; calls in flight finish within the grace period."""
        self.pool.stop()

    @property
    def stopping(self) -> bool:
        return self.pool.stopped

    async def run(self, source: AsyncIterable[list[Entry]]) -> None:
        """Process every entry of `source`'s lists, or until stopped or aborted."""
        self._batches = aiter(source)
        await self.pool.run(self.settings.grace_period)
        if self._source_error is not None:
            raise self._source_error

    # -- taking entries ----------------------------------------------------------------

    async def _take(self) -> tuple[Item, str, bool, int] | None:
        """The next item to send, its loop name, whether it is ambiguous and its ordinal
        (for the marking; -1 without); None once the source is drained or the job stops.
        Entries that need no call are settled here, by whichever worker reads them."""
        batches = self._batches
        assert batches is not None
        decide = self.planner.decide
        counters = self.counters
        marking = self.marking
        while not self.pool.stopped:
            batch, at = self._batch, self._at
            if at == len(batch):
                try:
                    batch = await anext(batches)
                except StopAsyncIteration:
                    return None
                except A2IBatchError:
                    raise
                except Exception as exc:  # the caller's own source of items raised
                    # Stop as on a graceful stop: the calls in flight finish and are
                    # recorded, then the job ends with the caller's exception inside ours.
                    error = SourceError(
                        f"the source of items raised {type(exc).__name__}; the job stopped "
                        "there and every outcome decided so far is in the ledger",
                        code="SourceFailed",
                    )
                    error.__cause__ = exc
                    self._source_error = error
                    self.pool.stop()
                    return None
                self._batch, at = batch, 0
                if not batch:
                    self._at = 0
                    continue
                if self.planner.routes is not None:  # learn the batch's bucket regions
                    await self.planner.routes.prepare(batch)
            entry = batch[at]
            self._at = at + 1
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
                if marking is not None:
                    marking.taken(_SKIP_CODES[decision])  # type: ignore[index]
                continue
            else:
                assert isinstance(decision, Invalid)
                await self._record(invalid_outcome(decision))
                if marking is not None:
                    marking.taken(INVALID)
                continue
            if self.pool.stopped:
                return None  # read while stopping: left for the next run, like any unread entry
            assert isinstance(item, Item)
            ordinal = -1 if marking is None else marking.taken(0)
            return item, str(decision), ambiguous, ordinal
        return None

    async def _process(
        self, taken: tuple[Item, str, bool, int], sender: ItemSender | None = None
    ) -> None:
        item, name, ambiguous, ordinal = taken
        self.counters.in_flight += 1
        try:
            outcome = await (sender or self.sender).send(item, name, ambiguous)
            await self._record(outcome)
            if self.marking is not None:
                self.marking.settled(ordinal, outcome.status)
        finally:
            self.counters.in_flight -= 1

    async def _process_in_lane(self, taken: tuple[Item, str, bool, int]) -> None:
        assert self.lanes is not None
        lane = self.lanes.lane(self.planner.region_of(taken[0]))
        async with lane.slots:
            await self._process(taken, lane.sender)

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
