"""`stop_loops` and `delete_loops`: stop the job's in-progress loops, delete its finished ones.

Only the loops the ledger names are ever touched.  What to act on comes from the statuses
the ledger holds, brought up to date in ListHumanLoops pages for the loops not known to be
final (`_listing.refresh`): no describe before each action.  The service's answer to the
action is the truth and is recorded (a ``loop_action`` record): a loop it no longer has is
recorded as Deleted; one in another state than the pages said keeps the error code.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from .._aws import A2I_SERVICE
from .._calls import CallFailed
from .._retry import RetryPolicy
from .._settings import AwsSettings
from ..ledger import LoopState, loop_action_record
from ._common import Context, Region, open_job
from ._listing import refresh

#: the only statuses A2I lets DeleteHumanLoop act on
DELETABLE_STATUSES = frozenset({"Completed", "Failed", "Stopped"})

Action = Literal["stop", "delete"]


@dataclass
class ActionReport:
    """What `stop_loops` or `delete_loops` did."""

    action: Action
    acted: int  # loops stopped / deleted
    skipped: dict[str, int]  # loops left alone, by the status the service reported
    errors: dict[str, int]  # failed describes and actions, by error code
    candidates: int  # loops the ledger offered

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "acted": self.acted,
            "skipped": self.skipped,
            "errors": self.errors,
            "candidates": self.candidates,
        }


def action_past(action: str) -> str:
    """The ``result`` a successful action records: "stopped" or "deleted"."""
    return "stopped" if action == "stop" else "deleted"


def candidates(loops: dict[str, LoopState], action: Action) -> list[LoopState]:
    """Loops an action may apply to, before the service is asked about them."""
    if action == "stop":
        return [loop for loop in loops.values() if not loop.final]
    return [loop for loop in loops.values() if loop.status != "Deleted"]


async def stop_loops(
    ledger: str | os.PathLike[str],
    *,
    session: Any | None = None,
    aws: AwsSettings | None = None,
    rate: float | None = None,
    concurrency: int | None = None,
    retry_policy: RetryPolicy | None = None,
) -> ActionReport:
    """StopHumanLoop for each of the job's loops that is in progress.

    A stopped loop goes Stopping, then Stopped; `track` records that.  Loops the ledger
    does not name are never touched.
    """
    return await _act("stop", ledger, session, aws, rate, concurrency, retry_policy)


async def delete_loops(
    ledger: str | os.PathLike[str],
    *,
    session: Any | None = None,
    aws: AwsSettings | None = None,
    rate: float | None = None,
    concurrency: int | None = None,
    retry_policy: RetryPolicy | None = None,
) -> ActionReport:
    """DeleteHumanLoop for each of the job's loops that is finished.

    Only Completed, Failed or Stopped loops are deleted (A2I refuses the rest, and deleting
    is for cleaning up, not for cancelling work).  Answers already in your S3 bucket stay.
    """
    return await _act("delete", ledger, session, aws, rate, concurrency, retry_policy)


async def _act(
    action: Action,
    ledger: str | os.PathLike[str],
    session: Any | None,
    aws: AwsSettings | None,
    rate: float | None,
    concurrency: int | None,
    retry_policy: RetryPolicy | None,
) -> ActionReport:
    operation = "StopHumanLoop" if action == "stop" else "DeleteHumanLoop"
    async with open_job(
        ledger,
        aws=aws,
        session=session,
        services={A2I_SERVICE: 1024},
        rate=rate,
        concurrency=concurrency,
        retry_policy=retry_policy,
    ) as job:
        offered = candidates(job.index.loops, action)
        refreshed = await refresh(job, [loop for loop in offered if not loop.final])
        errors: dict[str, int] = dict(refreshed.errors)
        skipped: Counter[str] = Counter()
        targets: list[LoopState] = []
        for loop in offered:
            status = loop.status or "Untracked"
            if status in (("InProgress",) if action == "stop" else DELETABLE_STATUSES):
                targets.append(loop)
            else:
                skipped[status] += 1
        acted = 0

        async def one(region: Region, loop: LoopState) -> None:
            nonlocal acted
            a2i = region.clients.a2i
            method = a2i.stop_human_loop if action == "stop" else a2i.delete_human_loop
            try:
                await region.caller.call(operation, method, HumanLoopName=loop.loop_name)
            except CallFailed as exc:
                code = exc.error.code
                await _record(job, loop, action, code)
                if exc.not_found:  # the service no longer has it: nothing left to do
                    await job.observe(loop, "Deleted", None, "the service no longer has it")
                    skipped["Deleted"] += 1
                    return
                errors[code] = errors.get(code, 0) + 1
                return
            acted += 1
            await _record(job, loop, action, action_past(action))
            if action == "delete":
                loop.deleted_by_us = True
                await job.observe(loop, "Deleted", None, None)

        await job.each(targets, one)
    return ActionReport(action, acted, dict(skipped), errors, len(offered))


async def _record(job: Context, loop: LoopState, action: str, result: str) -> None:
    if job.writer is not None:
        await job.writer.record(
            loop_action_record(
                item_id=loop.id, loop_name=loop.loop_name, action=action, result=result
            )
        )
