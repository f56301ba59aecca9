"""What every lifecycle command shares: the job as its ledger describes it, its clients, its
caller, and the ledger opened for appending what the command learns.

A command reads the ledger once with the one reader (`read_ledger`, loops included), builds
the job's settings from the ledger's header (task, flow definition, name prefix: no flag
can contradict them), makes its calls through a `Caller` with the same meters and retry
policy as submit, and appends ``loop_status`` / ``loop_action`` records with the ledger
writer in append mode, beside a submit that may still be writing the same file.

A job of flows in several regions has a `Region` for each (its flow definition, clients
signed for it and a caller with meters of its own: quotas are per region); a loop is asked
about, acted on and looked for in its own region.  A job of one flow has one, with the
command's own clients, as it always had.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .._aws import Clients, open_clients
from .._calls import Caller, CallFailed
from .._counters import Counters
from .._errors import LedgerError, raise_first
from .._log import get_logger
from .._meters import Meters
from .._pool import fan_out
from .._retry import RetryPolicy
from .._settings import AwsSettings, SubmitSettings
from .._text import printable
from ..ledger import (
    LedgerIndex,
    LedgerWriter,
    Location,
    LoopState,
    iso_time,
    location_for,
    loop_status_record,
    read_location,
)

log = get_logger()

DEFAULT_INTERVAL = 60.0


def job_settings(index: LedgerIndex, aws: AwsSettings) -> SubmitSettings:
    """The job's settings, from its ledger's header (and every region its runs named)."""
    header = index.header
    assert header is not None
    return SubmitSettings(
        task=header.task,
        flow_definition_arn=tuple(index.flows.values()) or header.flow_definition_arn,
        ledger=Path(index.path),
        name_prefix=header.name_prefix,
        aws=aws,
    )


def require_job(index: LedgerIndex) -> None:
    if index.header is None:
        if not index.records:
            raise LedgerError(f"no ledger at {printable(index.path)} (nothing recorded there)")
        raise LedgerError(
            f"{printable(index.path)} has no job record: it is not an a2ibatch ledger, or "
            "submit never ran"
        )


def open_location(ledger: str | os.PathLike[str], clients: Clients, caller: Caller) -> Location:
    """The location `ledger` names (in S3, through the command's S3 client and caller)."""
    if os.fspath(ledger).startswith("s3://"):
        return location_for(ledger, s3=clients.s3, caller=caller)
    return location_for(ledger)


@dataclass(frozen=True)
class Region:
    """One region of the job: its flow definition, clients (signed for it) and caller."""

    name: str
    flow_definition_arn: str
    clients: Clients
    caller: Caller


@dataclass
class Context:
    """One lifecycle command's job: its ledger's index, settings, clients, caller, writer,
    and its regions (`regions`: one for a job of one flow, with `clients` and `caller`)."""

    index: LedgerIndex
    settings: SubmitSettings
    caller: Caller
    clients: Clients
    writer: LedgerWriter | None
    location: Location
    counters: Counters = field(default_factory=Counters)
    changed: int = 0  # loop_status records appended
    regions: dict[str, Region] = field(default_factory=dict)

    def region(self, loop: LoopState) -> Region:
        """The region of `loop`'s flow definition (the job's only one, when it has one)."""
        found = self.regions.get(loop.region or "")
        return found if found is not None else next(iter(self.regions.values()))

    def by_region(self, loops: Iterable[LoopState]) -> dict[str, tuple[Region, list[LoopState]]]:
        """`loops` grouped by region."""
        groups: dict[str, tuple[Region, list[LoopState]]] = {}
        for loop in loops:
            region = self.region(loop)
            groups.setdefault(region.name, (region, []))[1].append(loop)
        return groups

    async def each(
        self,
        loops: Iterable[LoopState],
        work: Callable[[Region, LoopState], Awaitable[None]],
    ) -> None:
        """`work(region, loop)` for each loop, under its region's in-flight cap; the
        regions at once."""
        groups = list(self.by_region(loops).values())
        if len(groups) == 1:
            region, group = groups[0]
            await fan_out(region.caller.meters.cap, group, functools.partial(work, region))
            return
        try:
            async with anyio.create_task_group() as tasks:
                for region, group in groups:
                    partial = functools.partial(work, region)
                    tasks.start_soon(fan_out, region.caller.meters.cap, group, partial)
        except BaseExceptionGroup as group:
            raise_first(group)

    async def reread(self) -> None:
        """Read the ledgers again (a submit still running may have started more loops)."""
        fresh = await read_location(self.location, loops=True)
        self.index.loops = fresh.loops

    async def observe(
        self,
        loop: LoopState,
        status: str,
        output: str | None,
        failure: str | None,
        creation_time: str | None = None,
    ) -> None:
        """Record `loop`'s status if it changed (a ``loop_status`` record)."""
        if status == loop.status and (creation_time is None or loop.creation_time):
            return
        if self.writer is not None:
            await self.writer.record(
                loop_status_record(
                    item_id=loop.id,
                    loop_name=loop.loop_name,
                    human_loop_arn=loop.human_loop_arn,
                    status=status,
                    output_s3_uri=output,
                    failure_reason=failure,
                    creation_time=creation_time or loop.creation_time,
                )
            )
        if status != loop.status:
            self.changed += 1
        loop.status = status
        loop.output_s3_uri = output or loop.output_s3_uri
        loop.creation_time = creation_time or loop.creation_time

    async def describe(self, loop: LoopState, errors: dict[str, int]) -> Mapping[str, Any] | None:
        """The loop's DescribeHumanLoop answer (its change recorded); None if unknown now."""
        region = self.region(loop)
        a2i = region.clients.a2i
        try:
            response: Mapping[str, Any] = await region.caller.call(
                "DescribeHumanLoop", a2i.describe_human_loop, HumanLoopName=loop.loop_name
            )
        except CallFailed as exc:
            if exc.not_found:
                await self.observe(loop, "Deleted", None, "the service no longer has this loop")
                return {"HumanLoopStatus": "Deleted"}
            errors[exc.error.code] = errors.get(exc.error.code, 0) + 1
            log.debug("describe_failed", loop=loop.loop_name, code=exc.error.code)
            return None
        output = response.get("HumanLoopOutput") or {}
        await self.observe(
            loop,
            str(response.get("HumanLoopStatus")),
            output.get("OutputS3Uri"),
            response.get("FailureReason"),
            iso_time(response.get("CreationTime")),
        )
        return response


@asynccontextmanager
async def open_job(
    ledger: str | os.PathLike[str],
    *,
    aws: AwsSettings | None,
    session: Any | None,
    services: Mapping[str, int],
    rate: float | None = None,
    concurrency: int | None = None,
    retry_policy: RetryPolicy | None = None,
    intents: bool = False,
    append: bool = True,
    primary: str | None = None,
) -> AsyncIterator[Context]:
    """The job of `ledger` (a file, a directory of shards' ledgers, or an S3 prefix) for one
    command: clients open, every ledger read, and a writer for the command's records."""
    aws = aws or AwsSettings()
    counters = Counters()
    meters = Meters(counters, ceiling=rate, concurrency=concurrency, primary=primary)
    caller = Caller(meters, retry_policy)
    wanted = dict(services)
    if os.fspath(ledger).startswith("s3://"):
        wanted.setdefault("s3", 16)
    async with AsyncExitStack() as stack:
        clients = await open_clients(stack, aws, session, wanted)
        location = open_location(ledger, clients, caller)
        index = await read_location(location, loops=True, intents=intents)
        require_job(index)
        settings = job_settings(index, aws)
        flows = settings.flows
        regions = {}
        for name, arn in flows.items():
            if len(flows) == 1:  # a job of one flow: the command's clients, as ever
                regions[name] = Region(name, arn, clients, caller)
                continue
            own = Meters(counters, ceiling=rate, concurrency=concurrency, primary=primary)
            opened = await open_clients(stack, aws, session, services, region=name)
            regions[name] = Region(name, arn, opened, Caller(own, retry_policy))
        writer = None
        if append:
            file = await stack.enter_async_context(location.lifecycle())
            writer = await stack.enter_async_context(LedgerWriter.open(file, None))
        yield Context(index, settings, caller, clients, writer, location, counters, 0, regions)
