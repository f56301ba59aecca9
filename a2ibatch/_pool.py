"""The worker pool: as many workers as the in-flight cap allows, each taking the next entry
when it is free.

An entry is taken only when a worker can start it (backpressure, as in aiometer), so a
million entries never become a million tasks or a million items in memory.  The pool grows
when the cap grows and a worker above a lowered cap leaves after its entry.  Submit's runner
and the lifecycle commands both run their work through a pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from ._errors import raise_first
from ._meters import InFlightCap

T = TypeVar("T")


class WorkerPool(Generic[T]):
    """Runs `work(entry)` for each entry `take()` hands out, up to `cap.limit` at a time.

    `take` returns None once there is nothing more (or the pool should stop); it is called
    by one worker at a time.  `run` returns when every worker has finished, or, after
    `stop`, once the entries in flight are done (the caller bounds that wait).
    """

    def __init__(
        self,
        cap: InFlightCap,
        take: Callable[[], Awaitable[T | None]],
        work: Callable[[T], Awaitable[None]],
    ) -> None:
        self.cap = cap
        self._take = take
        self._work = work
        self._reading = anyio.Lock(fast_acquire=True)
        self._exhausted = False
        self._stopped = False
        self._workers = 0
        self.in_flight = 0
        self._tasks: TaskGroup | None = None
        self._over = anyio.Event()
        self._idle = anyio.Event()

    def stop(self) -> None:
        """Take no more entries; those in flight go on."""
        self._stopped = True
        self._over.set()

    @property
    def stopped(self) -> bool:
        return self._stopped

    async def run(self, grace: float | None = None) -> None:
        """Work through the entries.  After `stop`, wait at most `grace` seconds (None: for
        ever) for the entries in flight, then cancel them."""
        previous = self.cap.on_change
        self.cap.on_change = lambda _limit: self._grow()
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                self._grow()
                if self._workers == 0:
                    self._over.set()
                await self._over.wait()
                if self._stopped:
                    with anyio.move_on_after(grace if grace is not None else float("inf")):
                        while self.in_flight:
                            self._idle = anyio.Event()
                            await self._idle.wait()
                    tasks.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The error that stopped the pool, as itself: ours first, else the first.
            raise_first(group)
        finally:
            self.cap.on_change = previous

    def _grow(self) -> None:
        tasks = self._tasks
        if tasks is None:
            return
        while self._workers < self.cap.limit and not self._exhausted and not self._stopped:
            self._workers += 1
            tasks.start_soon(self._worker)

    async def _worker(self) -> None:
        try:
            # A worker above the limit (the cap was lowered) leaves after its entry.
            while self._workers <= self.cap.limit and not self._stopped:
                async with self._reading:
                    if self._exhausted or self._stopped:
                        return
                    entry = await self._take()
                    if entry is None:
                        self._exhausted = True
                        return
                self.in_flight += 1
                try:
                    await self._work(entry)
                finally:
                    self.in_flight -= 1
                    if not self.in_flight:
                        self._idle.set()
        finally:
            self._workers -= 1
            if not self._workers:
                self._over.set()


async def fan_out(
    cap: InFlightCap, entries: Iterable[T], work: Callable[[T], Awaitable[None]]
) -> None:
    """Run `work(entry)` for every entry, at most `cap.limit` at a time."""
    iterator = iter(entries)
    count = 0

    async def take() -> T | None:
        nonlocal count
        count += 1
        if count % 256 == 0:
            await anyio.lowlevel.checkpoint()
        return next(iterator, None)

    await WorkerPool(cap, take, work).run()
