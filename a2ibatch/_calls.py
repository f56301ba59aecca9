"""Service calls under rate control and the one retry policy, for every operation but the start.

`Caller` is what every read or management call goes through (DescribeHumanLoop during
submit, track, stop, delete, reconcile, results, preflight): a `RateController` per
operation, an in-flight cap sized by Little's law, and `RetryPolicy` for throttles, server
errors and connection failures.  The start calls themselves are made by the runner, whose
errors carry more meaning (a name in use, a full loop quota) than a retry loop can know.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar

import anyio

from ._errors import A2IBatchError, JobAborted, first_error
from ._rate import DEFAULT_CEILING, ConcurrencyGovernor, RateController, RateSettings
from ._retry import (
    CallError,
    ErrorKind,
    RetryEvent,
    RetryPolicy,
    describe_exception,
    fatal_message,
)

T = TypeVar("T")
NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "ResourceNotFound"})


class CallCounts(Protocol):
    """Where a caller counts its calls (a job's `Counters`, or its own)."""

    calls: int
    throttled: int
    retries: int


class _Counts:
    def __init__(self) -> None:
        self.calls = 0
        self.throttled = 0
        self.retries = 0


class CallFailed(Exception):
    """A call that failed for good: not retryable, or out of attempts."""

    def __init__(self, operation: str, error: CallError, attempts: int) -> None:
        super().__init__(f"{operation} failed after {attempts} attempt(s): {error.code}")
        self.operation = operation
        self.error = error
        self.attempts = attempts

    @property
    def not_found(self) -> bool:
        return self.error.code in NOT_FOUND_CODES


class Caller:
    """Makes service calls under a `RateController` per operation and the `RetryPolicy`.

    Throttling slows the operation's controller, and throttles, server errors and
    connection failures are retried with the policy's backoff; other errors, and errors
    that outlast the policy's attempts, raise `CallFailed`.  Errors that no call can
    survive (access denied, bad credentials) raise `JobAborted` at once.  `limiter` is the
    in-flight cap that `fan_out` holds each task under; it grows with rate x latency (as
    submit's does) unless `concurrency` fixes it.
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        rate: float | None = None,
        concurrency: int | None = None,
        counts: CallCounts | None = None,
        rates: dict[str, RateController] | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self._ceiling = rate or DEFAULT_CEILING
        self.rates: dict[str, RateController] = rates if rates is not None else {}
        self.limiter = anyio.CapacityLimiter(1)
        self.governor = ConcurrencyGovernor(self.limiter, fixed=concurrency)
        self._rng = random.Random()
        self.counts: CallCounts = counts if counts is not None else _Counts()

    def rate(self, operation: str) -> RateController:
        """The controller of `operation` (one per API, as in submit)."""
        controller = self.rates.get(operation)
        if controller is None:
            controller = RateController(RateSettings(ceiling=self._ceiling))
            self.rates[operation] = controller
        return controller

    async def call(
        self, operation: str, method: Callable[..., Awaitable[Any]], **kwargs: Any
    ) -> Any:
        """`await method(**kwargs)` with rate control and retries; the service's answer."""
        rate = self.rate(operation)
        attempts = 0
        while True:
            await rate.acquire()
            attempts += 1
            self.counts.calls += 1
            sent = time.monotonic()
            try:
                response = await method(**kwargs)
            except Exception as exc:
                error = describe_exception(exc)
            else:
                rate.on_success(time.monotonic() - sent)
                self.governor.update(rate.rate, rate.latency)
                return response
            if error.kind is ErrorKind.FATAL:
                raise JobAborted(fatal_message(error), code=error.code)
            if error.kind is ErrorKind.THROTTLED:
                self.counts.throttled += 1
                rate.on_throttle(error.retry_after, sent=sent)
            if not self.policy.retryable(error) or attempts >= self.policy.max_attempts:
                raise CallFailed(operation, error, attempts)
            wait = self.policy.wait(attempts, error, self._rng)
            self.policy.notify(RetryEvent(operation, attempts, error, wait))
            self.counts.retries += 1
            await anyio.sleep(wait)

    async def fan_out(self, entries: Iterable[T], work: Callable[[T], Awaitable[None]]) -> None:
        """Run `work(entry)` for every entry, at most `limiter` of them at a time.

        Room under the cap is taken before a task starts, so a million entries never
        become a million waiting tasks.
        """

        async def run(entry: T, token: object) -> None:
            try:
                await work(entry)
            finally:
                self.limiter.release_on_behalf_of(token)

        try:
            async with anyio.create_task_group() as tg:
                for entry in entries:
                    token = object()
                    await self.limiter.acquire_on_behalf_of(token)
                    tg.start_soon(run, entry, token)
        except BaseExceptionGroup as group:
            error = first_error(group)
            if isinstance(error, A2IBatchError):
                raise error from None
            raise
