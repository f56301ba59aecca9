"""Every limit a call waits on, behind one place: the meters of a job's calls.

Before a call is sent, `Meters.admit` waits on each meter in turn (as aiometer waits on its
meters before starting a task):

* the quota pause: too many human loops are in progress for the account
  (ServiceQuotaExceeded, HumanLoopQuotaExceeded), so every item waits, and the job gives up
  once the quota has stayed full for `quota_wait_limit` seconds;
* the outage gate: the endpoint does not accept connections (it restarted, the network is
  down), so every call waits while one probe at a time tries again, and the job gives up
  once the endpoint has stayed unreachable for `outage_limit` seconds;
* the operation's `RateController`: calls paced at the rate the service accepts.

The in-flight cap (`InFlightCap`) bounds how many items are being worked on at once; the
worker pool holds a slot per item, so memory and connections stay bounded.  A QUOTA or an
unreachable endpoint is the job's condition, not an item's: waiting on it spends none of an
item's attempts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from ._counters import Counters
from ._errors import JobAborted, setting
from ._log import get_logger
from ._rate import DEFAULT_CEILING, RateController, RateSettings
from ._retry import CallError

if TYPE_CHECKING:
    from ._settings import SubmitSettings

log = get_logger()

#: longest single quota pause
MAX_QUOTA_PAUSE = 300.0
#: first and longest wait between two probes of an unreachable endpoint
FIRST_PROBE_WAIT = 0.5
MAX_PROBE_WAIT = 15.0
#: a probe that has not answered after this long no longer holds the others back
PROBE_TIMEOUT = 30.0
#: a job that never reached the endpoint gives up this soon (a wrong URL, not an outage)
NEVER_REACHED_LIMIT = 10.0


class InFlightCap:
    """How many items may be in flight: rate x latency (Little's law) unless fixed.

    A StartHumanLoop answers in tens of milliseconds and an AnalyzeDocument in seconds; the
    same default must keep enough calls in flight for both without opening thousands of
    connections.  The cap covers items waiting for a retry too, hence the headroom.  Until
    the first answer tells the latency, the cap is `initial`: enough for the first rate at
    a round trip of seconds.  `on_change` is told when the limit changes (a worker pool
    grows).
    """

    def __init__(
        self,
        fixed: int | None = None,
        *,
        minimum: int = 16,
        maximum: int = 1024,
        initial: int = 64,
    ) -> None:
        self.fixed = fixed
        self.minimum = minimum
        self.maximum = maximum
        self.limit = fixed if fixed is not None else min(maximum, max(minimum, initial))
        self.on_change: Callable[[int], None] | None = None

    def update(self, rate: float, latency: float) -> None:
        if self.fixed is not None:
            return
        wanted = math.ceil(rate * latency * 2.0) + self.minimum
        limit = max(self.minimum, min(self.maximum, wanted))
        if limit != self.limit:
            self.limit = limit
            if self.on_change is not None:
                self.on_change(limit)


class QuotaPause:
    """The job-wide pause while too many human loops are in progress.

    One item's ServiceQuotaExceeded/HumanLoopQuotaExceeded answer pauses every item: sending
    more would only collect more of the same.  The pause doubles while the quota stays full
    and the job gives up once it has stayed full for `limit` seconds.
    """

    def __init__(self, first: float, limit: float, counters: Counters) -> None:
        self._first = first
        self._limit = limit
        self._counters = counters
        self._wait = first
        self._until = 0.0
        self._full_since: float | None = None

    def trip(self) -> None:
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        if now - self._full_since > self._limit:
            raise JobAborted(
                f"the account's in-progress human loop quota stayed full for "
                f"{self._limit:.0f} s ({setting('quota_wait_limit')}); finish or stop running "
                "loops (or raise the quota in Service Quotas), then run the same job again to "
                "carry on",
                code="ServiceQuotaExceeded",
            )
        if now >= self._until:
            self._until = now + self._wait
            self._wait = min(self._wait * 2, MAX_QUOTA_PAUSE)
            log.warning("quota_pause", seconds=round(self._until - now, 1))

    @property
    def active(self) -> bool:
        """Whether calls must wait now."""
        return self._until > time.monotonic()

    def clear(self) -> None:
        if self._full_since is not None:
            self._full_since = None
            self._wait = self._first

    async def wait(self) -> None:
        while (delay := self._until - time.monotonic()) > 0:
            self._counters.paused = True
            started = time.monotonic()
            await anyio.sleep(delay)
            self._counters.paused_seconds += time.monotonic() - started
        self._counters.paused = False


class Outage:
    """The job-wide wait while the endpoint accepts no connections.

    A connection that cannot be made means the request never left: retrying it costs
    nothing but time, and every other call would fail the same way.  So the first such
    error closes the gate; calls wait at it, and one at a time is let through as a probe
    (after 0.5 s, then doubling up to 15 s).  Any answer from the service, an error
    included, opens the gate again.  The job gives up (`JobAborted`, exit 3) once the
    endpoint has been unreachable for `limit` seconds, or for `NEVER_REACHED_LIMIT`
    seconds if it never answered this job at all (a wrong endpoint, not an outage).
    """

    def __init__(self, limit: float, counters: Counters) -> None:
        self._limit = limit
        self._counters = counters
        self._since: float | None = None
        self._wait = FIRST_PROBE_WAIT
        self._probe_at = 0.0
        self._probe_started: float | None = None
        self._reached = False
        self._open = anyio.Event()
        self._open.set()
        self._last_error = ""

    @property
    def closed(self) -> bool:
        return self._since is not None

    def trip(self, error: CallError) -> None:
        """A call could not connect: close the gate (or keep it closed), or give up."""
        now = time.monotonic()
        self._last_error = error.message
        self._probe_started = None
        if self._since is None:
            self._since = now
            self._wait = FIRST_PROBE_WAIT
            self._open = anyio.Event()
            self._counters.unreachable = True
            log.warning("endpoint_unreachable", detail=error.code)
        else:
            self._wait = min(self._wait * 2, MAX_PROBE_WAIT)
        limit = self._limit if self._reached else min(self._limit, NEVER_REACHED_LIMIT)
        if now - self._since > limit:
            raise JobAborted(
                f"cannot connect to the service for {now - self._since:.0f} s "
                f"({error.message}); check {setting('endpoint_url')}, {setting('region')} "
                "and the network, then run the same job again to carry on",
                code="EndpointUnreachable",
            )
        self._probe_at = now + self._wait

    def reached(self) -> None:
        """The service answered (anything): the gate opens."""
        if self._since is None:
            self._reached = True
            return
        self._reached = True
        seconds = time.monotonic() - self._since
        self._counters.unreachable_seconds += seconds
        self._counters.unreachable = False
        log.warning("endpoint_reachable", after_seconds=round(seconds, 1))
        self._since = None
        self._probe_started = None
        self._open.set()

    async def wait(self) -> None:
        """Return when a call may go: the gate is open, or this call is the next probe."""
        while self._since is not None:
            now = time.monotonic()
            probing = self._probe_started is not None and now - self._probe_started < PROBE_TIMEOUT
            if not probing and now >= self._probe_at:
                self._probe_started = now
                return
            delay = max(0.01, self._probe_at - now) if not probing else PROBE_TIMEOUT
            with anyio.move_on_after(delay):
                await self._open.wait()


class Meters:
    """The meters of one job's calls to one region: a `RateController` per operation, the
    in-flight cap, the quota pause and the outage gate.

    `primary` is the operation whose rate and latency size the in-flight cap (the start
    call in a submit job); None lets every operation's answers size it.
    """

    def __init__(
        self,
        counters: Counters,
        *,
        ceiling: float | None = None,
        concurrency: int | None = None,
        quota_pause: float = 30.0,
        quota_wait_limit: float = 3600.0,
        outage_limit: float = 300.0,
        primary: str | None = None,
        initial_rate: float | None = None,
    ) -> None:
        self.counters = counters
        self.ceiling = ceiling or DEFAULT_CEILING
        self.told = ceiling is not None  # the user gave the ceiling (``--rate``)
        self.cap = InFlightCap(concurrency)
        self.pause = QuotaPause(quota_pause, quota_wait_limit, counters)
        self.outage = Outage(outage_limit, counters)
        self.primary = primary
        self._initial = initial_rate
        self.rates: dict[str, RateController] = {}
        self._setup: Callable[[], Awaitable[None]] | None = None
        self._setup_done: anyio.Event | None = None

    def before_first_call(self, setup: Callable[[], Awaitable[None]]) -> None:
        """Run `setup` once, before the first call of the primary operation goes (every
        such call waits for it): a job reads its applied quota only if it sends."""
        self._setup = setup

    def rate(self, operation: str) -> RateController:
        """The controller of `operation` (one per API: each has its own quota)."""
        controller = self.rates.get(operation)
        if controller is None:
            settings = RateSettings(ceiling=self.ceiling)
            if self._initial is not None and operation == self.primary:
                initial = min(self._initial, self.ceiling)
                settings = RateSettings(ceiling=self.ceiling, initial=initial)
            controller = self.rates[operation] = RateController(settings)
        return controller

    async def admit(self, rate: RateController) -> None:
        """Wait on every meter before one call: quota pause, outage gate, then the pace."""
        if self._setup is not None and rate is self.rates.get(str(self.primary)):
            await self._set_up()
        if self.pause.active:
            await self.pause.wait()
        if self.outage.closed:
            await self.outage.wait()
        await rate.acquire()

    async def _set_up(self) -> None:
        done = self._setup_done
        if done is not None:  # another call is running it
            await done.wait()
            return
        done = self._setup_done = anyio.Event()
        try:
            if self._setup is not None:
                await self._setup()
        finally:
            self._setup = None
            done.set()

    def answered(self, operation: str, rate: RateController, latency: float) -> None:
        """A call was answered with success after `latency` seconds."""
        rate.on_success(latency)
        self.pause.clear()
        self.outage.reached()
        if self.primary is None or operation == self.primary:
            self.cap.update(rate.rate, rate.latency)


def job_meters(settings: SubmitSettings, counters: Counters, primary: str) -> Meters:
    """The meters of a job's calls to one region, as its settings say: the one construction
    of a Job's, a Submitter's and each region's lane of a job of several flows."""
    return Meters(
        counters,
        ceiling=settings.rate,
        concurrency=settings.concurrency,
        quota_pause=settings.quota_pause,
        quota_wait_limit=settings.quota_wait_limit,
        outage_limit=settings.outage_limit,
        primary=primary,
    )
