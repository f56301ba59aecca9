"""a2ibatch: submit Amazon A2I human loops in bulk, exactly once per item."""

from ._errors import (
    A2IBatchError,
    ConfigError,
    JobAborted,
    LedgerError,
    LedgerWriteError,
    ManifestError,
    PreflightError,
)
from ._models import Activation, ErrorInfo, Invalid, Item, Outcome, S3Ref, Status, TaskType

__version__ = "0.1.0"

__all__ = [
    "A2IBatchError",
    "Activation",
    "ConfigError",
    "ErrorInfo",
    "Invalid",
    "Item",
    "JobAborted",
    "LedgerError",
    "LedgerWriteError",
    "ManifestError",
    "Outcome",
    "PreflightError",
    "S3Ref",
    "Status",
    "TaskType",
    "__version__",
]
