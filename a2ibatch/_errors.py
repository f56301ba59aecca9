"""One exception tree for everything a2ibatch raises to its callers.

Per-item problems (a bad manifest line, a service error for one item) are never raised: they
become outcomes in the ledger.  Exceptions are for problems that stop a whole job or a whole
command, and each carries a message written for the person who has to fix it.

A message that tells the reader to change a setting names it with `setting()`: a library
caller reads the parameter (``max_failures``, ``preflight=False``), and the command line
shows its flag (``--max-failures``, ``--no-preflight``) from the same exception.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, NoReturn

#: marks a setting's name inside a message (a control character no message text contains)
_MARK = "\x1e"
_SETTING = re.compile(f"{_MARK}([a-z_0-9]+)(?:=([^{_MARK}]*))?{_MARK}")


def setting(name: str, value: object = None) -> str:
    """A setting named inside an error message: `name`, or `name=value` (``preflight=False``).

    Rendered as the library's parameter by ``str(error)`` and as a flag by the CLI.
    """
    return f"{_MARK}{name}{_MARK}" if value is None else f"{_MARK}{name}={value!r}{_MARK}"


def library_spelling(name: str, value: str | None) -> str:
    return name if value is None else f"{name}={value}"


def render(message: str, spell: Callable[[str, str | None], str] = library_spelling) -> str:
    """`message` with its settings spelled by `spell(name, value or None)`."""
    if _MARK not in message:
        return message
    return _SETTING.sub(lambda m: spell(m.group(1), m.group(2)), message)


class A2IBatchError(Exception):
    """Base of every exception a2ibatch raises on purpose."""

    #: the process exit code the CLI uses for this kind of problem
    exit_code: int = 3
    #: the run's `Summary` when a job stopped early with this error (else None)
    summary: Any = None

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        #: a short machine-readable reason (an AWS error code, or one of ours)
        self.code = code

    @property
    def message(self) -> str:
        """The message with its setting names left marked (see `render`)."""
        return str(self.args[0]) if self.args else ""

    def render(self, spell: Callable[[str, str | None], str] = library_spelling) -> str:
        """The message with each setting it names spelled by `spell(name, value)`: a
        command line passes its flags' spelling (``--max-failures``)."""
        return render(self.message, spell)

    def __str__(self) -> str:
        return render(self.message)


class ConfigError(A2IBatchError):
    """The job is set up wrongly: bad flag, bad config file, unusable prefix or endpoint."""

    exit_code = 2


class ManifestError(A2IBatchError):
    """The manifest as a whole cannot be read (missing file, unreadable S3 object).

    A single broken line is not an error: it becomes an `invalid` outcome.
    """

    exit_code = 2


class LedgerError(A2IBatchError):
    """The ledger cannot be used: written for another job, unreadable, or not writable."""

    exit_code = 2


class LedgerWriteError(LedgerError):
    """A ledger write failed mid-job (disk full, I/O error); the job stopped cleanly."""

    exit_code = 3


class JobAborted(A2IBatchError):
    """The job stopped early for a reason that affects every item.

    Examples: access denied, unknown flow definition, the account is not an A2I customer,
    the in-progress loop quota never freed up, the endpoint stayed unreachable, or the
    failure threshold was crossed.  The ledger is consistent and the same command resumes
    the job.
    """

    exit_code = 3


class PreflightError(JobAborted):
    """A check before spending refused the job (flow definition, region, CORS, PII, cost)."""


class SourceError(A2IBatchError):
    """The caller's own source of items raised; `__cause__` is the caller's exception.

    The job stopped cleanly at that point: every outcome decided so far is in the ledger.
    """

    exit_code = 3


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside nested exception groups, in order (`error` itself if none)."""
    if not isinstance(error, BaseExceptionGroup):
        return [error]
    found: list[BaseException] = []
    for inner in error.exceptions:
        found.extend(leaves(inner))
    return found


def first_error(group: BaseException) -> BaseException:
    """The exception that matters in a task group's group: ours first, else the first that
    is not a cancellation, else the first."""
    found = leaves(group)
    for exc in found:
        if isinstance(exc, A2IBatchError):
            return exc
    for exc in found:
        if not _is_cancellation(exc):
            return exc
    return found[0]


def raise_first(group: BaseException) -> NoReturn:
    """Raise `first_error(group)` as itself, its own cause kept and the group not shown."""
    error = first_error(group)
    error.__suppress_context__ = True
    raise error


def _is_cancellation(exc: BaseException) -> bool:
    # asyncio's: aiobotocore, and so every job, runs on asyncio
    return isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
