"""Human loops: the one piece of state the emulated services share.

Lifecycle: a loop starts InProgress; ``complete_after`` seconds later it becomes Completed
(or Failed, for a ``failure_rate`` share); StopHumanLoop makes it Stopping and, after
``stopping_seconds``, Stopped.  Time-driven changes are applied lazily (``tick`` on every
call, a heap of deadlines), so nothing runs in the background and every operation is O(1)
or O(log n) except listing.

A deleted loop disappears from Describe and List, but its name stays taken for good:
starting a loop with that name again is a name conflict.  (The service promises only that
names are unique per account and region; keeping them taken is the safe reading, and it
lets a submitter tell "deleted" from "never existed".)

Every loop is also counted against its *input* (the InputContent of a custom task, the
document of a built-in one) so that tests can check that each input got exactly one loop.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

IN_PROGRESS: Final = "InProgress"
COMPLETED: Final = "Completed"
FAILED: Final = "Failed"
STOPPING: Final = "Stopping"
STOPPED: Final = "Stopped"
#: statuses a loop can be deleted in
FINISHED: Final = frozenset({COMPLETED, FAILED, STOPPED})

FAILURE_CODE: Final = "TaskTimedOut"
FAILURE_REASON: Final = "No worker completed the task before it expired."


def input_key(identity: str) -> str:
    """A short, stable digest of an input's identity (what "the same input" means)."""
    return hashlib.blake2b(identity.encode(), digest_size=12).hexdigest()


@dataclass(slots=True, eq=False)
class Loop:
    """One human loop and everything the emulator remembers about it."""

    name: str
    arn: str
    flow_arn: str
    flow_name: str
    task: str  # "custom" | "textract" | "rekognition"
    input_key: str
    input_content: str | None
    s3: dict[str, str] | None
    created_at: float  # Unix time
    seq: int  # creation order
    ends_failed: bool = False
    status: str = IN_PROGRESS
    stopping_until: float = 0.0
    deleted: bool = False

    def refresh(self, now: float) -> None:
        """Apply the Stopping -> Stopped step once its time has come."""
        if self.status == STOPPING and now >= self.stopping_until:
            self.status = STOPPED

    def output_uri(self, bucket: str) -> str:
        """Where A2I writes the review: the flow definition, creation time (UTC), loop name."""
        stamp = time.strftime("%Y/%m/%d/%H/%M/%S", time.gmtime(self.created_at))
        return f"s3://{bucket}/{self.flow_name}/{stamp}/{self.name}/output.json"

    def describe(self, bucket: str) -> dict[str, Any]:
        """The DescribeHumanLoop answer."""
        answer: dict[str, Any] = {
            "CreationTime": self.created_at,
            "HumanLoopStatus": self.status,
            "HumanLoopName": self.name,
            "HumanLoopArn": self.arn,
            "FlowDefinitionArn": self.flow_arn,
        }
        if self.status == COMPLETED:
            answer["HumanLoopOutput"] = {"OutputS3Uri": self.output_uri(bucket)}
        elif self.status == FAILED:
            answer["FailureReason"] = FAILURE_REASON
            answer["FailureCode"] = FAILURE_CODE
        return answer

    def summary(self) -> dict[str, Any]:
        """One entry of ListHumanLoops."""
        answer: dict[str, Any] = {
            "HumanLoopName": self.name,
            "HumanLoopStatus": self.status,
            "CreationTime": self.created_at,
            "FlowDefinitionArn": self.flow_arn,
        }
        if self.status == FAILED:
            answer["FailureReason"] = FAILURE_REASON
        return answer

    def introspect(self) -> dict[str, Any]:
        """The loop as ``GET /_emulator/loops`` shows it."""
        answer: dict[str, Any] = {
            "name": self.name,
            "arn": self.arn,
            "flow_definition_arn": self.flow_arn,
            "status": self.status,
            "created_at": self.created_at,
            "input_key": self.input_key,
            "task": self.task,
            "deleted": self.deleted,
        }
        if self.input_content is not None:
            answer["input_content"] = self.input_content
        else:
            answer["s3"] = self.s3
        return answer


@dataclass(slots=True)
class LoopStore:
    """All loops by name and by flow definition, plus the per-input counts."""

    _by_name: dict[str, Loop] = field(default_factory=dict)  # deleted loops included
    _by_flow: dict[str, list[Loop]] = field(default_factory=dict)  # in creation order
    _deadlines: list[tuple[float, int, Loop]] = field(default_factory=list)
    _per_input: dict[str, int] = field(default_factory=dict)
    in_progress: int = 0
    created: int = 0
    deleted: int = 0
    inputs_with_multiple_loops: int = 0
    max_loops_per_input: int = 0

    @property
    def inputs(self) -> int:
        """How many distinct inputs got at least one loop."""
        return len(self._per_input)

    def holder(self, name: str) -> Loop | None:
        """The loop that holds `name`, deleted or not."""
        return self._by_name.get(name)

    def get(self, name: str, now: float) -> Loop | None:
        """A loop that can be described (not deleted), its status brought up to date."""
        loop = self._by_name.get(name)
        if loop is None or loop.deleted:
            return None
        loop.refresh(now)
        return loop

    def create(
        self,
        *,
        name: str,
        arn: str,
        flow_arn: str,
        flow_name: str,
        task: str,
        key: str,
        input_content: str | None,
        s3: dict[str, str] | None,
        now: float,
        complete_after: float | None,
        ends_failed: bool,
    ) -> Loop:
        self.created += 1
        loop = Loop(
            name,
            arn,
            flow_arn,
            flow_name,
            task,
            key,
            input_content,
            s3,
            now,
            self.created,
            ends_failed,
        )
        self._by_name[name] = loop
        self._by_flow.setdefault(flow_arn, []).append(loop)
        self.in_progress += 1
        if complete_after is not None:
            heapq.heappush(self._deadlines, (now + complete_after, loop.seq, loop))
        count = self._per_input.get(key, 0) + 1
        self._per_input[key] = count
        if count == 2:
            self.inputs_with_multiple_loops += 1
        if count > self.max_loops_per_input:
            self.max_loops_per_input = count
        return loop

    def tick(self, now: float) -> None:
        """Finish every InProgress loop whose time has come."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, _, loop = heapq.heappop(deadlines)
            if loop.status == IN_PROGRESS:
                loop.status = FAILED if loop.ends_failed else COMPLETED
                self.in_progress -= 1

    def stop(self, loop: Loop, now: float, stopping_seconds: float) -> None:
        if loop.status == IN_PROGRESS:
            loop.status = STOPPING
            loop.stopping_until = now + stopping_seconds
            self.in_progress -= 1
            loop.refresh(now)

    def delete(self, loop: Loop) -> None:
        loop.deleted = True
        self.deleted += 1

    def page(
        self,
        flow_arn: str,
        *,
        after: float | None,
        before: float | None,
        descending: bool,
        limit: int,
        token: int | None,
        now: float,
    ) -> tuple[list[Loop], int | None]:
        """One page of a flow definition's loops; returns it and the next page's token.

        The token is the creation number of the last loop returned, so pages stay right
        while loops are created and deleted between calls.
        """
        loops = self._by_flow.get(flow_arn, [])
        if descending:
            end = len(loops) if token is None else bisect.bisect_left(loops, token, key=_seq)
            candidates: Iterator[Loop] = (loops[i] for i in range(end - 1, -1, -1))
        else:
            start = 0 if token is None else bisect.bisect_right(loops, token, key=_seq)
            candidates = (loops[i] for i in range(start, len(loops)))
        page: list[Loop] = []
        for loop in candidates:
            if loop.deleted:
                continue
            if after is not None and loop.created_at < after:
                continue
            if before is not None and loop.created_at > before:
                continue
            if len(page) == limit:
                return page, page[-1].seq
            loop.refresh(now)
            page.append(loop)
        return page, None

    def every(self, now: float) -> list[Loop]:
        """Every loop ever created (deleted ones too), in creation order."""
        loops = list(self._by_name.values())  # names are never removed: creation order
        for loop in loops:
            loop.refresh(now)
        return loops


def _seq(loop: Loop) -> int:
    return loop.seq
