"""Everything one emulator instance knows, and the call handed to an operation.

Operations are plain synchronous functions of (`State`, `Call`): run on the event loop
without awaiting, each one is atomic, so no locks are needed.
"""

from __future__ import annotations

import functools
import importlib.util
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from ._auth import Caller
from ._config import EmulatorConfig
from ._loops import Loop, LoopStore
from ._moto import S3Store, executor
from ._quota import Quotas, rates
from ._stats import Stats

MAINTENANCE_MESSAGE: Final = (
    "Amazon Augmented AI is in maintenance mode and no longer accepts new customers; "
    "this account is not an existing A2I customer."
)


@dataclass(frozen=True, slots=True)
class Call:
    """One request as an operation sees it: decoded parameters, caller, arrival time."""

    params: dict[str, Any]
    caller: Caller
    now: float  # Unix time


@functools.cache
def moto_installed() -> bool:
    """Whether moto can be imported (looked up once, without importing it)."""
    return importlib.util.find_spec("moto") is not None


class State:
    """Settings, loops, counters, quotas, S3 and the seeded random generator."""

    __slots__ = ("config", "loops", "quotas", "rng", "s3", "stats")

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.loops = self._new_loops()
        self.stats = Stats()
        self.quotas = Quotas(rates(config.quota, config.quotas), config.burst)
        self.s3 = S3Store()

    def _new_loops(self) -> LoopStore:
        loops = LoopStore()
        self._collect_outputs(loops)
        return loops

    def _collect_outputs(self, loops: LoopStore) -> None:
        """Queue completed loops for their output.json only when S3 can take them."""
        wanted = self.config.s3 and moto_installed()
        if not wanted:
            loops.completed = None
        elif loops.completed is None:
            loops.completed = []

    def reconfigure(self, config: EmulatorConfig) -> None:
        """Switch to new settings; loops and counters stay, a new seed restarts the dice."""
        if config.seed != self.config.seed:
            self.rng = random.Random(config.seed)
        self.quotas.configure(rates(config.quota, config.quotas), config.burst, time.monotonic())
        self.config = config
        self._collect_outputs(self.loops)

    def reset(self) -> None:
        """Forget every loop, counter, bucket and object (settings stay)."""
        self.rng = random.Random(self.config.seed)
        self.loops = self._new_loops()
        self.stats = Stats()
        self.quotas = Quotas(rates(self.config.quota, self.config.quotas), self.config.burst)
        old, self.s3 = self.s3, S3Store()
        if old.touched:
            executor().submit(old.close)  # moto's state is the worker thread's to change

    @staticmethod
    def s3_executor() -> ThreadPoolExecutor:
        """The thread the emulator's S3 (moto) runs in."""
        return executor()

    def loop_arn(self, region: str, name: str) -> str:
        return f"arn:aws:sagemaker:{region}:{self.config.account_id}:human-loop/{name}"

    def start_loop(
        self,
        call: Call,
        *,
        name: str,
        flow_arn: str,
        flow_name: str,
        task: str,
        key: str,
        input_content: str | None = None,
        s3: dict[str, str] | None = None,
        request: dict[str, Any] | None = None,
    ) -> Loop:
        """A new InProgress loop in the call's region, on the settings in force."""
        config, region = self.config, call.caller.region
        loop = Loop(
            name=name,
            region=region,
            arn=self.loop_arn(region, name),
            flow_arn=flow_arn,
            flow_name=flow_name,
            task=task,
            input_key=key,
            input_content=input_content,
            s3=s3,
            request=request,
            output_path=f"s3://{config.output_bucket}",
            created_at=call.now,
            seq=0,
            ends_failed=self.chance(config.failure_rate),
        )
        return self.loops.create(loop, config.complete_after)

    def chance(self, rate: float) -> bool:
        """True with probability `rate`; draws nothing when the rate is 0 or 1."""
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return self.rng.random() < rate
