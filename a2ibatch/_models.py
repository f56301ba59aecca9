"""The values that travel through a job: items read from a manifest and their outcomes.

An item goes one way: manifest line -> `Item` (or `Invalid`) -> loop name -> request ->
`Outcome` -> ledger.  Everything here is immutable so that any stage can hand a value on
without copying it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class TaskType(enum.StrEnum):
    """Which API starts the human loop."""

    CUSTOM = "custom"  # sagemaker-a2i-runtime StartHumanLoop
    TEXTRACT = "textract"  # Textract AnalyzeDocument with HumanLoopConfig
    REKOGNITION = "rekognition"  # Rekognition DetectModerationLabels with HumanLoopConfig


class Status(enum.StrEnum):
    """The state an item's outcome leaves it in.  The last outcome of an id is its state."""

    STARTED = "started"  # a human loop exists for the item
    NOT_ACTIVATED = "not_activated"  # the service analysed it; activation conditions not met
    FAILED = "failed"  # the service refused it (or retries ran out); `retry_failed` retries
    INVALID = "invalid"  # the manifest line is unusable; fix the line and rerun
    #: a call may have reached the service and no answer could tell whether a loop exists
    #: (the service stayed unreachable while checking): a rerun checks it first
    UNVERIFIED = "unverified"
    #: the item's explicit loop name is held by a loop whose owner the ledger cannot tell
    #: (this job's, with its records lost, or another's): the loop's facts are recorded
    NAME_TAKEN = "name_taken"

    @property
    def done(self) -> bool:
        """Whether a rerun skips items in this state: their loop exists or is not needed."""
        return self in (Status.STARTED, Status.NOT_ACTIVATED)


CONTENT_CLASSIFIERS = frozenset({"FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"})
TEXTRACT_FEATURE_TYPES = frozenset({"TABLES", "FORMS", "QUERIES", "SIGNATURES", "LAYOUT"})
MAX_INPUT_CONTENT_CHARS = 3_145_728


@dataclass(frozen=True, slots=True)
class S3Ref:
    """An S3 object named by a manifest line (`s3://bucket/key`, optional version)."""

    bucket: str
    key: str
    version: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class Item:
    """One valid manifest line, ready to be named and sent.

    Exactly one of `input_content` (custom) and `s3` (textract, rekognition) is set.
    """

    id: str
    line: int = 0  # 1-based line number in the manifest (data rows for CSV); 0: none
    input_content: str | None = None  # the compact JSON document sent as InputContent
    s3: S3Ref | None = None  # the document or image
    feature_types: tuple[str, ...] | None = None  # textract; None = the job's default
    min_confidence: float | None = None  # rekognition
    name: str | None = None  # an explicit loop name from the manifest
    content_classifiers: tuple[str, ...] | None = None  # None = the job's default
    #: custom: the region whose flow definition reviews the item, in a job of flows in
    #: several regions (None: the job's only flow); Textract and Rekognition items go to
    #: the region of their bucket
    region: str | None = None


@dataclass(frozen=True, slots=True)
class Invalid:
    """A manifest line that cannot become an item, with a reason a person understands.

    The reason never quotes the line's content: manifests often hold personal data.
    """

    line: int
    reason: str
    id: str | None = None  # when the line was readable enough to name its id


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A service error (or our own reason) as recorded in the ledger."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Activation:
    """Why a built-in task type started (or did not start) a human loop."""

    reasons: tuple[str, ...]
    conditions: Any  # HumanLoopActivationConditionsEvaluationResults, parsed from its JSON string


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one item in one run: one ledger record."""

    id: str | None
    line: int
    status: Status
    loop_name: str | None = None
    human_loop_arn: str | None = None
    activation: Activation | None = None
    attempts: int = 0
    error: ErrorInfo | None = None
    recovered: bool = False  # the loop was found to exist after an ambiguous attempt
    at: str = ""  # ISO-8601 UTC time the outcome was decided
    #: what DescribeHumanLoop said of a loop holding the item's name (`Status.NAME_TAKEN`):
    #: creation_time, flow_definition_arn, status
    loop: Mapping[str, Any] | None = None
    #: the full service answer for Textract/Rekognition (goes to the sidecar, not the ledger)
    response: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    #: the region the item was sent to, in a job of flows in several regions (None in a job
    #: of one flow: its flow definition's region)
    region: str | None = None
