"""`reconcile`: compare the ledger with the service's list of the job's loops, both ways.

Reported: loops named with the job's prefix that the ledger has no ``started`` outcome for
(an answer lost with its record: rerunning submit records them), and loops the ledger
started that the service does not list (deleted outside a2ibatch, or aged out: A2I removes
finished loops after 30 days).  Loops deleted with `delete_loops` are expected to be gone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .._aws import A2I_SERVICE
from .._calls import CallFailed
from .._errors import JobAborted, LedgerError
from .._retry import RetryPolicy
from .._settings import AwsSettings
from ._common import open_job

#: ListHumanLoops may report a loop created a little before the ledger's clock said
RECONCILE_SLACK = timedelta(minutes=1)


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
    flow_definition_arn: str
    name_prefix: str
    since: str  # CreationTimeAfter used for the listing
    service_loops: int  # loops listed under the flow definition since then
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
            "flow_definition_arn": self.flow_definition_arn,
            "name_prefix": self.name_prefix,
            "since": self.since,
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
    """List the flow definition's loops since the job began and compare with the ledger."""
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
        since = _parse_time(index.started_at) - RECONCILE_SLACK
        prefix = index.header.name_prefix + "-"
        seen: set[str] = set()
        missing: list[ServiceLoop] = []
        listed = 0
        a2i = job.clients.a2i
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "FlowDefinitionArn": index.header.flow_definition_arn,
                "CreationTimeAfter": since,
                "MaxResults": 100,
            }
            if token:
                kwargs["NextToken"] = token
            try:
                page = await job.caller.call("ListHumanLoops", a2i.list_human_loops, **kwargs)
            except CallFailed as exc:
                raise JobAborted(
                    f"cannot list the flow definition's human loops: {exc.error.code}",
                    code=exc.error.code,
                ) from None
            for summary in page.get("HumanLoopSummaries", []):
                listed += 1
                name = str(summary.get("HumanLoopName"))
                seen.add(name)
                if name in index.loops or not name.startswith(prefix):
                    continue
                created = summary.get("CreationTime")
                missing.append(
                    ServiceLoop(
                        loop_name=name,
                        status=str(summary.get("HumanLoopStatus")),
                        creation_time=(
                            created.isoformat() if isinstance(created, datetime) else str(created)
                        ),
                        pending_intent=name in index.intents,
                    )
                )
            token = page.get("NextToken")
            if not token:
                break
    unknown = [
        LedgerLoop(loop.id, loop.loop_name, loop.human_loop_arn, loop.status)
        for loop in index.loops.values()
        if loop.loop_name not in seen and not loop.deleted_by_us
    ]
    return ReconcileReport(
        ledger=index.path,
        flow_definition_arn=index.header.flow_definition_arn,
        name_prefix=index.header.name_prefix,
        since=since.isoformat().replace("+00:00", "Z"),
        service_loops=listed,
        ledger_loops=len(index.loops),
        missing_from_ledger=missing,
        unknown_to_service=unknown,
    )


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LedgerError("the ledger's job record has an unreadable time (field 'at')") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
