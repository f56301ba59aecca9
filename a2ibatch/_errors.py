"""One exception tree for everything a2ibatch raises to its callers.

Per-item problems (a bad manifest line, a service error for one item) are never raised: they
become outcomes in the ledger.  Exceptions are for problems that stop a whole job or a whole
command, and each carries a message written for the person who has to fix it.
"""

from __future__ import annotations

from typing import Any


class A2IBatchError(Exception):
    """Base of every exception a2ibatch raises on purpose."""

    #: the process exit code the CLI uses for this kind of problem
    exit_code: int = 3
    #: the run's `Summary` when a job stopped early with this error (else None)
    summary: Any = None


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
    the in-progress loop quota never freed up, or the failure threshold was crossed.
    The ledger is consistent and the same command resumes the job.
    """

    exit_code = 3

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class PreflightError(JobAborted):
    """A check before spending refused the job (flow definition, region, CORS, PII, cost)."""


def first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """The exception that matters in a task group's group: ours first, else the first."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, A2IBatchError):
            return exc
    return leaves[0]
