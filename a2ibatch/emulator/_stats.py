"""What happened so far: call counts, injected misbehaviour, and accepted calls per second.

Counters only; the loop-derived figures (loops per input, in progress) come from the
`LoopStore` and are merged in by `snapshot`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ._loops import LoopStore


@dataclass(slots=True)
class Stats:
    """Counters since start (or the last reset)."""

    started: float = field(default_factory=time.time)
    calls: dict[str, int] = field(default_factory=dict)
    #: region of the call's signature -> operation -> calls (what each region was asked)
    calls_by_region: dict[str, dict[str, int]] = field(default_factory=dict)
    throttled: int = 0
    faults: int = 0
    lost_responses: int = 0
    slow_responses: int = 0
    name_conflicts: int = 0
    quota_refusals: int = 0
    not_activated: int = 0
    s3_requests: int = 0
    #: product of each AWS call's User-Agent (its first token, before the "/") -> calls
    user_agents: dict[str, int] = field(default_factory=dict)
    #: second since `started` -> [accepted, throttled] calls of the starting operations
    per_second: dict[int, list[int]] = field(default_factory=dict)
    #: when the first and the last of those calls arrived (UNIX time), None before any
    first_start: float | None = None
    last_start: float | None = None

    def count_call(self, operation: str, region: str) -> None:
        calls = self.calls
        calls[operation] = calls.get(operation, 0) + 1
        here = self.calls_by_region.get(region)
        if here is None:
            here = self.calls_by_region[region] = {}
        here[operation] = here.get(operation, 0) + 1

    def count_agent(self, user_agent: str) -> None:
        product = user_agent.split("/", 1)[0].split(" ", 1)[0] or "-"
        agents = self.user_agents
        agents[product] = agents.get(product, 0) + 1

    def count_start(self, now: float, accepted: bool) -> None:
        """One call of a loop-starting operation, accepted or throttled, for the histogram."""
        if self.first_start is None:
            self.first_start = now
        self.last_start = now
        second = int(now - self.started)
        row = self.per_second.get(second)
        if row is None:
            row = self.per_second[second] = [0, 0]
        row[0 if accepted else 1] += 1

    def snapshot(self, loops: LoopStore) -> dict[str, Any]:
        """The ``GET /_emulator/stats`` answer."""
        return {
            "calls": dict(self.calls),
            "calls_by_region": {r: dict(ops) for r, ops in self.calls_by_region.items()},
            "throttled": self.throttled,
            "faults": self.faults,
            "lost_responses": self.lost_responses,
            "slow_responses": self.slow_responses,
            "loops_created": loops.created,
            "loops_deleted": loops.deleted,
            "name_conflicts": self.name_conflicts,
            "quota_refusals": self.quota_refusals,
            "not_activated": self.not_activated,
            "s3_requests": self.s3_requests,
            "in_progress": loops.in_progress,
            "inputs": loops.inputs,
            "inputs_with_multiple_loops": loops.inputs_with_multiple_loops,
            "max_loops_per_input": loops.max_loops_per_input,
            "user_agents": dict(self.user_agents),
        }

    def histogram(self) -> dict[str, Any]:
        """The ``GET /_emulator/accepted`` answer: one row per second, gaps filled with 0,
        and when the first and last calls arrived (a client's start-up is the time from
        its first line to its first call)."""
        last = max(self.per_second, default=-1)
        rows = []
        for second in range(last + 1):
            accepted, throttled = self.per_second.get(second, (0, 0))
            rows.append({"second": second, "accepted": accepted, "throttled": throttled})
        return {
            "started": self.started,
            "first": self.first_start,
            "last": self.last_start,
            "seconds": rows,
        }
