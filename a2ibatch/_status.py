"""`status()`: what a ledger says about its job, for people (``a2ibatch status``) and programs.

It counts items (ids) by the state their last outcome left them in, the invalid lines of the
last run (lines, with or without a readable id), and the job's human loops by the status
`track` last recorded; with `list_states`, it lists the items (and lines) of those states with
their error code and reason, never their content.  Reading repairs a torn tail (what a crash
or a power loss leaves) and says how many bytes were cut.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from ._aws import open_clients
from ._calls import Caller
from ._counters import Counters
from ._errors import ConfigError, LedgerError, setting
from ._meters import Meters
from ._models import Status
from ._settings import AwsSettings
from ._text import printable
from .ledger import Row, location_for, read_location

#: the states `list_states` may name
LISTABLE: frozenset[Status] = frozenset(Status)


@dataclass
class StatusReport:
    """A ledger's account of its job."""

    ledger: str
    task: str | None
    #: the first run's flow definition: one ARN, or (several regions) a tuple of them
    flow_definition_arn: str | tuple[str, ...] | None
    name_prefix: str | None
    runs: int
    items: dict[str, int]  # ids by their last state (every state, zeros included)
    invalid_lines: int  # invalid outcomes recorded by the last run (lines)
    loops: dict[str, int]  # the job's loops by last tracked status ("Untracked": never)
    pending: int  # ids with a call that may have reached the service and no outcome
    repaired_bytes: int  # bytes of a torn tail cut off while reading
    rows: list[Row] = field(default_factory=list)  # with `list_states`
    #: region -> its flow definition, of every region the job's runs named
    flows: dict[str, str] = field(default_factory=dict)
    #: a job of several regions: ids by the region they were sent to, then by state
    regions: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "task": self.task,
            "flow_definition_arn": (
                list(arn) if isinstance(arn := self.flow_definition_arn, tuple) else arn
            ),
            "name_prefix": self.name_prefix,
            "runs": self.runs,
            "items": self.items,
            "invalid_lines_last_run": self.invalid_lines,
            "pending_intents": self.pending,
            "loops": self.loops,
            "repaired_bytes": self.repaired_bytes,
            **({"flows": self.flows, "regions": self.regions} if len(self.flows) > 1 else {}),
        }


def _states(names: Collection[str | Status] | None) -> frozenset[Status] | None:
    if names is None:
        return None
    chosen: set[Status] = set()
    for name in names:
        try:
            chosen.add(Status(name))
        except ValueError:
            known = ", ".join(sorted(s.value for s in LISTABLE))
            raise ConfigError(
                f"{setting('list_states')} takes states among {known}; not {printable(name)!r}"
            ) from None
    return frozenset(chosen)


async def status(
    ledger: str | os.PathLike[str],
    *,
    list_states: Collection[str | Status] | None = None,
    aws: AwsSettings | None = None,
    session: Any | None = None,
) -> StatusReport:
    """What the ledger at `ledger` says: a file, a directory of shards' ledgers, or an S3
    prefix (read with `aws` and `session`); LedgerError when there is none."""
    select = _states(list_states)
    async with AsyncExitStack() as stack:
        in_s3 = os.fspath(ledger).startswith("s3://")
        if in_s3:
            clients = await open_clients(stack, aws or AwsSettings(), session, {"s3": 16})
            location = location_for(ledger, s3=clients.s3, caller=Caller(Meters(Counters())))
        else:
            location = location_for(ledger)
        index = await read_location(location, loops=True, select=select)
    if not index.records:
        raise LedgerError(f"no ledger at {printable(location.label)}")
    header = index.header
    return StatusReport(
        ledger=location.label,
        task=header.task.value if header else None,
        flow_definition_arn=header.flow_definition_arn if header else None,
        name_prefix=header.name_prefix if header else None,
        runs=index.runs,
        items={s.value: n for s, n in index.counts.items()},
        invalid_lines=index.invalid_lines,
        loops=index.loop_counts(),
        pending=index.pending,
        repaired_bytes=index.repaired_bytes,
        rows=index.rows,
        flows=dict(index.flows),
        regions=index.region_counts() if len(index.flows) > 1 else {},
    )
