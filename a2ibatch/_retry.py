"""The one retry policy: what an error means, and how long to wait before trying again.

botocore's own retries are switched off (one attempt per call) so that every retry decision
is made here, with the loop name fixed across attempts.  The policy is a value: a frozen
dataclass the caller can build, compare and pass around, with hooks that observe retries
(as in stamina) without changing them.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from ._errors import setting
from ._models import ErrorInfo


class ErrorKind(enum.Enum):
    """What an error from a call means for the item and for the job."""

    THROTTLED = "throttled"  # over the rate quota: slow down and retry
    NOT_SENT = "not_sent"  # the request never left (connect failure): retry freely
    AMBIGUOUS = "ambiguous"  # 5xx, lost answer, read timeout: the call may have taken effect
    NAME_IN_USE = "name_in_use"  # the loop name is taken: find out whether the loop is ours
    QUOTA = "quota"  # too many loops in progress: pause the whole job
    FATAL = "fatal"  # wrong for every item (credentials, flow definition): stop the job
    ITEM = "item"  # this item was refused: record `failed`


#: error codes that mean "too many requests", whatever the service
THROTTLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
#: error codes that mean "the service failed while handling the call"
SERVER_CODES = frozenset(
    {"InternalServerException", "InternalServerError", "InternalFailure", "ServiceUnavailable"}
)
#: too many human loops in progress for the account
QUOTA_CODES = frozenset({"ServiceQuotaExceededException", "HumanLoopQuotaExceededException"})
#: the caller's identity is refused: no item can succeed
FATAL_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "MissingAuthenticationToken",
        "IncompleteSignature",
        "NotAuthorized",
    }
)


@dataclass(frozen=True, slots=True)
class CallError:
    """A failed call, reduced to what the policy and the ledger need."""

    kind: ErrorKind
    code: str
    message: str
    status: int | None = None
    retry_after: float | None = None

    def info(self) -> ErrorInfo:
        return ErrorInfo(self.code, self.message)


def describe_exception(exc: BaseException) -> CallError:
    """Classify an exception from an aiobotocore call by its generic meaning.

    Task adapters refine this for codes whose meaning depends on the message (Textract's
    overloaded InvalidParameterException, for instance).
    """
    if isinstance(exc, botocore.exceptions.ClientError):
        response: Mapping[str, Any] = exc.response
        error = response.get("Error", {})
        meta = response.get("ResponseMetadata", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or "")
        status = meta.get("HTTPStatusCode")
        retry_after = _retry_after(meta.get("HTTPHeaders", {}))
        if code in THROTTLE_CODES or status == 429:
            kind = ErrorKind.THROTTLED
        elif code in QUOTA_CODES:
            kind = ErrorKind.QUOTA
        elif code in FATAL_CODES:
            kind = ErrorKind.FATAL
        elif code in SERVER_CODES or (isinstance(status, int) and status >= 500):
            kind = ErrorKind.AMBIGUOUS
        else:
            kind = ErrorKind.ITEM
        return CallError(kind, code, message, status, retry_after)
    if isinstance(
        exc,
        botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError,
    ):
        return CallError(ErrorKind.NOT_SENT, "ConnectionError", _short(exc))
    if isinstance(
        exc,
        botocore.exceptions.HTTPClientError
        | botocore.exceptions.ReadTimeoutError
        | TimeoutError
        | ConnectionError
        | OSError,
    ):
        return CallError(ErrorKind.AMBIGUOUS, type(exc).__name__, _short(exc))
    if isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.ProfileNotFound
    ):
        return CallError(ErrorKind.FATAL, type(exc).__name__, _short(exc))
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return CallError(ErrorKind.ITEM, "ParamValidationError", _short(exc))
    raise exc


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _retry_after(headers: Mapping[str, Any]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds <= 300 else None


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Passed to retry hooks before each wait."""

    operation: str
    attempt: int  # the attempt that just failed (1-based)
    error: CallError
    wait: float


RetryHook = Callable[[RetryEvent], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts an item gets and how long to wait between them.

    Exponential backoff with full jitter: the wait before attempt n+1 is uniform in
    [0, min(max_wait, initial_wait * multiplier ** (n - 1))], which spreads retries of many
    items evenly instead of sending them back in lockstep.  Throttling, server errors,
    connection errors and timeouts are retried; everything else is decided at once.
    Quota pauses (too many loops in progress) are not attempts: they wait for the job.
    """

    max_attempts: int = 8
    initial_wait: float = 0.2
    max_wait: float = 20.0
    multiplier: float = 2.0
    #: a throttled call waits less: the rate controller already slows the whole job down,
    #: and a long wait would only leave the item straggling at the end of the run
    throttle_max_wait: float = 0.5
    hooks: tuple[RetryHook, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_wait < 0 or self.max_wait < 0 or self.multiplier < 1:
            raise ValueError("waits must be non-negative and the multiplier at least 1")

    def retryable(self, error: CallError) -> bool:
        return error.kind in (ErrorKind.THROTTLED, ErrorKind.NOT_SENT, ErrorKind.AMBIGUOUS)

    def wait(self, attempt: int, error: CallError, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based)."""
        limit = self.throttle_max_wait if error.kind is ErrorKind.THROTTLED else self.max_wait
        ceiling = min(limit, self.initial_wait * self.multiplier ** (attempt - 1))
        jittered = (rng or random).uniform(0.0, ceiling)
        if error.retry_after is not None:
            return max(jittered, error.retry_after)
        return jittered

    def notify(self, event: RetryEvent) -> None:
        for hook in self.hooks:
            hook(event)


def fatal_message(error: CallError) -> str:
    """The message that stops a job for a fatal error: what is wrong and how to fix it."""
    if error.code in ("AccessDeniedException", "AccessDenied", "NotAuthorized"):
        return (
            f"access denied ({error.code}): the identity in use lacks permission; attach "
            "AmazonAugmentedAIFullAccess (and the Textract/Rekognition permissions for "
            f"built-in task types) or pick another {setting('profile')}"
        )
    if error.code in ("UnrecognizedClientException", "InvalidClientTokenId"):
        return (
            f"the credentials are not recognised ({error.code}): check AWS_PROFILE / "
            f"{setting('profile')} and the access key"
        )
    if "Expired" in error.code or error.code == "RequestExpired":
        return f"the credentials have expired ({error.code}): refresh them and rerun"
    if error.code in ("NoCredentialsError", "ProfileNotFound"):
        return f"no usable AWS credentials ({error.code}): {error.message}"
    return error.message or error.code
