"""ListHumanLoops: a flow definition's loops, filtered by creation time, sorted and paged."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Final

from . import _validation
from ._errors import A2I, DIALECTS
from ._state import Call, State

DIALECT: Final = DIALECTS[A2I]
LIST_DEFAULT_MAX: Final = 100


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
