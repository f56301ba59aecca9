"""Pacing: evenly spaced send slots at a rate that may change between any two calls.

A token bucket that starts full sends a burst at start and after every idle spell, which
is what a service's own bucket throttles; `Pacer` hands out one slot every 1/rate seconds
instead, on a grid that late wake-ups do not drift, and starts afresh after idling.  The
rate controller (`_rate.RateController`) is a `Pacer` whose rate follows the service's
answers; pacing alone is what runs per call, so it is kept small.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]
#: a released caller may go up to this long before its slot (seconds) ...
EARLY_SECONDS = 0.01
#: ... but never more than this many slots early, so bunches stay far below any burst
EARLY_SLOTS = 1.5


class Pacer:
    """Hands out send slots `1 / self._rate` apart, to callers in arrival order.

    `acquire()` waits for the next slot; `reserve()` takes it and says how long to wait.
    Subclasses change `_rate` at will and hear of every slot taken through `_taken`.
    For one asyncio event loop; nothing blocks.
    """

    def __init__(self, rate: float, clock: Clock) -> None:
        self._rate = rate
        self._clock = clock
        self._last_slot = -math.inf  # when the last call was allowed to go
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def rate(self) -> float:
        """The current target rate, requests per second."""
        return self._rate

    async def acquire(self) -> None:
        """Wait until this caller may send one request.

        Callers queue in arrival order and each slot is taken when its caller reaches the
        head of the queue, so a rate change applies to the very next call.  One timer
        releases the head, together with any caller whose slot is due within
        `EARLY_SECONDS` (at most `EARLY_SLOTS` slots): one wake-up of the event loop per
        send or fewer, which is most of what pacing costs.
        """
        if not self._waiters and self._due() <= self._early():
            self._take(self._clock())
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if self._timer is None:
            self._schedule(loop)
        await waiter

    def _early(self) -> float:
        return min(EARLY_SECONDS, EARLY_SLOTS / self._rate)

    def _due(self) -> float:
        """Seconds until the next slot (0 if it is free now)."""
        return max(0.0, self._last_slot + 1.0 / self._rate - self._clock())

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = loop.call_later(self._due(), self._release, loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        waiters = self._waiters
        early = self._early()
        now = self._clock()
        while waiters:
            if waiters[0].done():  # its caller was cancelled
                waiters.popleft()
                continue
            if self._due() > early:
                break
            self._take(now)
            waiters.popleft().set_result(None)
        if waiters:
            self._schedule(loop)

    def reserve(self) -> float:
        """Take the next send slot now; return how long to wait for it (seconds).

        For callers that sleep until their slot themselves (`acquire` sends at once)."""
        now = self._clock()
        return max(0.0, self._take(now, at_slot=True) - now)

    def _take(self, now: float, *, at_slot: bool = False) -> float:
        slot = self._last_slot + 1.0 / self._rate
        if slot < now - self._early():
            # Idle for a while: start afresh (no burst to catch up on slots nobody used).
            slot = now
        # Otherwise keep to the grid even when this caller comes a little late (the timer
        # or the event loop woke late): late wake-ups would otherwise add up to a rate
        # several percent below the target.
        self._last_slot = slot
        self._taken(now, slot if at_slot else now, slot > now or bool(self._waiters))
        return slot

    def _taken(self, now: float, sent: float, limited: bool) -> None:
        """A slot was taken at `now` for a call sent at `sent`; `limited`: its caller
        waited on the pace (or others wait), so more rate would be used."""
        return None
