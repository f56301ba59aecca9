"""The retry policy as a value: waits, classes of errors, hooks."""

from __future__ import annotations

import random

import pytest

from a2ibatch import RetryEvent, RetryPolicy
from a2ibatch._retry import CallError, ErrorKind

THROTTLE = CallError(ErrorKind.THROTTLED, "ThrottlingException", "slow down")
SERVER = CallError(ErrorKind.AMBIGUOUS, "InternalServerException", "oops")


def test_full_jitter_stays_under_the_exponential_ceiling() -> None:
    policy = RetryPolicy(initial_wait=0.1, max_wait=5.0)
    rng = random.Random(3)
    for attempt in range(1, 12):
        waits = [policy.wait(attempt, SERVER, rng) for _ in range(200)]
        ceiling = min(5.0, 0.1 * 2 ** (attempt - 1))
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > 0.7 * ceiling  # jitter spreads over the whole range


def test_throttled_calls_wait_less_than_server_errors() -> None:
    policy = RetryPolicy(initial_wait=0.2, max_wait=20.0, throttle_max_wait=2.0)
    rng = random.Random(1)
    assert max(policy.wait(10, THROTTLE, rng) for _ in range(500)) <= 2.0
    assert max(policy.wait(10, SERVER, rng) for _ in range(500)) > 10.0


def test_retry_after_is_honoured() -> None:
    hinted = CallError(ErrorKind.THROTTLED, "ThrottlingException", "", retry_after=3.0)
    assert RetryPolicy().wait(1, hinted) >= 3.0


def test_which_errors_are_retried() -> None:
    policy = RetryPolicy()
    for kind in ErrorKind:
        error = CallError(kind, "X", "")
        assert policy.retryable(error) == (
            kind in (ErrorKind.THROTTLED, ErrorKind.NOT_SENT, ErrorKind.AMBIGUOUS)
        )


def test_hooks_see_every_retry_and_policies_compare_by_value() -> None:
    seen: list[RetryEvent] = []
    policy = RetryPolicy(hooks=(seen.append,))
    event = RetryEvent("StartHumanLoop", 2, SERVER, 0.5)
    policy.notify(event)
    assert seen == [event]
    assert policy == RetryPolicy()  # hooks do not change what the policy is
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
