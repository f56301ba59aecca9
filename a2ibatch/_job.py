"""A whole job as a caller sees it: `Job`, `submit()` and `stream()`.

Everything runs inside the caller's event loop (asyncio; aiobotocore is asyncio-only), with
no printing, no exits and no global state, so two jobs can run side by side in one process.
Cancelling a job (a cancel scope, `asyncio.Task.cancel`) leaves the ledger consistent: every
record handed to the writer is written and synced before the cancellation finishes.

The order of a run matters for exactly-once: the ledger's lock is taken first, then the
ledger is read under it (so what the run reads is what it holds: a second submit can never
act on a stale read), then preflight, then the run's records.  A job of flows in several
regions runs a lane per region (`_lanes`: clients, meters, preflight, sender of its own).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._aws import A2I_SERVICE, Clients, open_clients, versions
from ._calls import Caller
from ._counters import Counters
from ._entries import Source, as_batches, done_ids
from ._errors import A2IBatchError, LedgerWriteError, raise_first
from ._lanes import Lanes, open_lanes, preflight_lanes, recovered_in_lanes
from ._log import get_logger
from ._meters import Meters, job_meters
from ._models import Outcome, TaskType
from ._plan import job_planner, tally
from ._preflight import PreflightReport, preflight
from ._quotas import start_at_applied_quota
from ._recovery import recovered_names
from ._regions import arn_region
from ._resuming import Resumption, read_resumable
from ._retry import RetryPolicy
from ._routes import Routes, routes_for
from ._runner import Runner, RunOptions
from ._settings import SubmitSettings
from ._summary import Summary
from ._tasks import RequestOptions, TaskAdapter, adapter_for
from .ledger import JobHeader, LedgerIndex, LedgerWriter, Location, location_for
from .manifest import Entry, read_manifest_batches

log = get_logger()


def is_s3(settings: SubmitSettings) -> bool:
    return str(settings.ledger).startswith("s3://")


def open_location(settings: SubmitSettings, clients: Clients, caller: Caller) -> Location:
    """The location of the job's ledgers (in S3, through the job's S3 client and caller)."""
    if is_s3(settings):
        return location_for(
            settings.ledger,
            s3=clients.s3,
            caller=caller,
            work_dir=settings.work_dir,
            lease_seconds=settings.lease_seconds,
        )
    return location_for(settings.ledger)


class Job:
    """One submit job: a manifest (or items) in, one ledger outcome per item out.

    Use `await Job(settings).run()`, or `submit()` / `stream()` below.  `stop()` asks for a
    graceful stop from anywhere (a signal handler, another task).
    """

    def __init__(
        self,
        settings: SubmitSettings,
        *,
        session: Any | None = None,
        items: Source | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.adapter: TaskAdapter = adapter_for(settings.task)
        self._session = session
        self._items = items
        self.policy = retry_policy or RetryPolicy(max_attempts=settings.max_attempts)
        self.counters = Counters()
        self.meters = job_meters(settings, self.counters, self.adapter.operation)
        self.index: LedgerIndex | None = None
        #: a job of several flows: a lane per region, and where each item goes
        self.lanes: Lanes | None = None
        self._routes: Routes | None = None
        self._runner: Runner | None = None
        self._stop_requested = False
        self.started_at: float | None = None
        self.preflight_report: PreflightReport | None = None  # a job of one flow's
        self.preflight_reports: dict[str, PreflightReport] = {}  # by region, every job's
        #: bytes of a damaged ledger tail cut off when the run read the ledger
        self.repaired_bytes = 0
        #: how each region's start-call rate was set, once it sends (`Summary.rates`)
        self._rates: dict[str | None, str] = {}

    # -- what a progress display reads -----------------------------------------------------

    @property
    def rate(self) -> float:
        return self._runner.rate if self._runner else 0.0

    @property
    def concurrency(self) -> int:
        return (self.meters.cap if self.lanes is None else self.lanes.cap).limit

    @property
    def running(self) -> bool:
        """Whether items are being sent (set-up and preflight are over)."""
        return self._runner is not None

    def stop(self) -> None:
        """Stop reading items; calls in flight finish (within the grace period)."""
        self._stop_requested = True
        if self._runner is not None:
            self._runner.stop()

    # -- running -----------------------------------------------------------------------

    def header(self) -> JobHeader:
        s = self.settings
        manifest = s.manifest if self._items is None else "<items>"
        arns = s.flow_definition_arns
        return JobHeader(
            task=s.task,
            flow_definition_arn=arns[0] if len(arns) == 1 else arns,
            name_prefix=s.name_prefix,
            manifest=manifest,
            versions=versions(),
        )

    async def run(self, on_outcome: Any | None = None) -> Summary:
        """Run the job to its end; raise JobAborted (with `.summary`) if it stops early.

        `on_outcome`, an async callable, receives each outcome after it is handed to the
        ledger writer; while it is busy the job waits (backpressure).
        """
        s = self.settings
        self.started_at = time.monotonic()
        aborted: A2IBatchError | None = None
        summary: Summary | None = None
        async with AsyncExitStack() as stack:
            caller = Caller(self.meters, self.policy)
            clients = await self._clients(stack)
            if len(s.flow_definition_arns) > 1:
                self.lanes = await open_lanes(
                    stack, s, self.adapter, self.counters, self.policy, self._session
                )
                self._routes = routes_for(s, clients.s3_if_open, caller)
            # The ledger's S3 calls have meters and counts of their own: the summary's calls
            # are the service's.
            location = open_location(s, clients, Caller(Meters(Counters()), self.policy))
            store = location.own(s.shards, s.shard_index)
            # The lock (a lease, in S3) first, then the ledger read under it.
            files = await stack.enter_async_context(
                store.run(sidecar=s.task is not TaskType.CUSTOM)
            )
            if files.ledger.tightened:
                log.warning("ledger_mode_tightened", ledger=store.label, mode="0600")
            index, resumption = await read_resumable(
                s, location, files.ledger, self.counters, items=self._items is not None
            )
            await location.read_into(index, exclude=store.ident)
            index.check_compatible(s.task, s.flow_definition_arn, s.name_prefix)
            recovered = frozenset[str]()
            if is_s3(s):  # on local disk, a kill loses no record (see docs/ledger.md)
                recovered = await (
                    recovered_names(s, files.ledger, clients.a2i, caller)
                    if self.lanes is None
                    else recovered_in_lanes(self.lanes, s.name_prefix, files.ledger)
                )
            self.index = index
            self.repaired_bytes = index.repaired_bytes
            if index.repaired_bytes:
                log.warning("ledger_tail_cut", ledger=store.label, bytes=index.repaired_bytes)
            if s.preflight:
                self.preflight_report = await self._preflight(clients, index, caller, resumption)
            self._read_quotas()
            writer = await stack.enter_async_context(
                LedgerWriter.open(
                    files.ledger,
                    self.header(),
                    sidecar=files.sidecar,
                    checkpoint_interval=s.checkpoint_interval,
                    after_sync=files.after_sync,
                )
            )
            lane = None if self.lanes is None else self.lanes.attach(self.adapter, writer, s)
            unique, routes = self._items is not None, self._routes
            runner = Runner(
                adapter=self.adapter,
                clients=clients if lane is None else lane.clients,
                writer=writer,
                planner=job_planner(s, index, unique=unique, recovered=recovered, routes=routes),
                caller=caller if lane is None else lane.caller,
                settings=self._run_options(),
                on_outcome=on_outcome,
                marking=None if resumption is None else resumption.marking,
                lanes=self.lanes,
            )
            self._runner = runner
            if self._stop_requested:
                runner.stop()
            try:
                async with AsyncExitStack() as keeping:
                    if resumption is not None:
                        await keeping.enter_async_context(resumption.keeping(writer))
                    await runner.run(self._source(clients, resumption))
            except A2IBatchError as error:
                aborted = error
            if aborted is None and not runner.stopping and hasattr(store, "finished"):
                store.finished = True  # every item decided: the store may compact
            summary = self._summary(aborted)
            if not isinstance(aborted, LedgerWriteError):
                await writer.record(summary.to_record())
        assert summary is not None
        if aborted is not None:
            log.info("job_aborted", code=aborted.code)
            aborted.summary = summary
            raise aborted
        return summary

    def _summary(self, aborted: BaseException | None) -> Summary:
        elapsed = time.monotonic() - (self.started_at or time.monotonic())
        marking = self._runner.marking if self._runner is not None else None
        return Summary(
            ledger=str(self.settings.ledger),
            task=self.settings.task.value,
            counts=self.counters.as_dict(),
            elapsed=elapsed,
            stopped=self._stop_requested,
            aborted=None if aborted is None else str(aborted),
            resumed_after_line=marking.resumed_after if marking is not None else None,
            rates=tuple(self._rates[r] for r in sorted(self._rates, key=str)),
        )

    def _read_quotas(self) -> None:
        """Each region's start calls begin at the quota Service Quotas tells (`_quotas`)."""
        s = self.settings
        lanes: dict[str | None, Meters] = {None: self.meters}
        if self.lanes is not None:
            lanes = {r: lane.meters for r, lane in self.lanes.by_region.items()}
        for region, meters in lanes.items():
            prefix = "" if region is None else f"{region}: "

            def said(line: str, region: str | None = region, prefix: str = prefix) -> None:
                self._rates[region] = prefix + line

            start_at_applied_quota(
                meters, s, self._session, self.adapter.operation, self.policy, said, region=region
            )

    async def _preflight(
        self,
        clients: Clients,
        index: LedgerIndex,
        caller: Caller,
        resumption: Resumption | None,
    ) -> PreflightReport | None:
        """Check the flow definition, buckets and cost before the first call that costs.

        The manifest's items are counted by the job's own plan: the cost estimate covers
        exactly what the run will send.
        """
        s = self.settings
        scan = None
        if self._items is None and s.manifest != "-":
            batches = read_manifest_batches(
                s.manifest,
                s.task,
                s3_client=clients.s3_if_open,
                max_lines=s.max_lines,
                done=done_ids(s, index),
                start=None if resumption is None else resumption.start,
            )
            planner = job_planner(s, index, unique=False, routes=self._routes)
            scan = await tally(planner, batches, details=True)
            if scan.to_send == 0:
                return None  # nothing left to send: nothing to check, and no call at all
        if self.lanes is not None:
            self.preflight_reports = await preflight_lanes(
                s, self.lanes, scan, session=self._session, s3_client=clients.s3_if_open
            )
            return None
        report = await preflight(
            s,
            session=self._session,
            items=None if scan is None else scan.to_send,
            buckets=set() if scan is None else scan.buckets,
            s3_client=clients.s3_if_open,
            item_classifiers=None if scan is None else scan.classifiers,
            caller=caller,
        )
        for warning in report.warnings:
            log.warning("preflight", detail=warning)
        self.preflight_reports = {arn_region(s.flow_definition_arns[0]): report}
        return report

    def _run_options(self) -> RunOptions:
        s = self.settings
        return RunOptions(
            options=RequestOptions(
                s.flow_definition_arns[0], s.content_classifiers, s.feature_types
            ),
            max_failures=s.max_failures,
            max_failure_ratio=s.max_failure_ratio,
            grace_period=s.grace_period,
        )

    async def _clients(self, stack: AsyncExitStack) -> Clients:
        s = self.settings
        pool = max(s.concurrency or 0, 1024)
        services = {service: pool for service in (self.adapter.service, A2I_SERVICE)}
        if len(s.flow_definition_arns) > 1:  # lanes have their own; S3 finds bucket regions
            services = {"s3": 16} if s.task is not TaskType.CUSTOM else {}
        manifest_in_s3 = self._items is None and s.manifest.startswith("s3://")
        if manifest_in_s3 or str(s.ledger).startswith("s3://"):
            services["s3"] = 16
        return await open_clients(stack, self.settings.aws, self._session, services)

    def _source(
        self, clients: Clients, resumption: Resumption | None
    ) -> AsyncIterator[list[Entry]]:
        if self._items is not None:
            return as_batches(self._items)
        s = self.settings
        marked = resumption is not None and resumption.marking is not None
        return read_manifest_batches(
            s.manifest,
            s.task,
            s3_client=clients.s3_if_open,
            max_lines=s.max_lines,
            done=done_ids(s, self.index),
            start=None if resumption is None else resumption.start,
            boundaries=resumption.boundary if marked and resumption else None,
        )


async def submit(
    settings: SubmitSettings,
    *,
    session: Any | None = None,
    items: Source | None = None,
    retry_policy: RetryPolicy | None = None,
) -> Summary:
    """Run a whole job and return its summary (JobAborted if it stopped early)."""
    return await Job(settings, session=session, items=items, retry_policy=retry_policy).run()


@asynccontextmanager
async def stream(
    settings: SubmitSettings,
    *,
    session: Any | None = None,
    items: Source | None = None,
    buffer: int = 64,
) -> AsyncIterator[AsyncIterator[Outcome]]:
    """Run a job in the background and iterate its outcomes as they are decided.

    Only the outcomes this run decides are iterated: items a rerun skips (the ledger has
    them done) are not.  A consumer that stops reading holds the job up once `buffer`
    outcomes wait (it never grows memory); leaving the block early cancels the job, ledger
    intact.  An error that stops the job is raised from the block as itself.
    """
    send, receive = anyio.create_memory_object_stream[Outcome](buffer)
    job = Job(settings, session=session, items=items)

    async def produce() -> None:
        async with send:
            await job.run(on_outcome=send.send)

    try:
        async with anyio.create_task_group() as tg, receive:
            tg.start_soon(produce)
            try:
                yield receive
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The caller sees the job's own error (JobAborted, LedgerError ...) or its own.
        raise_first(group)
