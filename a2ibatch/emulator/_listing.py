"""ListHumanLoops: a flow definition's loops in the call's region, filtered, sorted, paged.

As the API reference describes it: ``CreationTimeAfter`` is when the listed loops begin and
``CreationTimeBefore`` the time before which they began, so the window is half open,
``After <= CreationTime < Before``; SortOrder Ascending (the default) or Descending;
MaxResults 1..100 (default 100).  A ``NextToken`` continues the query it came from and
nothing else: the token names the last loop returned (its creation number, so pages stay
right while loops are created and deleted between calls) and carries a digest of the query
(region, flow definition, bounds, order); given with any other query it is refused.  A flow
definition that does not exist in the call's region (``missing-...``, or an ARN of another
region) is a ResourceNotFoundException, the error the operation models for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

from . import _flows, _regions, _validation
from ._errors import A2I, DIALECTS
from ._loops import Loop
from ._state import Call, State

DIALECT: Final = DIALECTS[A2I]
LIST_DEFAULT_MAX: Final = 100
TOKEN_MAX: Final = 8192
BAD_TOKEN: Final = "The NextToken is not valid for this request."


def list_human_loops(state: State, call: Call) -> dict[str, Any]:
    """ListHumanLoops of one flow definition, filtered by creation time, sorted, paged."""
    params = call.params
    flow_arn, flow_name = _validation.flow_definition_arn(DIALECT, params.get("FlowDefinitionArn"))
    order = params.get("SortOrder") or "Ascending"
    if order not in ("Ascending", "Descending"):
        raise DIALECT.invalid(
            f"1 validation error detected: Value '{order}' at 'sortOrder' failed to satisfy "
            "constraint: Member must satisfy enum value set: [Ascending, Descending]"
        )
    limit = _max_results(params.get("MaxResults"))
    after = _timestamp(params.get("CreationTimeAfter"), "CreationTimeAfter")
    before = _timestamp(params.get("CreationTimeBefore"), "CreationTimeBefore")
    region = call.caller.region
    if (
        _regions.mismatch(flow_arn, region) is not None
        or _flows.lookup(flow_arn, flow_name) is None
    ):
        raise DIALECT.missing(f"The flow definition {flow_arn} does not exist in {region}.")
    query = _digest(region, flow_arn, after, before, order)
    token = params.get("NextToken")
    cursor = _decode_token(token, query) if token else None
    loops, last = _page(
        state.loops.of_flow(flow_arn), after, before, order == "Descending", limit, cursor
    )
    for loop in loops:
        loop.refresh(call.now)
    answer: dict[str, Any] = {"HumanLoopSummaries": [loop.summary() for loop in loops]}
    if last is not None:
        answer["NextToken"] = _encode_token(last, query)
    return answer


def _page(
    loops: list[Loop],
    after: float | None,
    before: float | None,
    descending: bool,
    limit: int,
    cursor: int | None,
) -> tuple[list[Loop], int | None]:
    """One page, and the creation number to continue after (None: this was the last page).

    `loops` is in creation order, so a creation number finds its place by bisection; a
    token is returned only when another matching loop is known to follow.
    """
    if descending:
        end = len(loops) if cursor is None else _bisect(loops, cursor)
        candidates: Iterator[Loop] = (loops[i] for i in range(end - 1, -1, -1))
    else:
        start = 0 if cursor is None else _bisect(loops, cursor + 1)
        candidates = (loops[i] for i in range(start, len(loops)))
    page: list[Loop] = []
    for loop in candidates:
        if loop.deleted:
            continue
        created = loop.created_at
        if (after is not None and created < after) or (before is not None and created >= before):
            continue
        if len(page) == limit:
            return page, page[-1].seq
        page.append(loop)
    return page, None


def _bisect(loops: list[Loop], seq: int) -> int:
    """The index of the first loop whose creation number is `seq` or more."""
    low, high = 0, len(loops)
    while low < high:
        middle = (low + high) // 2
        if loops[middle].seq < seq:
            low = middle + 1
        else:
            high = middle
    return low


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
    """A query-string timestamp: ISO 8601 (a date alone, or without a zone, is UTC) or epoch."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    else:
        text = str(raw).strip()
        try:
            value = float(text)
        except ValueError:
            try:
                when = datetime.fromisoformat(text)
            except ValueError:
                raise DIALECT.invalid(f"{field} is not an ISO 8601 timestamp: {raw!r}") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            value = when.timestamp()
    if not math.isfinite(value):
        raise DIALECT.invalid(f"{field} is not a valid timestamp: {raw!r}")
    return value


def _digest(
    region: str, flow_arn: str, after: float | None, before: float | None, order: str
) -> str:
    query = f"{region}\n{flow_arn}\n{after!r}\n{before!r}\n{order}"
    return hashlib.blake2b(query.encode(), digest_size=9).hexdigest()


def _encode_token(seq: int, query: str) -> str:
    return base64.urlsafe_b64encode(f"loops:{seq}:{query}".encode()).decode()


def _decode_token(token: Any, query: str) -> int:
    """The creation number a token continues after; refused unless it is this query's."""
    text = str(token)
    if len(text) > TOKEN_MAX:
        raise DIALECT.invalid(
            "1 validation error detected: Value at 'nextToken' failed to satisfy constraint: "
            f"Member must have length less than or equal to {TOKEN_MAX}"
        )
    try:
        kind, number, owner = base64.urlsafe_b64decode(text.encode()).decode().split(":")
        if kind != "loops" or owner != query:
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise DIALECT.invalid(BAD_TOKEN) from None
