"""The job's loops' statuses in pages: ListHumanLoops over the job's creation windows.

DescribeHumanLoop costs a call per loop; ListHumanLoops returns 100 loops a call with their
name, status, creation time and failure reason.  A pass over a million loops is ten thousand
calls in pages instead of a million describes.

Which loops to list: the flow definition's loops created while the job's loops were created.
Each open loop (not yet known to be final) has a time: its creation time once the service
told it, else the time its ``started`` outcome was recorded (just after its creation).  The
times are cut into *windows* wherever a gap of more than `GAP` separates them (the runs of a
job, days apart, are listed apart), and each window is widened by a slack for the clocks
and for calls still in flight when a run was killed.

Other jobs' loops on the same flow definition inside a window cost pages too, so each page
is weighed (a cost model): once the pages the rest of the window will take (from the loops
per second of window seen so far) outnumber the job's open loops still to find in it, the
window is left and those loops are described one by one instead.  A window whose loops are
all found is left at once.  Loops no window showed (created outside every window, or gone)
are described at the end: ResourceNotFound means the service no longer has them.  A job
of flows in several regions lists each region's flow definition, for that region's loops,
in that region.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .._calls import CallFailed
from .._errors import JobAborted
from ..ledger import LoopState, iso_time, parse_time
from ._common import Context, Region

#: open loops further apart than this are listed in separate windows
GAP = timedelta(minutes=10)
#: a loop may have been created this long before its outcome's time says (clocks; a run
#: killed with calls in flight records their loops later, when it resumes) ...
SLACK_BEFORE = timedelta(minutes=5)
#: ... and a creation time the service reported is exact (its own clock): a margin only
EXACT_SLACK = timedelta(seconds=1)
#: ... and this long after (clocks)
SLACK_AFTER = timedelta(minutes=1)
PAGE = 100
#: a loop's time (its outcome's) may lag its creation by a call's round trip or a few
AHEAD = timedelta(seconds=10)


def loop_time(loop: LoopState) -> datetime | None:
    """When `loop` was created: the service's creation time, else its outcome's time."""
    return parse_time(loop.creation_time) or parse_time(loop.started_at)


@dataclass
class Window:
    """A span of creation times to list, and the open loops expected in it."""

    start: datetime
    end: datetime
    loops: list[LoopState] = field(default_factory=list)
    latest: datetime = field(default_factory=lambda: datetime.min.replace(tzinfo=UTC))


def windows_for(loops: Iterable[LoopState]) -> tuple[list[Window], list[LoopState]]:
    """The windows that cover `loops`, and the loops without any time (to describe)."""
    timed: list[tuple[datetime, datetime, LoopState]] = []
    untimed: list[LoopState] = []
    for loop in loops:
        exact = parse_time(loop.creation_time)
        when = exact or parse_time(loop.started_at)
        if when is None:
            untimed.append(loop)
        else:
            earliest = when - (EXACT_SLACK if exact is not None else SLACK_BEFORE)
            timed.append((when, earliest, loop))
    timed.sort(key=lambda entry: entry[0])
    windows: list[Window] = []
    last: datetime | None = None
    for when, earliest, loop in timed:
        if last is None or when - last > GAP:
            windows.append(Window(earliest, when + SLACK_AFTER))
        window = windows[-1]
        window.start = min(window.start, earliest)
        window.end = when + SLACK_AFTER
        window.latest = when
        window.loops.append(loop)
        last = when
    return windows, untimed


@dataclass
class Pass:
    """What one pass learnt and cost."""

    pages: int = 0
    described: int = 0
    seen: set[str] = field(default_factory=set)  # loop names the listing returned
    errors: dict[str, int] = field(default_factory=dict)


async def refresh(job: Context, loops: list[LoopState]) -> Pass:
    """Learn the current status of `loops` (the job's open ones), in pages where that is
    cheaper, and record every change."""
    result = Pass()
    leftover: list[LoopState] = []
    for region, group in job.by_region(loops).values():
        windows, untimed = windows_for(group)
        leftover.extend(untimed)
        for window in windows:
            leftover.extend(await _list_window(job, region, window, result))
    leftover = [loop for loop in leftover if loop.loop_name not in result.seen]

    async def describe(_region: Region, loop: LoopState) -> None:
        result.described += 1
        await job.describe(loop, result.errors)

    await job.each(leftover, describe)
    return result


async def _list_window(
    job: Context, region: Region, window: Window, result: Pass
) -> list[LoopState]:
    """List one window's pages while they are worth it; the open loops it did not find."""
    a2i = region.clients.a2i
    wanted = {loop.loop_name: loop for loop in window.loops}
    missing = len(wanted)
    token: str | None = None
    listed = 0
    first: datetime | None = None  # the creation time of the first loop listed
    while missing:
        kwargs: dict[str, Any] = {
            "FlowDefinitionArn": region.flow_definition_arn,
            "CreationTimeAfter": window.start,
            "CreationTimeBefore": window.end,
            "SortOrder": "Ascending",
            "MaxResults": PAGE,
        }
        if token:
            kwargs["NextToken"] = token
        try:
            page = await region.caller.call("ListHumanLoops", a2i.list_human_loops, **kwargs)
        except CallFailed as exc:
            raise JobAborted(
                f"cannot list the flow definition's human loops: {exc.error.code}",
                code=exc.error.code,
            ) from None
        result.pages += 1
        position: datetime | None = None
        for summary in page.get("HumanLoopSummaries", []):
            listed += 1
            name = summary.get("HumanLoopName")
            created = summary.get("CreationTime")
            position = created if isinstance(created, datetime) else position
            first = first or position
            loop = wanted.pop(str(name), None)
            if loop is None:
                continue  # another job's loop, or one of ours already final
            missing -= 1
            result.seen.add(loop.loop_name)
            await job.observe(
                loop,
                str(summary.get("HumanLoopStatus")),
                None,
                summary.get("FailureReason"),
                iso_time(created),
            )
        token = page.get("NextToken")
        if not token:
            break
        if (
            position is not None
            and first is not None
            and _not_worth_it(window, first, position, listed, wanted)
        ):
            break
    return list(wanted.values())


def _not_worth_it(
    window: Window,
    first: datetime,
    position: datetime,
    listed: int,
    wanted: dict[str, LoopState],
) -> bool:
    """Whether the rest of the listing costs more pages than describing what is left (one
    call each), judged by the loops per second listed so far (counted from the first loop
    listed: the window's slack before it holds none).  The rest runs to the window's latest
    loop (a loop is created a little before its outcome's time), not to the window's end:
    the listing stops once every loop is found."""
    until = min(window.end, window.latest + AHEAD)
    done = max((position - first).total_seconds(), 0.001)
    left = (until - position).total_seconds()
    if left <= 0:
        return False
    pages_left = math.ceil(listed / done * left / PAGE)
    return pages_left > len(wanted)
