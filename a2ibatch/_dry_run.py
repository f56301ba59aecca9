"""`dry_run()`: what a job would send, found without calling anything or writing anything.

The dry run reads and checks the whole manifest and decides every entry through the job's
own plan (`Planner`), so its count of items to send is exactly what `submit` would send,
with and without `retry_failed`.  It reads the ledger without changing it (a torn tail is
left for the real run to cut).  For a Textract or Rekognition job of flows in several
regions, it asks S3 for each bucket's region (GetBucketLocation, once per bucket, read-only):
which flow an item goes to, and so its loop name, depends on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from ._aws import open_clients
from ._calls import Caller
from ._counters import Counters
from ._entries import Source, as_batches, done_ids
from ._meters import Meters
from ._models import Invalid, TaskType
from ._plan import job_planner, tally
from ._routes import routes_for
from ._settings import SubmitSettings
from .ledger import location_for, read_location
from .manifest import Entry, read_manifest_batches


@dataclass
class DryRunReport:
    """What a job would send, found without calling anything or writing any file."""

    task: str
    items: int = 0  # valid items seen
    to_send: int = 0  # items a run would send (what preflight's cost estimate counts)
    to_check: int = 0  # of those: a call may have reached the service; checked first
    already_done: int = 0  # the ledger has them started or not activated
    skipped_failed: int = 0  # failed earlier; a run sends them with retry_failed
    skipped_name_taken: int = 0  # recorded name_taken earlier
    invalid: int = 0
    problems: list[Invalid] = field(default_factory=list)  # the first `max_problems`
    sample_names: list[str] = field(default_factory=list)
    #: a job of several regions: the items a run would send to each
    regions: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.invalid else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "items": self.items,
            "to_send": self.to_send,
            "to_check": self.to_check,
            "already_done": self.already_done,
            "skipped_failed": self.skipped_failed,
            "skipped_name_taken": self.skipped_name_taken,
            "invalid": self.invalid,
            "sample_names": list(self.sample_names),
            **({"regions": dict(self.regions)} if self.regions else {}),
        }


async def dry_run(
    settings: SubmitSettings,
    *,
    session: Any | None = None,
    items: Source | None = None,
    max_problems: int = 1000,
) -> DryRunReport:
    """Read and check the whole manifest and decide every entry; send and write nothing."""
    async with AsyncExitStack() as stack:
        in_s3 = str(settings.ledger).startswith("s3://")
        manifest_in_s3 = items is None and settings.manifest.startswith("s3://")
        several = len(settings.flow_definition_arns) > 1
        buckets = several and settings.task is not TaskType.CUSTOM  # whose regions matter
        clients = None
        caller = Caller(Meters(Counters()))
        if in_s3 or manifest_in_s3 or buckets:
            clients = await open_clients(stack, settings.aws, session, {"s3": 16})
        if clients is not None and in_s3:
            location = location_for(settings.ledger, s3=clients.s3, caller=caller)
        else:
            location = location_for(settings.ledger)
        index = await read_location(location, repair=False)
        routes = routes_for(settings, clients.s3 if clients is not None else None, caller)
        planner = job_planner(settings, index, unique=items is not None, routes=routes)
        source: AsyncIterator[list[Entry]]
        if items is not None:
            source = as_batches(items)
        else:
            s3 = clients.s3 if clients is not None and manifest_in_s3 else None
            source = read_manifest_batches(
                settings.manifest,
                settings.task,
                s3_client=s3,
                max_lines=settings.max_lines,
                done=done_ids(settings, index),
            )
        found = await tally(planner, source, max_problems=max_problems, samples=5)
    return DryRunReport(
        task=settings.task.value,
        items=found.items,
        to_send=found.to_send,
        to_check=found.to_check,
        already_done=found.done,
        skipped_failed=found.failed,
        skipped_name_taken=found.name_taken,
        invalid=found.invalid,
        problems=found.problems,
        sample_names=found.sample_names,
        regions={region: part.to_send for region, part in sorted(found.regions.items())},
    )
