"""The built-in task types: Textract AnalyzeDocument and Rekognition DetectModerationLabels.

Both analyse an input and, given a ``HumanLoopConfig``, start a loop when the input meets
the flow definition's conditions (see `_analysis.activated`).  Inputs are virtual: an S3
object is never read, except that one whose bucket the emulator's S3 holds in another
region than the call's is refused, as the services refuse it (`_regions.check_bucket`).
A loop name already in use fails the whole call with the message the real services use.
"""

from __future__ import annotations

from typing import Any, Final

from . import _analysis, _flows, _regions, _validation
from ._errors import DIALECTS, REKOGNITION, TEXTRACT, Dialect
from ._loops import input_key
from ._state import MAINTENANCE_MESSAGE, Call, State

NAME_IN_USE: Final = (
    "HumanLoop '{}' already exists and is finished. To start a new HumanLoop, you can try "
    "your request again with a different HumanLoopName"
)
DEFAULT_MIN_CONFIDENCE: Final = 50.0


def _human_loop(
    state: State,
    call: Call,
    dialect: Dialect,
    task: str,
    document: _validation.DocumentRef,
    doubtful: bool,
) -> str | None:
    """Check ``HumanLoopConfig`` and start the loop if the input is doubtful; its ARN."""
    config = state.config
    if config.not_a2i_customer:
        raise dialect.invalid(MAINTENANCE_MESSAGE)
    raw = call.params["HumanLoopConfig"]
    if not isinstance(raw, dict):
        raise dialect.invalid("HumanLoopConfig must be an object")
    name = _validation.loop_name(dialect, raw.get("HumanLoopName"))
    flow_arn, flow_name = _validation.flow_definition_arn(dialect, raw.get("FlowDefinitionArn"))
    _validation.content_classifiers(dialect, raw.get("DataAttributes"))
    region = call.caller.region
    _regions.check_flow(dialect, flow_arn, region)
    _flows.usable(dialect, flow_arn, flow_name)
    loops = state.loops
    if loops.holder(region, name) is not None:
        state.stats.name_conflicts += 1
        raise dialect.invalid(NAME_IN_USE.format(name))
    if not doubtful:
        state.stats.not_activated += 1
        return None
    limit = config.max_in_progress
    if limit is not None and loops.in_progress_in(region) >= limit:
        state.stats.quota_refusals += 1
        raise dialect.too_many_in_progress(limit)
    loop = state.start_loop(
        call,
        name=name,
        flow_arn=flow_arn,
        flow_name=flow_name,
        task=task,
        key=input_key(document.identity),
        s3=document.s3,
        request=_kept_request(call.params, document),
    )
    return loop.arn


def _kept_request(params: dict[str, Any], document: _validation.DocumentRef) -> dict[str, Any]:
    """The request as output.json repeats it; inline bytes are not kept (they may be MBs)."""
    if document.s3 is not None:
        return params  # decoded for this call alone and never changed: no copy needed
    return {
        key: {"Bytes": "(not kept)"} if key in ("Document", "Image") else value
        for key, value in params.items()
    }


def analyze_document(state: State, call: Call) -> dict[str, Any]:
    """Textract AnalyzeDocument."""
    dialect = DIALECTS[TEXTRACT]
    params = call.params
    document = _validation.document(dialect, params.get("Document"), "Document")
    features = _validation.feature_types(dialect, params.get("FeatureTypes"))
    _regions.check_bucket(dialect, document.s3, call.caller.region, state.s3.bucket_region)
    config = state.config
    doubtful = _analysis.activated(document.identity, config.seed, config.activation_rate)
    answer: dict[str, Any] = {
        "DocumentMetadata": {"Pages": 1},
        "Blocks": _analysis.textract_blocks(frozenset(features), doubtful),
        "AnalyzeDocumentModelVersion": _analysis.TEXTRACT_MODEL_VERSION,
    }
    if params.get("HumanLoopConfig") is not None:
        arn = _human_loop(state, call, dialect, "textract", document, doubtful)
        evaluation = _analysis.TEXTRACT_EVALUATION[doubtful]
        answer["HumanLoopActivationOutput"] = _analysis.activation_output(arn, evaluation)
    return answer


def detect_moderation_labels(state: State, call: Call) -> dict[str, Any]:
    """Rekognition DetectModerationLabels."""
    dialect = DIALECTS[REKOGNITION]
    params = call.params
    image = _validation.document(dialect, params.get("Image"), "Image")
    _regions.check_bucket(dialect, image.s3, call.caller.region, state.s3.bucket_region)
    min_confidence = params.get("MinConfidence", DEFAULT_MIN_CONFIDENCE)
    if (
        not isinstance(min_confidence, int | float)
        or isinstance(min_confidence, bool)
        or not 0 <= min_confidence <= 100
    ):
        raise dialect.invalid("MinConfidence must be a number between 0 and 100")
    config = state.config
    doubtful = _analysis.activated(image.identity, config.seed, config.activation_rate)
    answer: dict[str, Any] = {
        "ModerationLabels": _analysis.moderation_labels(doubtful, float(min_confidence)),
        "ModerationModelVersion": _analysis.MODERATION_MODEL_VERSION,
    }
    if params.get("HumanLoopConfig") is not None:
        arn = _human_loop(state, call, dialect, "rekognition", image, doubtful)
        evaluation = _analysis.REKOGNITION_EVALUATION[doubtful]
        answer["HumanLoopActivationOutput"] = _analysis.activation_output(arn, evaluation)
    return answer
