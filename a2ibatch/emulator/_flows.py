"""Flow definitions, known by naming convention instead of created.

The emulator has no CreateFlowDefinition: every well-formed flow-definition ARN names one,
and the name (the part after ``flow-definition/``) says what it is like:

* ``missing-...``  does not exist;
* ``failed-...``   exists with status Failed (no loop can start on it);
* ``public-...``   Active, reviewed by the public Mechanical Turk work team, 3 workers per
  task at a price per task;
* anything else    Active, reviewed by a private work team, 1 worker per task, no price.

A name containing ``textract`` or ``rekognition`` is a flow definition for that built-in
task type (it carries the AWS-managed request source and activation conditions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ._analysis import REKOGNITION_CONDITIONS, TEXTRACT_CONDITIONS
from ._errors import A2I, Dialect

MISSING_PREFIX: Final = "missing-"
FAILED_PREFIX: Final = "failed-"
PUBLIC_PREFIX: Final = "public-"
#: the account that owns the public (Mechanical Turk) work teams
PUBLIC_WORKTEAM_ACCOUNT: Final = "394669845002"
#: when every emulated flow definition was "created" (2024-01-01T00:00:00Z)
CREATED_AT: Final = 1_704_067_200.0

TEXTRACT_SOURCE: Final = "AWS/Textract/AnalyzeDocument/Forms/V1"
REKOGNITION_SOURCE: Final = "AWS/Rekognition/DetectModerationLabels/Image/V3"


@dataclass(frozen=True, slots=True)
class FlowDefinition:
    """One emulated flow definition, derived from its ARN."""

    arn: str
    name: str
    region: str
    account: str
    status: str  # "Active" | "Failed"
    public: bool

    @property
    def active(self) -> bool:
        return self.status == "Active"

    def describe(self, output_bucket: str) -> dict[str, Any]:
        """The DescribeFlowDefinition answer."""
        prefix = f"arn:aws:sagemaker:{self.region}"
        if self.public:
            team = f"{prefix}:{PUBLIC_WORKTEAM_ACCOUNT}:workteam/public-crowd/default"
        else:
            team = f"{prefix}:{self.account}:workteam/private-crowd/reviewers"
        human: dict[str, Any] = {
            "WorkteamArn": team,
            "HumanTaskUiArn": f"{prefix}:{self.account}:human-task-ui/{self.name}-ui",
            "TaskTitle": f"Review ({self.name})",
            "TaskDescription": "Check the machine's answer and correct it.",
            "TaskCount": 3 if self.public else 1,
            "TaskAvailabilityLifetimeInSeconds": 864000,
            "TaskTimeLimitInSeconds": 3600,
        }
        if self.public:
            human["PublicWorkforceTaskPrice"] = {
                "AmountInUsd": {"Dollars": 0, "Cents": 3, "TenthFractionsOfACent": 6}
            }
        answer: dict[str, Any] = {
            "FlowDefinitionArn": self.arn,
            "FlowDefinitionName": self.name,
            "FlowDefinitionStatus": self.status,
            "CreationTime": CREATED_AT,
            "HumanLoopConfig": human,
            "OutputConfig": {"S3OutputPath": f"s3://{output_bucket}"},
            "RoleArn": f"arn:aws:iam::{self.account}:role/service-role/A2IExecutionRole",
        }
        source, conditions = _builtin_parts(self.name)
        if source:
            answer["HumanLoopRequestSource"] = {"AwsManagedHumanLoopRequestSource": source}
            answer["HumanLoopActivationConfig"] = {
                "HumanLoopActivationConditionsConfig": {"HumanLoopActivationConditions": conditions}
            }
        if not self.active:
            answer["FailureReason"] = "The execution role cannot be assumed by SageMaker."
        return answer


def _builtin_parts(name: str) -> tuple[str, str]:
    if "textract" in name:
        return TEXTRACT_SOURCE, TEXTRACT_CONDITIONS
    if "rekognition" in name:
        return REKOGNITION_SOURCE, REKOGNITION_CONDITIONS
    return "", ""


#: flow definitions already looked up (they never change); cleared when it grows large
_KNOWN: dict[str, FlowDefinition | None] = {}
_KNOWN_MAX: Final = 4096


def lookup(arn: str, name: str) -> FlowDefinition | None:
    """The flow definition a valid ARN names, or None when it "does not exist"."""
    try:
        return _KNOWN[arn]
    except KeyError:
        pass
    flow = None
    if not name.startswith(MISSING_PREFIX):
        parts = arn.split(":", 5)
        region, account = parts[3], parts[4]
        status = "Failed" if name.startswith(FAILED_PREFIX) else "Active"
        public = name.startswith(PUBLIC_PREFIX)
        flow = FlowDefinition(arn, name, region, account, status, public)
    if len(_KNOWN) >= _KNOWN_MAX:
        _KNOWN.clear()
    _KNOWN[arn] = flow
    return flow


def usable(dialect: Dialect, arn: str, name: str) -> FlowDefinition:
    """The flow definition to start a loop on, or the calling service's refusal."""
    flow = lookup(arn, name)
    if flow is None:
        message = f"The flow definition {arn} does not exist."
        # StartHumanLoop models no ResourceNotFoundException: A2I says ValidationException.
        raise dialect.invalid(message) if dialect.service == A2I else dialect.missing(message)
    if not flow.active:
        raise dialect.invalid(
            f"The flow definition {arn} is not active (status {flow.status}); "
            "human loops cannot start on it."
        )
    return flow
