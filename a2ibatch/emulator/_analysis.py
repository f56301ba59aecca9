"""What the "machine" says about a document or an image, and whether a human should look.

No document is read.  Activation (does this input start a human loop?) is a pure function
of the input's identity, the seed and ``activation_rate``, so a rerun of the same inputs
gets the same decisions, and an activated input gets answers whose confidence is low
enough to explain it.  Answers are built once per shape and shared (they are never
mutated), which keeps the hot path cheap.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Final

import orjson

TEXTRACT_MODEL_VERSION: Final = "1.0"
MODERATION_MODEL_VERSION: Final = "7.0"
ACTIVATION_REASONS: Final = ("ConditionsEvaluation",)


def activated(identity: str, seed: int | None, rate: float) -> bool:
    """Whether the input named by `identity` meets the flow definition's conditions."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(f"{seed or 0}\n{identity}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < rate


def _conditions(condition_type: str, parameters: dict[str, Any], result: bool | None) -> str:
    """A conditions document; with `result`, the evaluation results a response carries."""
    condition: dict[str, Any] = {"ConditionType": condition_type, "ConditionParameters": parameters}
    if result is not None:
        condition["EvaluationResult"] = result
    return orjson.dumps({"Conditions": [condition]}).decode()


_TEXTRACT_CONDITION = (
    "ImportantFormKeyConfidenceCheck",
    {
        "ImportantFormKey": "*",
        "KeyValueBlockConfidenceLessThan": 80,
        "WordBlockConfidenceLessThan": 80,
    },
)
_REKOGNITION_CONDITION = (
    "ModerationLabelConfidenceCheck",
    {"ModerationLabelName": "*", "ConfidenceLessThan": 90},
)
#: the flow definitions' activation conditions (DescribeFlowDefinition)
TEXTRACT_CONDITIONS: Final = _conditions(*_TEXTRACT_CONDITION, None)
REKOGNITION_CONDITIONS: Final = _conditions(*_REKOGNITION_CONDITION, None)
#: their evaluation, by result, as AnalyzeDocument / DetectModerationLabels answer it
TEXTRACT_EVALUATION: Final = {r: _conditions(*_TEXTRACT_CONDITION, r) for r in (True, False)}
REKOGNITION_EVALUATION: Final = {r: _conditions(*_REKOGNITION_CONDITION, r) for r in (True, False)}


def activation_output(arn: str | None, evaluation: str) -> dict[str, Any]:
    """``HumanLoopActivationOutput``: with an ARN and reasons only when a loop started."""
    if arn is None:
        return {"HumanLoopActivationConditionsEvaluationResults": evaluation}
    return {
        "HumanLoopArn": arn,
        "HumanLoopActivationReasons": list(ACTIVATION_REASONS),
        "HumanLoopActivationConditionsEvaluationResults": evaluation,
    }


def _geometry(left: float, top: float, width: float, height: float) -> dict[str, Any]:
    return {
        "BoundingBox": {"Width": width, "Height": height, "Left": left, "Top": top},
        "Polygon": [
            {"X": left, "Y": top},
            {"X": left + width, "Y": top},
            {"X": left + width, "Y": top + height},
            {"X": left, "Y": top + height},
        ],
    }


def _block(
    kind: str, ident: str, confidence: float, box: tuple[float, ...], **extra: Any
) -> dict[str, Any]:
    block: dict[str, Any] = {"BlockType": kind, "Confidence": confidence}
    block.update(extra)
    block["Geometry"] = _geometry(*box)
    block["Id"] = ident
    block["Page"] = 1
    return block


def _uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


@functools.lru_cache(maxsize=64)
def textract_blocks(features: frozenset[str], doubtful: bool) -> tuple[dict[str, Any], ...]:
    """A one-page form: a line of text, a key/value pair (FORMS) and a 1x2 table (TABLES).

    A `doubtful` page has a low-confidence key, the reason the loop was activated.
    """
    key_conf = 62.5 if doubtful else 97.8
    blocks: list[dict[str, Any]] = []
    children: list[str] = []
    words = [("Claim", 0.1), ("form", 0.2)]
    word_ids = [_uid(10 + i) for i in range(len(words))]
    blocks.append(
        _block(
            "LINE",
            _uid(2),
            99.4,
            (0.1, 0.05, 0.2, 0.03),
            Text="Claim form",
            Relationships=[{"Type": "CHILD", "Ids": word_ids}],
        )
    )
    children.append(_uid(2))
    for (text, left), ident in zip(words, word_ids, strict=True):
        blocks.append(
            _block("WORD", ident, 99.4, (left, 0.05, 0.09, 0.03), Text=text, TextType="PRINTED")
        )
    if "FORMS" in features:
        key_word, value_word = _uid(20), _uid(21)
        blocks.append(
            _block(
                "KEY_VALUE_SET",
                _uid(3),
                key_conf,
                (0.1, 0.2, 0.15, 0.03),
                EntityTypes=["KEY"],
                Relationships=[
                    {"Type": "VALUE", "Ids": [_uid(4)]},
                    {"Type": "CHILD", "Ids": [key_word]},
                ],
            )
        )
        blocks.append(
            _block(
                "KEY_VALUE_SET",
                _uid(4),
                key_conf,
                (0.3, 0.2, 0.2, 0.03),
                EntityTypes=["VALUE"],
                Relationships=[{"Type": "CHILD", "Ids": [value_word]}],
            )
        )
        blocks.append(
            _block(
                "WORD", key_word, key_conf, (0.1, 0.2, 0.15, 0.03), Text="Name:", TextType="PRINTED"
            )
        )
        blocks.append(
            _block(
                "WORD",
                value_word,
                key_conf,
                (0.3, 0.2, 0.2, 0.03),
                Text="Jane",
                TextType="HANDWRITING",
            )
        )
        children += [_uid(3), _uid(4)]
    if "TABLES" in features:
        cells = [_uid(31), _uid(32)]
        blocks.append(
            _block(
                "TABLE",
                _uid(30),
                98.1,
                (0.1, 0.4, 0.8, 0.1),
                Relationships=[{"Type": "CHILD", "Ids": cells}],
            )
        )
        for column, ident in enumerate(cells, start=1):
            blocks.append(
                _block(
                    "CELL",
                    ident,
                    98.1,
                    (0.1 + 0.4 * (column - 1), 0.4, 0.4, 0.1),
                    RowIndex=1,
                    ColumnIndex=column,
                    RowSpan=1,
                    ColumnSpan=1,
                )
            )
        children.append(_uid(30))
    page = _block(
        "PAGE",
        _uid(1),
        99.9,
        (0.0, 0.0, 1.0, 1.0),
        Relationships=[{"Type": "CHILD", "Ids": children}],
    )
    return (page, *blocks)


_LABELS: Final = (
    # (name, parent, taxonomy level, confidence when doubtful)
    ("Suggestive", "", 1, 71.3),
    ("Revealing Clothes", "Suggestive", 2, 71.3),
)


def moderation_labels(doubtful: bool, min_confidence: float) -> list[dict[str, Any]]:
    """Moderation labels: a doubtful image has labels of middling confidence; others none."""
    if not doubtful:
        return []
    return [
        {"Confidence": confidence, "Name": name, "ParentName": parent, "TaxonomyLevel": level}
        for name, parent, level, confidence in _LABELS
        if confidence >= min_confidence
    ]
