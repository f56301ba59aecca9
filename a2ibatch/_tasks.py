"""One adapter per task type: how an item becomes a request, and what an answer means.

The runner knows nothing about Textract, Rekognition or StartHumanLoop; it asks the adapter
for the request and the client method that sends it, and lets the adapter say what the
answer (or the error) means.  Errors whose meaning hides in the message live here too: Textract and
Rekognition overload InvalidParameterException for "the loop name is taken", "A2I no longer
takes this account" and plain bad parameters.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from ._errors import setting
from ._models import Activation, Item, S3Ref, Status, TaskType
from ._retry import CallError, ErrorKind, describe_exception

A2I_SERVICE = "sagemaker-a2i-runtime"
DEFAULT_FEATURE_TYPES = ("FORMS", "TABLES")


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """The job-wide parts of every request."""

    flow_definition_arn: str
    content_classifiers: tuple[str, ...] = ()
    feature_types: tuple[str, ...] = DEFAULT_FEATURE_TYPES


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful call, read: did a loop start, and what else did the service say."""

    status: Status
    human_loop_arn: str | None
    activation: Activation | None
    response: dict[str, Any] | None  # kept for the sidecar (built-in task types)


class TaskAdapter(abc.ABC):
    """Request shape, answer meaning and error meaning of one task type."""

    task: ClassVar[TaskType]
    service: ClassVar[str]  # the aioboto3 client name
    operation: ClassVar[str]  # the API, also the key of its rate controller
    method: ClassVar[str]  # the client's method for `operation`
    #: a resend costs money of its own (a document analysed twice is paid twice), so after
    #: an ambiguous attempt the runner asks DescribeHumanLoop before sending again
    describe_before_resend: ClassVar[bool]

    @abc.abstractmethod
    def payload_key(self, item: Item) -> str:
        """The canonical text of what the item sends for review (part of its loop name)."""

    @abc.abstractmethod
    def request(self, item: Item, loop_name: str, options: RequestOptions) -> dict[str, Any]:
        """The keyword arguments of the API call."""

    @abc.abstractmethod
    def read_answer(self, response: Mapping[str, Any]) -> Answer:
        """What a successful answer means."""

    def classify(self, exc: BaseException) -> CallError:
        """What an error means for the item and the job."""
        error = describe_exception(exc)
        if error.kind is not ErrorKind.ITEM:
            return error
        text = error.message.lower()
        if "no longer accept" in text or "maintenance mode" in text or "not an existing" in text:
            return CallError(
                ErrorKind.FATAL,
                error.code,
                "Amazon A2I no longer accepts new customers and refused this account "
                f"({error.code}): only accounts that already use A2I can start human loops",
                error.status,
            )
        about_flow = "flow definition" in text or "flowdefinition" in text
        unusable = ("not exist", "not found", "not active", "inactive")
        if about_flow and any(w in text for w in unusable):
            return CallError(
                ErrorKind.FATAL,
                error.code,
                f"the flow definition is unusable ({error.code}: {error.message}); check "
                f"{setting('flow_definition_arn')}, its region, and that it is Active",
                error.status,
            )
        return error

    def human_loop_config(self, loop_name: str, options: RequestOptions) -> dict[str, Any]:
        config: dict[str, Any] = {
            "HumanLoopName": loop_name,
            "FlowDefinitionArn": options.flow_definition_arn,
        }
        if options.content_classifiers:
            config["DataAttributes"] = {"ContentClassifiers": list(options.content_classifiers)}
        return config


def _s3_object(ref: S3Ref) -> dict[str, str]:
    obj = {"Bucket": ref.bucket, "Name": ref.key}
    if ref.version:
        obj["Version"] = ref.version
    return obj


def _classifiers(item: Item, options: RequestOptions) -> RequestOptions:
    if item.content_classifiers is None:
        return options
    return RequestOptions(
        options.flow_definition_arn, item.content_classifiers, options.feature_types
    )


def _activation_answer(response: Mapping[str, Any]) -> Answer:
    output = response.get("HumanLoopActivationOutput") or {}
    arn = output.get("HumanLoopArn")
    activation = None
    if output:
        raw = output.get("HumanLoopActivationConditionsEvaluationResults")
        try:
            conditions = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError:
            conditions = raw
        activation = Activation(tuple(output.get("HumanLoopActivationReasons") or ()), conditions)
    kept = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    status = Status.STARTED if arn else Status.NOT_ACTIVATED
    return Answer(status, arn, activation, kept)


class CustomTask(TaskAdapter):
    """A2I runtime StartHumanLoop: the loop always starts."""

    task = TaskType.CUSTOM
    service = A2I_SERVICE
    operation = "StartHumanLoop"
    method = "start_human_loop"
    describe_before_resend = False  # a resend with the same name cannot start a second loop

    def payload_key(self, item: Item) -> str:
        return item.input_content or ""

    def request(self, item: Item, loop_name: str, options: RequestOptions) -> dict[str, Any]:
        # StartHumanLoop takes HumanLoopConfig's fields at the top level, plus the input.
        request = self.human_loop_config(loop_name, _classifiers(item, options))
        request["HumanLoopInput"] = {"InputContent": item.input_content}
        return request

    def read_answer(self, response: Mapping[str, Any]) -> Answer:
        return Answer(Status.STARTED, response.get("HumanLoopArn"), None, None)

    def classify(self, exc: BaseException) -> CallError:
        error = super().classify(exc)
        if error.code == "ConflictException":
            return CallError(ErrorKind.NAME_IN_USE, error.code, error.message, error.status)
        return error


class _BuiltinTask(TaskAdapter):
    describe_before_resend = True

    def payload_key(self, item: Item) -> str:
        """The object's URI and version.

        Spelled out rather than through `S3Ref.uri` (the same text): a dry run computes one
        per manifest line, and the property call was about half of its cost.
        """
        ref = item.s3
        if ref is None:  # pragma: no cover - the manifest reader guarantees it
            raise ValueError("item has no S3 object")
        return f"s3://{ref.bucket}/{ref.key}\n{ref.version or ''}"

    def read_answer(self, response: Mapping[str, Any]) -> Answer:
        return _activation_answer(response)

    def classify(self, exc: BaseException) -> CallError:
        error = super().classify(exc)
        if error.kind is ErrorKind.ITEM and "already exists" in error.message.lower():
            return CallError(ErrorKind.NAME_IN_USE, error.code, error.message, error.status)
        return error


class TextractTask(_BuiltinTask):
    """Textract AnalyzeDocument with a HumanLoopConfig."""

    task = TaskType.TEXTRACT
    service = "textract"
    operation = "AnalyzeDocument"
    method = "analyze_document"

    def request(self, item: Item, loop_name: str, options: RequestOptions) -> dict[str, Any]:
        assert item.s3 is not None
        options = _classifiers(item, options)
        return {
            "Document": {"S3Object": _s3_object(item.s3)},
            "FeatureTypes": list(item.feature_types or options.feature_types),
            "HumanLoopConfig": self.human_loop_config(loop_name, options),
        }


class RekognitionTask(_BuiltinTask):
    """Rekognition DetectModerationLabels with a HumanLoopConfig."""

    task = TaskType.REKOGNITION
    service = "rekognition"
    operation = "DetectModerationLabels"
    method = "detect_moderation_labels"

    def request(self, item: Item, loop_name: str, options: RequestOptions) -> dict[str, Any]:
        assert item.s3 is not None
        options = _classifiers(item, options)
        request: dict[str, Any] = {
            "Image": {"S3Object": _s3_object(item.s3)},
            "HumanLoopConfig": self.human_loop_config(loop_name, options),
        }
        if item.min_confidence is not None:
            request["MinConfidence"] = item.min_confidence
        return request


ADAPTERS: Mapping[TaskType, TaskAdapter] = {
    TaskType.CUSTOM: CustomTask(),
    TaskType.TEXTRACT: TextractTask(),
    TaskType.REKOGNITION: RekognitionTask(),
}


def adapter_for(task: TaskType | str) -> TaskAdapter:
    return ADAPTERS[TaskType(task)]
