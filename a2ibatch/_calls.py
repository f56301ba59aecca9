"""The one attempt loop: every call a2ibatch makes goes through `Caller.call`.

Start calls (StartHumanLoop, AnalyzeDocument, DetectModerationLabels) and every read or
management call (DescribeHumanLoop, ListHumanLoops, Stop, Delete, DescribeFlowDefinition, S3)
take the same path:

    meters (quota pause, outage gate, rate) -> send -> classify the answer ->
    retry under the `RetryPolicy`, or return, or raise `CallFailed`

What an error means comes from `classify` (the task adapter's, for start calls: Textract's
overloaded InvalidParameterException says "name in use" in its message).  The job's
conditions are not an item's: a full loop quota pauses every call, an unreachable endpoint
closes the outage gate, and neither spends an attempt.  Errors no call can survive (access
denied, bad credentials) stop the job at once (`JobAborted`).

For a call whose effect must not happen twice, `ambiguous` tells whether an earlier attempt
(of an earlier run, even) may have taken effect, and `resend_check` is asked before each
resend after an ambiguous attempt: a value it returns (the loop, found) ends the call with
`Found` instead of sending again.  Everything else about a name in use is the caller's to
decide: the call raises `CallFailed` with the error and whether it was ambiguous.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, ParamSpec, TypeVar

import anyio

from ._counters import Counters
from ._errors import JobAborted
from ._meters import Meters
from ._retry import CallError, ErrorKind, RetryEvent, RetryPolicy, describe_exception, fatal_message

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")
NOT_FOUND_CODES: Final = frozenset({"ResourceNotFoundException", "ResourceNotFound"})

Classify = Callable[[BaseException], CallError]


class CallFailed(Exception):
    """A call that failed for good: not retryable, out of attempts, or a name in use."""

    def __init__(self, operation: str, error: CallError, attempts: int, ambiguous: bool) -> None:
        super().__init__(f"{operation} failed after {attempts} attempt(s): {error.code}")
        self.operation = operation
        self.error = error
        self.attempts = attempts
        #: an attempt may have taken effect although no answer said so
        self.ambiguous = ambiguous

    @property
    def not_found(self) -> bool:
        return self.error.code in NOT_FOUND_CODES


class Found(Generic[T]):
    """What `resend_check` found instead of a resend: the call ends without sending again."""

    __slots__ = ("attempts", "value")

    def __init__(self, value: T, attempts: int) -> None:
        self.value = value
        self.attempts = attempts


class Caller:
    """Makes calls under one job's `Meters` and `RetryPolicy`, counting them in `counters`."""

    def __init__(
        self,
        meters: Meters,
        policy: RetryPolicy | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.meters = meters
        self.policy = policy or RetryPolicy()
        self.counters: Counters = meters.counters
        self._rng = rng or random.Random()

    async def call(
        self,
        operation: str,
        method: Callable[P, Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """``await method(**kwargs)`` through the meters, with retries: the service's answer
        (typed as the client's method is).  Raises `CallFailed` or `JobAborted`."""
        if args:
            raise TypeError("service calls take keyword arguments only")
        answer, _ = await self.attempt(operation, method, kwargs)
        result: R = answer
        return result

    async def attempt(
        self,
        operation: str,
        method: Callable[..., Awaitable[Any]],
        kwargs: dict[str, Any],
        *,
        classify: Classify = describe_exception,
        ambiguous: bool = False,
        resend_check: Callable[[], Awaitable[Any]] | None = None,
    ) -> tuple[Any, int]:
        """``await method(**kwargs)`` as `call` does; (the answer or a `Found`, attempts).

        `ambiguous` says an earlier attempt may have taken effect; `resend_check` is then
        asked before each send (see the module's docstring).
        """
        meters = self.meters
        counters = self.counters
        policy = self.policy
        rate = meters.rate(operation)
        attempts = 0
        while True:
            if ambiguous and resend_check is not None:
                found = await resend_check()
                if found is not None:
                    return Found(found, attempts), attempts
            await meters.admit(rate)
            attempts += 1
            counters.calls += 1
            sent = time.monotonic()
            try:
                response = await method(**kwargs)
            except Exception as exc:
                error = classify(exc)
            else:
                meters.answered(operation, rate, time.monotonic() - sent)
                return response, attempts
            kind = error.kind
            if kind is ErrorKind.NOT_SENT:
                attempts -= 1  # the job's condition, not this call's: wait for the endpoint
                meters.outage.trip(error)
                continue
            meters.outage.reached()
            if kind is ErrorKind.FATAL:
                raise JobAborted(fatal_message(error), code=error.code)
            if kind is ErrorKind.QUOTA:
                attempts -= 1  # a pause for the whole job, not this item's fault
                meters.pause.trip()
                continue
            if kind is ErrorKind.THROTTLED:
                counters.throttled += 1
                rate.on_throttle(error.retry_after, sent=sent)
            elif kind is ErrorKind.AMBIGUOUS:
                ambiguous = True
            if not policy.retryable(error) or attempts >= policy.max_attempts:
                raise CallFailed(operation, error, attempts, ambiguous)
            wait = policy.wait(attempts, error, self._rng)
            policy.notify(RetryEvent(operation, attempts, error, wait))
            counters.retries += 1
            await anyio.sleep(wait)
