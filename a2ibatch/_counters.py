"""What a job (or a lifecycle command) did so far: one set of counters, read while it runs.

Items are counted by the state their outcome leaves them in; calls by what the service
answered.  Progress displays, summaries and `Submitter.stats` read these; nothing else
keeps counts of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ._models import Status


@dataclass
class Counters:
    """Counts since the start of a run."""

    started: int = 0
    not_activated: int = 0
    failed: int = 0
    invalid: int = 0
    unverified: int = 0  # a call may have reached the service; a rerun checks first
    name_taken: int = 0  # an explicit name held by a loop the ledger cannot call its own
    skipped: int = 0  # already done in the ledger
    skipped_failed: int = 0  # failed earlier, not retried without retry_failed
    skipped_name_taken: int = 0  # recorded name_taken earlier
    other_shards: int = 0  # items of the job's other shards (not this run's)
    #: invalid lines before the manifest's resume point (refused, and recorded, earlier)
    skipped_invalid: int = 0
    recovered: int = 0  # loops found to exist after an ambiguous attempt
    #: Textract/Rekognition items analysed again after an answer was lost (no loop to find)
    reanalysed: int = 0
    calls: int = 0
    throttled: int = 0
    retries: int = 0
    in_flight: int = 0
    paused: bool = False  # the in-progress loop quota is full: the job waits
    paused_seconds: float = 0.0
    unreachable: bool = False  # the endpoint does not answer: the job waits and probes
    unreachable_seconds: float = 0.0

    def count(self, status: Status) -> None:
        setattr(self, status.value, getattr(self, status.value) + 1)

    @property
    def decided(self) -> int:
        """Items whose outcome this run recorded."""
        return (
            self.started
            + self.not_activated
            + self.failed
            + self.invalid
            + self.unverified
            + self.name_taken
        )

    @property
    def skipped_all(self) -> int:
        return (
            self.skipped
            + self.skipped_failed
            + self.skipped_name_taken
            + self.other_shards
            + self.skipped_invalid
        )

    def as_dict(self) -> dict[str, Any]:
        """The counts for a summary (live flags left out)."""
        live = ("in_flight", "paused", "unreachable")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in live}
