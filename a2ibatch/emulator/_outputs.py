"""output.json: what A2I writes to S3 when a human loop completes, as its docs lay it out.

The object is ``<S3OutputPath>/<flow-definition-name>/YYYY/MM/DD/hh/mm/ss/<loop-name>/
output.json`` (the loop's creation time, UTC), the ``OutputS3Uri`` DescribeHumanLoop shows.
It holds ``flowDefinitionArn``, ``humanLoopName``, ``inputContent`` and ``humanAnswers``,
one answer per worker (the flow definition's TaskCount: 1 for a private team, 3 for the
public workforce); built-in task types add ``awsManagedHumanLoopRequestSource`` and an
``inputContent`` of ``aiServiceRequest``, ``aiServiceResponse``,
``humanTaskActivationConditionResults`` and ``selectedAiServiceResponse``.

Answers are made up, plausibly, and deterministically: every draw is a digest of the seed
and the loop (region and name), so the same run writes the same bytes.  Private workers
carry ``workerMetadata`` (a Cognito identity, as the docs show); public workers have none,
as the docs say.  Nothing of the caller's request beyond what A2I itself keeps is copied:
no credentials, no signature, and never the bytes of an inline document.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from . import _analysis, _flows
from ._loops import Loop

PRIVATE_TEAM: Final = 12  # reviewers of a private work team
PUBLIC_CROWD: Final = 10_000  # Mechanical Turk workers who might pick a task up
VALUE_READINGS: Final = ("Jane Doe", "Jane Doe", "Jane D. Doe", "J. Doe")


def objects(loops: Iterable[Loop], seed: int | None) -> Iterator[tuple[str, str, str, bytes]]:
    """(bucket, region, key, body) of each loop's output.json."""
    for loop in loops:
        bucket, _, prefix = loop.output_path.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        key = f"{prefix}/{loop.output_key}" if prefix else loop.output_key
        yield bucket, loop.region, key, orjson.dumps(document(loop, seed))


def document(loop: Loop, seed: int | None) -> dict[str, Any]:
    """The output.json of a Completed loop."""
    flow = _flows.lookup(loop.flow_arn, loop.flow_name)
    public = flow is not None and flow.public
    dice = _Dice(f"{seed or 0}\n{loop.region}\n{loop.name}")
    count = 3 if public else 1  # the flow definition's TaskCount
    pool = PUBLIC_CROWD if public else PRIVATE_TEAM
    answers = [
        _answer(
            loop, dice.child(f"worker {k}"), _worker_number(dice, k, pool), public, k == count - 1
        )
        for k in range(count)
    ]
    output: dict[str, Any] = {"flowDefinitionArn": loop.flow_arn}
    if loop.task == "custom":
        output["humanAnswers"] = answers
        output["humanLoopName"] = loop.name
        output["inputContent"] = orjson.loads(loop.input_content or "{}")
        return output
    source = _flows.TEXTRACT_SOURCE if loop.task == "textract" else _flows.REKOGNITION_SOURCE
    return {
        "awsManagedHumanLoopRequestSource": source,
        **output,
        "humanAnswers": answers,
        "humanLoopName": loop.name,
        "inputContent": _builtin_input(loop),
    }


class _Dice:
    """Numbers in [0, 1) drawn from a digest of a name: the same name, the same numbers."""

    def __init__(self, name: str) -> None:
        self.name = name

    def child(self, part: str) -> _Dice:
        return _Dice(f"{self.name}\n{part}")

    def digest(self, what: str, size: int = 8) -> bytes:
        return hashlib.blake2b(f"{self.name}\n{what}".encode(), digest_size=size).digest()

    def __call__(self, what: str) -> float:
        return int.from_bytes(self.digest(what), "big") / 2.0**64


def _worker_number(dice: _Dice, k: int, pool: int) -> int:
    """The k-th worker of a loop: distinct workers of one pool (3 never exceeds a pool)."""
    first = int(dice("first worker") * pool)
    return (first + k * 7) % pool


def _answer(loop: Loop, dice: _Dice, worker: int, public: bool, last: bool) -> dict[str, Any]:
    span = max(0.0, loop.finished_at - loop.created_at)
    submitted = 1.0 if last else 0.5 + 0.5 * dice("submitted")  # the last answer ends the loop
    accepted = submitted * dice("accepted")
    team = _Dice(f"{loop.flow_arn}\nworker {worker}")
    answer: dict[str, Any] = {
        "acceptanceTime": _iso(loop.created_at + span * accepted),
        "answerContent": _content(loop, dice),
        "submissionTime": _iso(loop.created_at + span * submitted),
        "timeSpentInSeconds": round(span * (submitted - accepted), 3),
        "workerId": team.digest("id").hex(),
    }
    if not public:
        pool = team.digest("pool", 5).hex()[:9]
        region = loop.region
        answer["workerMetadata"] = {
            "identityData": {
                "identityProviderType": "Cognito",
                "issuer": f"https://cognito-idp.{region}.amazonaws.com/{region}_{pool}",
                "sub": str(uuid.UUID(bytes=team.digest("sub", 16), version=4)),
            }
        }
    return answer


def _iso(when: float) -> str:
    moment = datetime.fromtimestamp(when, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _content(loop: Loop, dice: _Dice) -> dict[str, Any]:
    """What one worker answered."""
    if loop.task == "custom":
        return {
            "decision": "approve" if dice("decision") < 0.7 else "reject",
            "confidence": round(0.55 + 0.45 * dice("confidence"), 2),
        }
    if loop.task == "textract":
        reading = VALUE_READINGS[int(dice("reading") * len(VALUE_READINGS))]
        blocks = [_camel(b) for b in _key_values(loop)]
        for block in blocks:
            block["confidence"] = 100.0
            if block["blockType"] == "WORD" and block.get("textType") == "HANDWRITING":
                block["text"] = reading
        return {_flows.TEXTRACT_SOURCE: {"blocks": blocks}}
    labels = _labels(loop)
    kept = [label for i, label in enumerate(labels) if i == 0 or dice(f"label {i}") < 0.6]
    chosen = [{"name": x["Name"], "parentName": x["ParentName"]} for x in kept]
    return {_flows.REKOGNITION_SOURCE: {"moderationLabels": chosen}}


def _request(loop: Loop) -> dict[str, Any]:
    return loop.request or {}


def _features(loop: Loop) -> frozenset[str]:
    return frozenset(_request(loop).get("FeatureTypes") or ())


def _key_values(loop: Loop) -> list[dict[str, Any]]:
    """The blocks of the doubtful key/value pair (the pair and their words)."""
    blocks = _analysis.textract_blocks(_features(loop), True)
    pair = [b for b in blocks if b["BlockType"] == "KEY_VALUE_SET"]
    words = {
        i
        for b in pair
        for r in b.get("Relationships", ())
        if r["Type"] == "CHILD"
        for i in r["Ids"]
    }
    return pair + [b for b in blocks if b["Id"] in words]


def _labels(loop: Loop) -> list[dict[str, Any]]:
    minimum = _request(loop).get("MinConfidence", 50.0)
    return _analysis.moderation_labels(True, float(minimum))


def _builtin_input(loop: Loop) -> dict[str, Any]:
    """``inputContent`` of a built-in task: what the service sent A2I."""
    if loop.task == "textract":
        blocks = _analysis.textract_blocks(_features(loop), True)
        response: dict[str, Any] = {
            "blocks": [_camel(b) for b in blocks],
            "documentMetadata": {"pages": 1},
        }
        selected: dict[str, Any] = {"blocks": [_camel(b) for b in _key_values(loop)]}
        evaluation = _analysis.TEXTRACT_EVALUATION[True]
    else:
        labels = [_camel(x) for x in _labels(loop)]
        version = _analysis.MODERATION_MODEL_VERSION
        response = {"moderationLabels": labels, "moderationModelVersion": version}
        selected = {"moderationLabels": labels, "moderationModelVersion": version}
        evaluation = _analysis.REKOGNITION_EVALUATION[True]
    return {
        "aiServiceRequest": _camel(_request(loop)),
        "aiServiceResponse": response,
        "humanTaskActivationConditionResults": orjson.loads(evaluation),
        "selectedAiServiceResponse": selected,
    }


def _camel(value: Any) -> Any:
    """A copy with every key lower camel case, as A2I writes service shapes in output.json."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _camel(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_camel(v) for v in value]
    if isinstance(value, bytes):
        return "(not kept)"
    return value
