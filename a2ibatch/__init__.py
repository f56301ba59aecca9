"""a2ibatch: submit Amazon A2I human loops in bulk, exactly once per item.

The public API is what `__all__` lists; modules and packages whose names start with `_`,
and the submodules of `a2ibatch.ledger`, `a2ibatch.manifest` and `a2ibatch.lifecycle`, are
private.  The library logs through the stdlib logger ``a2ibatch`` and is silent until the
application configures logging.
"""

from ._dry_run import DryRunReport, dry_run
from ._errors import (
    A2IBatchError,
    ConfigError,
    JobAborted,
    LedgerError,
    LedgerWriteError,
    ManifestError,
    PreflightError,
    SourceError,
)
from ._job import Job, stream, submit
from ._models import Activation, ErrorInfo, Invalid, Item, Outcome, S3Ref, Status, TaskType
from ._preflight import PreflightReport, preflight
from ._recall import SubmitterStats
from ._retry import RetryEvent, RetryPolicy
from ._settings import AwsSettings, SubmitSettings, load_aws_settings, load_settings
from ._status import StatusReport, status
from ._submitter import Submitter
from ._summary import Summary
from ._text import printable
from .lifecycle import (
    ActionReport,
    ReconcileReport,
    ResultsReport,
    TrackReport,
    delete_loops,
    reconcile,
    results,
    stop_loops,
    track,
)

__version__ = "0.2.0"

__all__ = [
    "A2IBatchError",
    "ActionReport",
    "Activation",
    "AwsSettings",
    "ConfigError",
    "DryRunReport",
    "ErrorInfo",
    "Invalid",
    "Item",
    "Job",
    "JobAborted",
    "LedgerError",
    "LedgerWriteError",
    "ManifestError",
    "Outcome",
    "PreflightError",
    "PreflightReport",
    "ReconcileReport",
    "ResultsReport",
    "RetryEvent",
    "RetryPolicy",
    "S3Ref",
    "SourceError",
    "Status",
    "StatusReport",
    "SubmitSettings",
    "Submitter",
    "SubmitterStats",
    "Summary",
    "TaskType",
    "TrackReport",
    "__version__",
    "delete_loops",
    "dry_run",
    "load_aws_settings",
    "load_settings",
    "preflight",
    "printable",
    "reconcile",
    "results",
    "status",
    "stop_loops",
    "stream",
    "submit",
    "track",
]
