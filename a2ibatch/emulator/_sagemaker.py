"""SageMaker DescribeFlowDefinition, answered from the naming convention of `_flows`."""

from __future__ import annotations

from typing import Any, Final

from . import _flows, _validation
from ._errors import DIALECTS, SAGEMAKER
from ._state import Call, State

DIALECT: Final = DIALECTS[SAGEMAKER]


def describe_flow_definition(state: State, call: Call) -> dict[str, Any]:
    """DescribeFlowDefinition of a flow definition of the caller's account and region."""
    name = _validation.loop_name(
        DIALECT, call.params.get("FlowDefinitionName"), "FlowDefinitionName"
    )
    arn = f"arn:aws:sagemaker:{call.caller.region}:{state.config.account_id}:flow-definition/{name}"
    flow = _flows.lookup(arn, name)
    if flow is None:
        raise DIALECT.missing(f"Could not find flow definition with name '{name}'")
    return flow.describe(state.config.output_bucket)
