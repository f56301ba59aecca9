"""`reconcile`: compare the ledger with the service's list of the job's loops, both ways.

Reported: loops named with the job's prefix that the ledger has no ``started`` outcome for
(an answer lost with its record: rerunning submit records them), and loops the ledger
started that the service does not list (deleted outside a2ibatch, or aged out: A2I removes
finished loops after 30 days).  Loops deleted with `delete_loops` are expected to be gone.
A job of flows in several regions is compared region by region: each region's flow
definition is listed there, against the ledger's loops of that region.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .._aws import A2I_SERVICE
from .._calls import CallFailed
from .._errors import JobAborted, LedgerError
from .._retry import RetryPolicy
from .._settings import AwsSettings
from ..ledger import iso_time, parse_time
from ._common import open_job

#: ListHumanLoops may report a loop created a little before the ledger's clock said
RECONCILE_SLACK = timedelta(minutes=1)
#: a run killed with calls in flight: their loops may be created up to a read timeout after
#: its last record (the next run records them)
AFTER_RUN = timedelta(minutes=5)


@dataclass(frozen=True)
class ServiceLoop:
    """A loop ListHumanLoops reports that the ledger has no outcome for."""

    loop_name: str
    status: str
    creation_time: str
    #: the ledger has an intent for it: a call whose answer was lost; rerunning submit
    #: with the same manifest records it
    pending_intent: bool


@dataclass(frozen=True)
class LedgerLoop:
    """A loop the ledger started that the service does not list."""

    id: str
    loop_name: str
    human_loop_arn: str | None
    last_status: str | None


@dataclass
class ReconcileReport:
    """Differences between the ledger and the service, for one job."""

    ledger: str
    #: the job's flow definition, or (several regions) every region's
    flow_definition_arn: str | tuple[str, ...]
    name_prefix: str
    since: str  # the first window's CreationTimeAfter
    until: str  # the last window's CreationTimeBefore
    windows: list[tuple[str, str]]  # every window listed (runs far apart are listed apart)
    service_loops: int  # loops listed under the flow definition in those windows
    ledger_loops: int  # loops the ledger started
    missing_from_ledger: list[ServiceLoop]
    unknown_to_service: list[LedgerLoop]

    @property
    def ok(self) -> bool:
        return not self.missing_from_ledger and not self.unknown_to_service

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "flow_definition_arn": (
                arn if isinstance(arn := self.flow_definition_arn, str) else list(arn)
            ),
            "name_prefix": self.name_prefix,
            "since": self.since,
            "until": self.until,
            "windows": [list(w) for w in self.windows],
            "service_loops": self.service_loops,
            "ledger_loops": self.ledger_loops,
            "missing_from_ledger": [vars(x) for x in self.missing_from_ledger],
            "unknown_to_service": [vars(x) for x in self.unknown_to_service],
            "ok": self.ok,
        }


async def reconcile(
    ledger: str | os.PathLike[str],
    *,
    session: Any | None = None,
    aws: AwsSettings | None = None,
    retry_policy: RetryPolicy | None = None,
) -> ReconcileReport:
    """List the flow definition's loops created during the job's runs (both bounds of each
    run's span, with a slack) and compare them with the ledger's."""
    async with open_job(
        ledger,
        aws=aws,
        session=session,
        services={A2I_SERVICE: 4},
        retry_policy=retry_policy,
        intents=True,
        append=False,
    ) as job:
        index = job.index
        assert index.header is not None
        windows = run_windows(index.run_spans)
        if not windows:
            raise LedgerError("the ledger's job records have unreadable times (field 'at')")
        prefix = index.header.name_prefix + "-"
        seen: set[tuple[str, str]] = set()  # (region, loop name)
        missing: list[ServiceLoop] = []
        listed = 0
        for region, start, end in [(r, a, b) for r in job.regions.values() for a, b in windows]:
            a2i = region.clients.a2i
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {
                    "FlowDefinitionArn": region.flow_definition_arn,
                    "CreationTimeAfter": start,
                    "CreationTimeBefore": end,
                    "MaxResults": 100,
                }
                if token:
                    kwargs["NextToken"] = token
                try:
                    page = await region.caller.call(
                        "ListHumanLoops", a2i.list_human_loops, **kwargs
                    )
                except CallFailed as exc:
                    raise JobAborted(
                        f"cannot list the flow definition's human loops: {exc.error.code}",
                        code=exc.error.code,
                    ) from None
                for summary in page.get("HumanLoopSummaries", []):
                    listed += 1
                    name = str(summary.get("HumanLoopName"))
                    seen.add((region.name, name))
                    if name in index.loops or not name.startswith(prefix):
                        continue
                    missing.append(
                        ServiceLoop(
                            loop_name=name,
                            status=str(summary.get("HumanLoopStatus")),
                            creation_time=iso_time(summary.get("CreationTime")) or "",
                            pending_intent=name in index.intents,
                        )
                    )
                token = page.get("NextToken")
                if not token:
                    break
    unknown = [
        LedgerLoop(loop.id, loop.loop_name, loop.human_loop_arn, loop.status)
        for loop in index.loops.values()
        if (job.region(loop).name, loop.loop_name) not in seen and not loop.deleted_by_us
    ]
    return ReconcileReport(
        ledger=index.path,
        flow_definition_arn=job.settings.flow_definition_arns[0]
        if len(job.regions) == 1
        else job.settings.flow_definition_arns,
        name_prefix=index.header.name_prefix,
        since=_iso(windows[0][0]),
        until=_iso(windows[-1][1]),
        windows=[(_iso(a), _iso(b)) for a, b in windows],
        service_loops=listed,
        ledger_loops=len(index.loops),
        missing_from_ledger=missing,
        unknown_to_service=unknown,
    )


def run_windows(spans: list[tuple[str, str]]) -> list[tuple[datetime, datetime]]:
    """The spans of the job's runs, widened by the slacks and merged where they overlap."""
    widened: list[tuple[datetime, datetime]] = []
    for first, last in spans:
        start, end = parse_time(first), parse_time(last)
        if start is None or end is None:
            continue
        widened.append((start - RECONCILE_SLACK, end + AFTER_RUN))
    widened.sort()
    merged: list[tuple[datetime, datetime]] = []
    for start, end in widened:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")
