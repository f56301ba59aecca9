"""Human loops: the one piece of state the emulated services share.

Lifecycle: a loop starts InProgress; ``complete_after`` seconds later it becomes Completed
(or Failed, for a ``failure_rate`` share); StopHumanLoop makes it Stopping and, after
``stopping_seconds``, Stopped.  Time-driven changes are applied lazily (``tick`` on every
call, a heap of deadlines), so nothing runs in the background and every operation is O(1)
or O(log n) except listing.

Loops belong to a region, as in AWS: a name is unique per account and region, and a call
sees only its own region's loops.  A deleted loop disappears from Describe and List, but
its name stays taken for good: starting a loop with that name again (in that region) is a
name conflict.  (The service promises only that names are unique per account and region;
keeping them taken is the safe reading, and it lets a submitter tell "deleted" from "never
existed".)

Every loop is also counted against its *input* (the InputContent of a custom task, the
document of a built-in one) so that tests can check that each input got exactly one loop.
Loops that complete are queued in `completed` (when something collects them: the S3 side
writes their output.json from there).
"""

from __future__ import annotations

import hashlib
import heapq
import time
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
    region: str
    arn: str
    flow_arn: str
    flow_name: str
    task: str  # "custom" | "textract" | "rekognition"
    input_key: str
    input_content: str | None
    s3: dict[str, str] | None  # the built-in task's S3 object
    request: dict[str, Any] | None  # the built-in task's request, as sent
    output_path: str  # the flow definition's S3OutputPath when the loop started
    created_at: float  # Unix time
    seq: int  # creation order
    ends_failed: bool = False
    status: str = IN_PROGRESS
    finished_at: float = 0.0  # when it became Completed or Failed
    stopping_until: float = 0.0
    deleted: bool = False

    def refresh(self, now: float) -> None:
        """Apply the Stopping -> Stopped step once its time has come."""
        if self.status == STOPPING and now >= self.stopping_until:
            self.status = STOPPED

    @property
    def output_key(self) -> str:
        """The key of output.json: flow definition, creation time (UTC), loop name."""
        stamp = time.strftime("%Y/%m/%d/%H/%M/%S", time.gmtime(self.created_at))
        return f"{self.flow_name}/{stamp}/{self.name}/output.json"

    @property
    def output_uri(self) -> str:
        """Where A2I writes the review, under the flow definition's S3OutputPath."""
        return f"{self.output_path.rstrip('/')}/{self.output_key}"

    def describe(self) -> dict[str, Any]:
        """The DescribeHumanLoop answer."""
        answer: dict[str, Any] = {
            "CreationTime": self.created_at,
            "HumanLoopStatus": self.status,
            "HumanLoopName": self.name,
            "HumanLoopArn": self.arn,
            "FlowDefinitionArn": self.flow_arn,
        }
        if self.status == COMPLETED:
            answer["HumanLoopOutput"] = {"OutputS3Uri": self.output_uri}
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
            "region": self.region,
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
        if self.status == COMPLETED:
            answer["output_s3_uri"] = self.output_uri
        return answer


@dataclass(slots=True)
class LoopStore:
    """All loops by region and name and by flow definition, plus the per-input counts."""

    _by_name: dict[str, dict[str, Loop]] = field(default_factory=dict)  # deleted included
    _by_flow: dict[str, list[Loop]] = field(default_factory=dict)  # in creation order
    _all: list[Loop] = field(default_factory=list)  # in creation order
    _deadlines: list[tuple[float, int, Loop]] = field(default_factory=list)
    _per_input: dict[str, int] = field(default_factory=dict)
    _in_progress_by_region: dict[str, int] = field(default_factory=dict)
    #: loops that became Completed since the last `take_completed`; None: nobody collects
    completed: list[Loop] | None = None
    in_progress: int = 0
    created: int = 0
    deleted: int = 0
    inputs_with_multiple_loops: int = 0
    max_loops_per_input: int = 0

    @property
    def inputs(self) -> int:
        """How many distinct inputs got at least one loop."""
        return len(self._per_input)

    def in_progress_in(self, region: str) -> int:
        """InProgress loops of one region (the in-progress cap is per account and region)."""
        return self._in_progress_by_region.get(region, 0)

    def holder(self, region: str, name: str) -> Loop | None:
        """The loop that holds `name` in `region`, deleted or not."""
        names = self._by_name.get(region)
        return None if names is None else names.get(name)

    def get(self, region: str, name: str, now: float) -> Loop | None:
        """A loop that can be described (not deleted), its status brought up to date."""
        names = self._by_name.get(region)
        loop = None if names is None else names.get(name)
        if loop is None or loop.deleted:
            return None
        loop.refresh(now)
        return loop

    def create(self, loop: Loop, complete_after: float | None) -> Loop:
        """Add a new loop (its `seq` is assigned here)."""
        self.created += 1
        loop.seq = self.created
        names = self._by_name.get(loop.region)
        if names is None:
            names = self._by_name[loop.region] = {}
        names[loop.name] = loop
        self._by_flow.setdefault(loop.flow_arn, []).append(loop)
        self._all.append(loop)
        self.in_progress += 1
        by_region = self._in_progress_by_region
        by_region[loop.region] = by_region.get(loop.region, 0) + 1
        if complete_after is not None:
            heapq.heappush(self._deadlines, (loop.created_at + complete_after, loop.seq, loop))
        key = loop.input_key
        count = self._per_input.get(key, 0) + 1
        self._per_input[key] = count
        if count == 2:
            self.inputs_with_multiple_loops += 1
        if count > self.max_loops_per_input:
            self.max_loops_per_input = count
        return loop

    def _count_in_progress(self, region: str, change: int) -> None:
        by_region = self._in_progress_by_region
        by_region[region] = by_region.get(region, 0) + change

    def tick(self, now: float) -> None:
        """Finish every InProgress loop whose time has come."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, _, loop = heapq.heappop(deadlines)
            if loop.status == IN_PROGRESS:
                loop.status = FAILED if loop.ends_failed else COMPLETED
                loop.finished_at = deadline
                self.in_progress -= 1
                self._count_in_progress(loop.region, -1)
                if loop.status == COMPLETED and self.completed is not None:
                    self.completed.append(loop)

    def take_completed(self) -> list[Loop]:
        """The loops completed since the last call, oldest first (and forget them)."""
        taken = self.completed or []
        if self.completed is not None:
            self.completed = []
        return taken

    def stop(self, loop: Loop, now: float, stopping_seconds: float) -> None:
        if loop.status == IN_PROGRESS:
            loop.status = STOPPING
            loop.stopping_until = now + stopping_seconds
            self.in_progress -= 1
            self._count_in_progress(loop.region, -1)
            loop.refresh(now)

    def delete(self, loop: Loop) -> None:
        loop.deleted = True
        self.deleted += 1

    def of_flow(self, flow_arn: str) -> list[Loop]:
        """A flow definition's loops, deleted ones too, in creation order (do not modify)."""
        return self._by_flow.get(flow_arn, [])

    def every(self, now: float) -> list[Loop]:
        """Every loop ever created (deleted ones too), in creation order."""
        for loop in self._all:
            loop.refresh(now)
        return list(self._all)
