"""a2ibatch: submit Amazon A2I human loops in bulk, exactly once per item.

The public API is what `__all__` lists; modules whose names start with `_` are private.
"""

from ._api import DryRunReport, Job, Summary, dry_run, stream, submit
from ._config import AwsSettings, SubmitSettings, load_settings
from ._errors import (
    A2IBatchError,
    ConfigError,
    JobAborted,
    LedgerError,
    LedgerWriteError,
    ManifestError,
    PreflightError,
)
from ._lifecycle import (
    ActionReport,
    ReconcileReport,
    TrackReport,
    delete_loops,
    reconcile,
    stop_loops,
    track,
)
from ._models import Activation, ErrorInfo, Invalid, Item, Outcome, S3Ref, Status, TaskType
from ._preflight import PreflightReport, preflight
from ._results import ResultsReport, results
from ._retry import RetryEvent, RetryPolicy

__version__ = "0.1.0"

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
    "Status",
    "SubmitSettings",
    "Summary",
    "TaskType",
    "TrackReport",
    "__version__",
    "delete_loops",
    "dry_run",
    "load_settings",
    "preflight",
    "reconcile",
    "results",
    "stop_loops",
    "stream",
    "submit",
    "track",
]
