"""What one run of a job did: its counts, how it ended, and the CLI's exit status for it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Summary:
    """What one run did.  `exit_code` is the CLI's exit status for it."""

    ledger: str
    task: str
    counts: Mapping[str, Any]
    elapsed: float
    stopped: bool = False  # a graceful stop was requested before the manifest's end
    aborted: str | None = None  # why the job stopped early, if it did
    #: the manifest was read from after this line: the lines before were settled, as the
    #: ledger's resume point says (they are counted, as ``skipped...``, not read again)
    resumed_after_line: int | None = None
    #: how the start call's rate was set, per region: the quota Service Quotas told, the
    #: rate given, or found by pacing (and why Service Quotas did not tell it)
    rates: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        if self.aborted is not None:
            return 3
        if self.stopped:
            return 130
        c = self.counts
        attention = (
            "failed",
            "invalid",
            "skipped_invalid",
            "skipped_failed",
            "unverified",
            "name_taken",
        )
        return 1 if any(c.get(name) for name in attention) else 0

    def to_record(self) -> dict[str, Any]:
        return {
            "event": "summary",
            **self.counts,
            "elapsed_s": round(self.elapsed, 3),
            "stopped": self.stopped,
            "aborted": self.aborted,
            "rates": list(self.rates),
        }
