"""The A2I runtime API (sagemaker-a2i-runtime): start, describe, list, stop, delete loops."""

from __future__ import annotations

from typing import Any, Final

from . import _flows, _regions, _validation
from ._errors import A2I, DIALECTS, ServiceError
from ._loops import FINISHED, IN_PROGRESS, STOPPED, STOPPING, Loop, input_key
from ._state import MAINTENANCE_MESSAGE, Call, State

DIALECT: Final = DIALECTS[A2I]


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
    region = call.caller.region
    _regions.check_flow(DIALECT, flow_arn, region)
    _flows.usable(DIALECT, flow_arn, flow_name)
    key = input_key(content)
    loops = state.loops
    holder = loops.holder(region, name)
    if holder is not None:
        state.stats.name_conflicts += 1
        same = holder.input_key == key and holder.flow_arn == flow_arn and not holder.deleted
        if same and config.same_input_reuse == "same-arn":
            return {"HumanLoopArn": holder.arn}
        raise ServiceError(
            "ConflictException", f"A human loop with the name {name} already exists.", 409
        )
    limit = config.max_in_progress
    if limit is not None and loops.in_progress_in(region) >= limit:
        state.stats.quota_refusals += 1
        raise DIALECT.too_many_in_progress(limit)
    loop = state.start_loop(
        call,
        name=name,
        flow_arn=flow_arn,
        flow_name=flow_name,
        task="custom",
        key=key,
        input_content=content,
    )
    return {"HumanLoopArn": loop.arn}


def _existing(state: State, call: Call) -> Loop:
    name = _validation.loop_name(DIALECT, call.params.get("HumanLoopName"))
    loop = state.loops.get(call.caller.region, name, call.now)
    if loop is None:
        raise DIALECT.missing(f"HumanLoop {name} was not found.")
    return loop


def describe_human_loop(state: State, call: Call) -> dict[str, Any]:
    """DescribeHumanLoop."""
    return _existing(state, call).describe()


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
