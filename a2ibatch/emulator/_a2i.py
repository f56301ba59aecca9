"""The A2I runtime API (sagemaker-a2i-runtime): start, describe, list, stop, delete loops."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Final

from . import _flows, _validation
from ._errors import A2I, DIALECTS, ServiceError
from ._loops import FINISHED, IN_PROGRESS, STOPPED, STOPPING, Loop, input_key
from ._state import MAINTENANCE_MESSAGE, Call, State

DIALECT: Final = DIALECTS[A2I]
LIST_DEFAULT_MAX: Final = 100


def start_human_loop(state: State, call: Call) -> dict[str, Any]:
    """StartHumanLoop: a new loop, or the name-in-use answer the settings ask for."""
    config = state.config
    if config.not_a2i_customer:
        raise DIALECT.invalid(MAINTENANCE_MESSAGE)
    params = call.params
    name = _validation.loop_name(DIALECT, params.get("HumanLoopName"))
    flow_arn, flow_name = _validation.flow_definition_arn(DIALECT, params.get("FlowDefinitionArn"))
    content = _validation.input_content(DIALECT, params.get("HumanLoopInput"))
    _validation.content_classifiers(DIALECT, params.get("DataAttributes"))
    _flows.usable(DIALECT, flow_arn, flow_name)
    key = input_key(content)
    loops = state.loops
    holder = loops.holder(name)
    if holder is not None:
        state.stats.name_conflicts += 1
        same = holder.input_key == key and holder.flow_arn == flow_arn and not holder.deleted
        if same and config.same_input_reuse == "same-arn":
            return {"HumanLoopArn": holder.arn}
        raise ServiceError(
            "ConflictException", f"A human loop with the name {name} already exists.", 409
        )
    limit = config.max_in_progress
    if limit is not None and loops.in_progress >= limit:
        state.stats.quota_refusals += 1
        raise DIALECT.too_many_in_progress(limit)
    loop = loops.create(
        name=name,
        arn=state.loop_arn(call.caller.region, name),
        flow_arn=flow_arn,
        flow_name=flow_name,
        task="custom",
        key=key,
        input_content=content,
        s3=None,
        now=call.now,
        complete_after=config.complete_after,
        ends_failed=state.chance(config.failure_rate),
    )
    return {"HumanLoopArn": loop.arn}


def _existing(state: State, call: Call) -> Loop:
    name = _validation.loop_name(DIALECT, call.params.get("HumanLoopName"))
    loop = state.loops.get(name, call.now)
    if loop is None:
        raise DIALECT.missing(f"HumanLoop {name} was not found.")
    return loop


def describe_human_loop(state: State, call: Call) -> dict[str, Any]:
    """DescribeHumanLoop."""
    return _existing(state, call).describe(state.config.output_bucket)


def stop_human_loop(state: State, call: Call) -> dict[str, Any]:
    """StopHumanLoop: InProgress -> Stopping -> Stopped; stopping again is harmless."""
    loop = _existing(state, call)
    if loop.status == IN_PROGRESS:
        state.loops.stop(loop, call.now, state.config.stopping_seconds)
    elif loop.status not in (STOPPING, STOPPED):
        raise DIALECT.invalid(
            f"HumanLoop {loop.name} is {loop.status}; only an InProgress loop can be stopped."
        )
    return {}


def delete_human_loop(state: State, call: Call) -> dict[str, Any]:
    """DeleteHumanLoop: only a finished loop (Completed, Failed, Stopped)."""
    loop = _existing(state, call)
    if loop.status not in FINISHED:
        raise DIALECT.invalid(
            f"HumanLoop {loop.name} is {loop.status}; only a Completed, Failed or Stopped "
            "loop can be deleted."
        )
    state.loops.delete(loop)
    return {}


def list_human_loops(state: State, call: Call) -> dict[str, Any]:
    """ListHumanLoops of one flow definition, filtered by creation time, sorted, paged."""
    params = call.params
    flow_arn, _ = _validation.flow_definition_arn(DIALECT, params.get("FlowDefinitionArn"))
    order = params.get("SortOrder") or "Ascending"
    if order not in ("Ascending", "Descending"):
        raise DIALECT.invalid(f"SortOrder must be Ascending or Descending, not {order!r}")
    limit = _max_results(params.get("MaxResults"))
    token = params.get("NextToken")
    loops, next_seq = state.loops.page(
        flow_arn,
        after=_timestamp(params.get("CreationTimeAfter"), "CreationTimeAfter"),
        before=_timestamp(params.get("CreationTimeBefore"), "CreationTimeBefore"),
        descending=order == "Descending",
        limit=limit,
        token=_decode_token(token) if token else None,
        now=call.now,
    )
    answer: dict[str, Any] = {"HumanLoopSummaries": [loop.summary() for loop in loops]}
    if next_seq is not None:
        answer["NextToken"] = _encode_token(next_seq)
    return answer


def _max_results(raw: Any) -> int:
    if raw is None or raw == "":
        return LIST_DEFAULT_MAX
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise DIALECT.invalid(f"MaxResults must be an integer, not {raw!r}") from None
    if not 1 <= value <= 100:
        raise DIALECT.invalid(
            f"1 validation error detected: Value '{value}' at 'maxResults' failed to satisfy "
            "constraint: Member must have value between 1 and 100"
        )
    return value


def _timestamp(raw: Any, field: str) -> float | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, int | float):
        return float(raw)
    try:
        return datetime.fromisoformat(str(raw)).timestamp()
    except ValueError:
        raise DIALECT.invalid(f"{field} is not an ISO 8601 timestamp: {raw!r}") from None


def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"loop:{seq}".encode()).decode()


def _decode_token(token: Any) -> int:
    try:
        text = base64.urlsafe_b64decode(str(token).encode()).decode()
        kind, _, number = text.partition(":")
        if kind != "loop":
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise DIALECT.invalid("The NextToken is not valid.") from None
