"""The library as a caller sees it: `Job`, `submit()`, `stream()` and `dry_run()`.

Everything runs inside the caller's event loop (asyncio; aiobotocore is asyncio-only), with
no printing, no exits and no global state, so two jobs can run side by side in one process.
Cancelling a job (a cancel scope, `asyncio.Task.cancel`) leaves the ledger consistent: every
record handed to the writer is written and synced before the cancellation finishes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from ._clients import client_kwargs, make_session, open_client, versions
from ._config import SubmitSettings
from ._errors import A2IBatchError, JobAborted, LedgerWriteError, first_error
from ._ledger import JobHeader, LedgerIndex, LedgerWriter, load_ledger
from ._manifest import read_manifest, read_manifest_batches
from ._models import Invalid, Item, Outcome, Status, TaskType
from ._naming import Namer
from ._preflight import ManifestScan, PreflightReport, preflight, scan_manifest
from ._retry import RetryPolicy
from ._runner import Counters, Runner, RunOptions
from ._tasks import A2I_SERVICE, RequestOptions, TaskAdapter, adapter_for

log = structlog.get_logger("a2ibatch")

Source = AsyncIterable[Item | Invalid] | Iterable[Item | Invalid]


@dataclass(frozen=True)
class Summary:
    """What one run did.  `exit_code` is the CLI's exit status for it."""

    ledger: str
    task: str
    counts: Mapping[str, Any]
    elapsed: float
    stopped: bool = False  # a graceful stop was requested before the manifest's end
    aborted: str | None = None  # why the job stopped early, if it did

    @property
    def exit_code(self) -> int:
        if self.aborted is not None:
            return 3
        if self.stopped:
            return 130
        c = self.counts
        return 1 if c["failed"] or c["invalid"] or c["skipped_failed"] else 0

    def to_record(self) -> dict[str, Any]:
        return {
            "event": "summary",
            **self.counts,
            "elapsed_s": round(self.elapsed, 3),
            "stopped": self.stopped,
            "aborted": self.aborted,
        }


#: a plain iterable of items lets other tasks run after this many entries
_ITEMS_PER_CHECKPOINT = 256


async def _as_async(source: Source) -> AsyncIterator[Item | Invalid]:
    """`source` as an async iterator.  A plain iterable yields to the event loop every
    `_ITEMS_PER_CHECKPOINT` entries: often enough that skipping a long run of done items
    starves nothing, seldom enough to cost nothing per item."""
    if isinstance(source, AsyncIterable):
        async for entry in source:
            yield entry
    else:
        for n, entry in enumerate(source, 1):
            yield entry
            if not n % _ITEMS_PER_CHECKPOINT:
                await anyio.lowlevel.checkpoint()


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
        self.index: LedgerIndex | None = None
        self._runner: Runner | None = None
        self._stop_requested = False
        self.started_at: float | None = None
        self.preflight_report: PreflightReport | None = None

    # -- what a progress display reads -----------------------------------------------------

    @property
    def rate(self) -> float:
        return self._runner.rate if self._runner else 0.0

    @property
    def concurrency(self) -> int:
        return self._runner.governor.limit if self._runner else 0

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
        return JobHeader(
            task=s.task,
            flow_definition_arn=s.flow_definition_arn,
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
        index = await anyio.to_thread.run_sync(load_ledger, s.ledger, abandon_on_cancel=True)
        index.check_compatible(s.task, s.flow_definition_arn, s.name_prefix)
        self.index = index
        aborted: A2IBatchError | None = None
        summary: Summary | None = None
        async with AsyncExitStack() as stack:
            clients = await self._clients(stack)
            if s.preflight:
                self.preflight_report = await self._preflight(clients, index)
            source = self._source(clients)
            writer = await stack.enter_async_context(
                LedgerWriter.open(
                    s.ledger,
                    self.header(),
                    checkpoint_interval=s.checkpoint_interval,
                    sidecar=s.task is not TaskType.CUSTOM,
                )
            )
            runner = Runner(
                adapter=self.adapter,
                clients=clients,
                writer=writer,
                index=index,
                settings=self._run_options(),
                on_outcome=on_outcome,
                counters=self.counters,
            )
            self._runner = runner
            if self._stop_requested:
                runner.stop()
            try:
                await runner.run(source)
            except BaseExceptionGroup as group:
                error = first_error(group)
                if not isinstance(error, A2IBatchError):
                    raise
                aborted = error
            except A2IBatchError as error:
                aborted = error
            summary = self._summary(aborted)
            if not isinstance(aborted, LedgerWriteError):
                await writer.record(summary.to_record())
        assert summary is not None
        if aborted is not None:
            log.error("job_aborted", reason=str(aborted))
            aborted.summary = summary
            raise aborted
        return summary

    def _summary(self, aborted: BaseException | None) -> Summary:
        elapsed = time.monotonic() - (self.started_at or time.monotonic())
        return Summary(
            ledger=str(self.settings.ledger),
            task=self.settings.task.value,
            counts=self.counters.as_dict(),
            elapsed=elapsed,
            stopped=self._stop_requested,
            aborted=None if aborted is None else str(aborted),
        )

    async def _preflight(
        self, clients: Mapping[str, Any], index: LedgerIndex
    ) -> PreflightReport | None:
        """Check the flow definition, buckets and cost before the first call that costs."""
        s = self.settings
        scan: ManifestScan | None = None
        if self._items is None and s.manifest != "-":

            def done(item_id: str) -> bool:
                state = index.state(item_id)
                return state is not None and state.done

            scan = await scan_manifest(s, clients.get("s3"), done=done)
            if scan.items == 0:
                return None  # nothing left to send: nothing to check, and no call at all
        report = await preflight(
            s,
            session=self._session,
            items=None if scan is None else scan.items,
            buckets=set() if scan is None else scan.buckets,
            s3_client=clients.get("s3"),
            item_classifiers=None if scan is None else scan.classifiers,
        )
        for warning in report.warnings:
            log.warning("preflight", detail=warning)
        return report

    def _run_options(self) -> RunOptions:
        s = self.settings
        return RunOptions(
            options=RequestOptions(s.flow_definition_arn, s.content_classifiers, s.feature_types),
            name_prefix=s.name_prefix,
            policy=self.policy,
            rate_ceiling=s.rate,
            concurrency=s.concurrency,
            retry_failed=s.retry_failed,
            max_failures=s.max_failures,
            max_failure_ratio=s.max_failure_ratio,
            quota_pause=s.quota_pause,
            quota_wait_limit=s.quota_wait_limit,
            grace_period=s.grace_period,
        )

    async def _clients(self, stack: AsyncExitStack) -> dict[str, Any]:
        session = make_session(self.settings, self._session)
        pool = max(self.settings.concurrency or 0, 1024)
        kwargs = client_kwargs(self.settings, pool)
        clients: dict[str, Any] = {}
        for service in {self.adapter.service, A2I_SERVICE}:
            clients[service] = await open_client(stack, session, service, kwargs)
        if self._items is None and self.settings.manifest.startswith("s3://"):
            s3_kwargs = {k: v for k, v in kwargs.items() if k != "config"}
            clients["s3"] = await open_client(stack, session, "s3", s3_kwargs)
        return clients

    def _source(self, clients: Mapping[str, Any]) -> AsyncIterator[Item | Invalid]:
        if self._items is not None:
            return _as_async(self._items)
        return read_manifest(
            self.settings.manifest, self.settings.task, s3_client=clients.get("s3")
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

    A consumer that stops reading holds the job up once `buffer` outcomes wait (it never
    grows memory); leaving the block early cancels the job, ledger intact.
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
        raise first_error(group) from None


@dataclass
class DryRunReport:
    """What a job would send, found without calling anything or writing any file."""

    task: str
    items: int = 0  # valid items that would be sent
    already_done: int = 0  # valid items the ledger already has as started/not_activated
    invalid: int = 0
    problems: list[Invalid] = field(default_factory=list)  # the first `max_problems`
    sample_names: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.invalid else 0


async def dry_run(
    settings: SubmitSettings,
    *,
    session: Any | None = None,
    items: Source | None = None,
    max_problems: int = 1000,
) -> DryRunReport:
    """Read and check the whole manifest and compute every name; send and write nothing.

    A manifest is read in `read_manifest_batches`' lists, and each entry is handled inline:
    a dry run of a million lines is measured against ``json.loads`` over the same file
    (``benchmarks/bench_dry_run.py``), so the per-entry work is kept to what a real run does
    before its first call.
    """
    adapter = adapter_for(settings.task)
    namer = Namer(settings.name_prefix, settings.flow_definition_arn, settings.task.value)
    index = await anyio.to_thread.run_sync(load_ledger, settings.ledger, abandon_on_cancel=True)
    report = DryRunReport(task=settings.task.value)
    resuming = len(index) > 0
    problems = report.problems
    samples = report.sample_names
    name_of = namer.name
    generated = namer.generated
    payload_key = adapter.payload_key
    items_seen = already_done = 0

    async with AsyncExitStack() as stack:
        if items is not None:
            source: AsyncIterator[list[Item | Invalid]] = _as_batches(items)
        else:
            s3 = None
            if settings.manifest.startswith("s3://"):
                session = make_session(settings, session)
                kwargs = client_kwargs(settings, 10)
                kwargs.pop("config")
                s3 = await open_client(stack, session, "s3", kwargs)
            source = read_manifest_batches(settings.manifest, settings.task, s3_client=s3)
        async for batch in source:
            for entry in batch:
                if type(entry) is not Item and isinstance(entry, Invalid):
                    report.invalid += 1
                    if len(problems) < max_problems:
                        problems.append(entry)
                    continue
                if entry.name is None:
                    name = generated(entry.id, payload_key(entry))
                else:
                    name, reason = name_of(entry.id, entry.name, payload_key(entry))
                    if reason is not None:
                        report.invalid += 1
                        if len(problems) < max_problems:
                            problems.append(Invalid(entry.line, reason, entry.id))
                        continue
                items_seen += 1
                if resuming:
                    state = index.state(entry.id)
                    if state is not None and state.done:
                        already_done += 1
                if items_seen <= 5:
                    samples.append(name)
    report.items = items_seen
    report.already_done = already_done
    return report


async def _as_batches(source: Source) -> AsyncIterator[list[Item | Invalid]]:
    """`source`'s entries one per list, in the shape `read_manifest_batches` hands out."""
    async for entry in _as_async(source):
        yield [entry]


__all__ = [
    "DryRunReport",
    "Job",
    "JobAborted",
    "Status",
    "Summary",
    "dry_run",
    "stream",
    "submit",
]
