"""Parameter checks shared by the operations, with the service's limits and patterns.

Each check raises the calling service's own validation error (``Dialect.invalid``), so the
same rule answers ValidationException on A2I and InvalidParameterException on Textract.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from ._errors import Dialect

NAME_PATTERN: Final = re.compile(r"[a-z0-9](-*[a-z0-9])*")
NAME_MAX: Final = 63
FLOW_ARN_PATTERN: Final = re.compile(
    r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:flow-definition/(.*)"
)
FLOW_ARN_MAX: Final = 1024
INPUT_CONTENT_MAX: Final = 3_145_728
CONTENT_CLASSIFIERS: Final = frozenset(
    {"FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"}
)
FEATURE_TYPES: Final = frozenset({"TABLES", "FORMS", "QUERIES", "SIGNATURES", "LAYOUT"})


def loop_name(dialect: Dialect, value: Any, field: str = "HumanLoopName") -> str:
    """A human loop name: lower-case letters, digits and inner hyphens, 1..63 characters."""
    if not isinstance(value, str) or not value:
        raise dialect.invalid(f"{field} is required")
    if len(value) > NAME_MAX:
        raise dialect.invalid(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
            f"constraint: Member must have length less than or equal to {NAME_MAX}"
        )
    if NAME_PATTERN.fullmatch(value) is None:
        raise dialect.invalid(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: ^[a-z0-9](-*[a-z0-9])*$"
        )
    return value


def flow_definition_arn(dialect: Dialect, value: Any) -> tuple[str, str]:
    """A flow-definition ARN; returns it with the flow definition's name."""
    if not isinstance(value, str) or not value:
        raise dialect.invalid("FlowDefinitionArn is required")
    match = FLOW_ARN_PATTERN.fullmatch(value) if len(value) <= FLOW_ARN_MAX else None
    if match is None or not match.group(1):
        raise dialect.invalid(
            f"1 validation error detected: Value '{value}' at 'FlowDefinitionArn' failed to "
            "satisfy constraint: Member must satisfy regular expression pattern: "
            r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:flow-definition/.*"
        )
    return value, match.group(1)


def input_content(dialect: Dialect, human_loop_input: Any) -> str:
    """``HumanLoopInput.InputContent``: present, at most 3 MiB characters, a JSON document."""
    if not isinstance(human_loop_input, Mapping):
        raise dialect.invalid("HumanLoopInput is required")
    content = human_loop_input.get("InputContent")
    if not isinstance(content, str):
        raise dialect.invalid("HumanLoopInput.InputContent is required")
    if len(content) > INPUT_CONTENT_MAX:
        raise dialect.invalid(
            "1 validation error detected: Value at 'humanLoopInput.inputContent' failed to "
            f"satisfy constraint: Member must have length less than or equal to {INPUT_CONTENT_MAX}"
        )
    try:
        orjson.loads(content)
    except orjson.JSONDecodeError:
        raise dialect.invalid("InputContent is not a valid JSON document") from None
    return content


def content_classifiers(dialect: Dialect, data_attributes: Any) -> tuple[str, ...]:
    """``DataAttributes.ContentClassifiers``: only the two values the service knows."""
    if data_attributes is None:
        return ()
    if not isinstance(data_attributes, Mapping):
        raise dialect.invalid("DataAttributes must be an object")
    classifiers = data_attributes.get("ContentClassifiers") or []
    if not isinstance(classifiers, list):
        raise dialect.invalid("DataAttributes.ContentClassifiers must be a list")
    for value in classifiers:
        if value not in CONTENT_CLASSIFIERS:
            raise dialect.invalid(
                f"1 validation error detected: Value '[{value}]' at "
                "'dataAttributes.contentClassifiers' failed to satisfy constraint: Member must "
                "satisfy constraint: [Member must satisfy enum value set: "
                "[FreeOfAdultContent, FreeOfPersonallyIdentifiableInformation]]"
            )
    return tuple(classifiers)


def feature_types(dialect: Dialect, value: Any) -> tuple[str, ...]:
    """Textract ``FeatureTypes``: at least one of TABLES, FORMS, QUERIES, SIGNATURES, LAYOUT."""
    if not isinstance(value, list) or not value:
        raise dialect.invalid("FeatureTypes is required and must not be empty")
    for item in value:
        if item not in FEATURE_TYPES:
            raise dialect.invalid(
                f"1 validation error detected: Value '{item}' at 'featureTypes' failed to "
                "satisfy constraint: Member must satisfy enum value set: "
                "[TABLES, FORMS, QUERIES, SIGNATURES, LAYOUT]"
            )
    return tuple(value)


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """The document or image a built-in task analyses.

    `identity` is what makes two inputs "the same input": ``s3://bucket/key`` plus the
    version for an S3 object, a digest of the bytes for inline bytes.
    """

    identity: str
    s3: dict[str, str] | None


def document(dialect: Dialect, container: Any, field: str) -> DocumentRef:
    """``Document`` / ``Image``: an ``S3Object`` (Bucket, Name, optional Version) or ``Bytes``."""
    if not isinstance(container, Mapping):
        raise dialect.invalid(f"{field} is required")
    obj = container.get("S3Object")
    if obj is None and isinstance(container.get("Bytes"), str | bytes):
        raw = container["Bytes"]
        data = raw.encode() if isinstance(raw, str) else raw
        if not data:
            raise dialect.invalid(f"{field}.Bytes must not be empty")
        return DocumentRef("bytes:" + hashlib.blake2b(data, digest_size=16).hexdigest(), None)
    if not isinstance(obj, Mapping):
        raise dialect.invalid(f"{field}.S3Object is required")
    bucket, name, version = obj.get("Bucket"), obj.get("Name"), obj.get("Version")
    if not isinstance(bucket, str) or not bucket or not isinstance(name, str) or not name:
        raise dialect.invalid(f"{field}.S3Object needs a Bucket and a Name")
    s3 = {"Bucket": bucket, "Name": name}
    identity = f"s3://{bucket}/{name}"
    if version is not None:
        if not isinstance(version, str) or not version:
            raise dialect.invalid(f"{field}.S3Object.Version must be a non-empty string")
        s3["Version"] = version
        identity += f"?versionId={version}"
    return DocumentRef(identity, s3)
