"""ListHumanLoops pages exactly: thousands of loops of three flow definitions, over HTTP.

Expectations come from the emulator's own record of every loop (``/_emulator/loops``), so
each listing is compared with the set (and order) it must return, not with a count.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from test_emulator import A2I, client, get, start_args

pytestmark = pytest.mark.anyio

FLOWS = [f"arn:aws:sagemaker:us-east-1:123456789012:flow-definition/flow-{i}" for i in range(3)]
PER_FLOW = 700


async def start_many(a2i: Any, names: list[tuple[str, str]], concurrency: int = 16) -> None:
    queue = iter(names)

    async def worker() -> None:
        for name, flow in queue:
            await a2i.start_human_loop(**start_args(name, flow=flow))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def list_all(a2i: Any, **query: Any) -> list[dict[str, Any]]:
    """Every summary of a query, page by page by hand (NextToken as given)."""
    summaries: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs = dict(query)
        if token:
            kwargs["NextToken"] = token
        page = await a2i.list_human_loops(**kwargs)
        assert len(page["HumanLoopSummaries"]) <= query.get("MaxResults", 100)
        summaries += page["HumanLoopSummaries"]
        token = page.get("NextToken")
        if not token:
            return summaries
        assert page["HumanLoopSummaries"], "a token only when more loops follow"


def names(summaries: list[dict[str, Any]]) -> list[str]:
    return [s["HumanLoopName"] for s in summaries]


@pytest.fixture
async def loaded(emulator: Any) -> dict[str, list[dict[str, Any]]]:
    """2,100 loops, interleaved over three flow definitions: flow ARN -> loops, oldest first."""
    async with client(emulator.url, A2I, max_pool_connections=16) as a2i:
        await start_many(
            a2i, [(f"l-{i}", FLOWS[i % 3]) for i in range(PER_FLOW * 3)], concurrency=16
        )
    loops = await get(emulator.url, "/_emulator/loops")
    return {flow: [x for x in loops if x["flow_definition_arn"] == flow] for flow in FLOWS}


async def test_paging_returns_each_flows_loops_once_in_order(
    emulator: Any, loaded: dict[str, list[dict[str, Any]]]
) -> None:
    async with client(emulator.url, A2I) as a2i:
        for flow, expected in loaded.items():
            assert len(expected) == PER_FLOW
            created = [x["name"] for x in expected]
            assert names(await list_all(a2i, FlowDefinitionArn=flow)) == created
            for size in (1, 37, 100):
                listed = await list_all(
                    a2i, FlowDefinitionArn=flow, MaxResults=size, SortOrder="Descending"
                )
                assert names(listed) == created[::-1]
        paginator = a2i.get_paginator("list_human_loops")
        pages = [
            page
            async for page in paginator.paginate(
                FlowDefinitionArn=FLOWS[1], PaginationConfig={"PageSize": 64}
            )
        ]
        assert [len(p["HumanLoopSummaries"]) for p in pages] == [64] * 10 + [60]
        assert names([s for p in pages for s in p["HumanLoopSummaries"]]) == [
            x["name"] for x in loaded[FLOWS[1]]
        ]


async def test_creation_time_bounds_are_a_half_open_window(
    emulator: Any, loaded: dict[str, list[dict[str, Any]]]
) -> None:
    flow = FLOWS[2]
    async with client(emulator.url, A2I) as a2i:
        listed = await list_all(a2i, FlowDefinitionArn=flow)
        times = [s["CreationTime"] for s in listed]
        assert times == sorted(times)
        for low, high in ((0, 350), (100, 101), (250, 699), (699, 699)):
            after, before = times[low], times[high]
            window = await list_all(
                a2i, FlowDefinitionArn=flow, CreationTimeAfter=after, CreationTimeBefore=before,
                MaxResults=50,
            )  # fmt: skip
            expected = [s["HumanLoopName"] for s in listed if after <= s["CreationTime"] < before]
            assert names(window) == expected
            newest_first = await list_all(
                a2i, FlowDefinitionArn=flow, CreationTimeAfter=after, CreationTimeBefore=before,
                SortOrder="Descending", MaxResults=7,
            )  # fmt: skip
            assert names(newest_first) == expected[::-1]
        only_after = await list_all(a2i, FlowDefinitionArn=flow, CreationTimeAfter=times[600])
        assert names(only_after) == [
            s["HumanLoopName"] for s in listed if s["CreationTime"] >= times[600]
        ]
        # A date alone is midnight UTC; a window in the far past holds nothing.
        empty = await a2i.list_human_loops(
            FlowDefinitionArn=flow, CreationTimeBefore=datetime(2001, 1, 1)
        )
        assert empty["HumanLoopSummaries"] == [] and "NextToken" not in empty


async def test_a_next_token_continues_only_its_own_query(
    emulator: Any, loaded: dict[str, list[dict[str, Any]]]
) -> None:
    async with (
        client(emulator.url, A2I) as a2i,
        client(emulator.url, A2I, parameter_validation=False) as raw,
    ):
        first = await a2i.list_human_loops(FlowDefinitionArn=FLOWS[0], MaxResults=10)
        token = first["NextToken"]
        middle = first["HumanLoopSummaries"][5]["CreationTime"]
        # The same query may change its page size.
        more = await a2i.list_human_loops(FlowDefinitionArn=FLOWS[0], MaxResults=3, NextToken=token)
        assert names(more["HumanLoopSummaries"]) == [x["name"] for x in loaded[FLOWS[0]][10:13]]
        for other in (
            {"FlowDefinitionArn": FLOWS[1]},
            {"FlowDefinitionArn": FLOWS[0], "SortOrder": "Descending"},
            {"FlowDefinitionArn": FLOWS[0], "CreationTimeAfter": middle},
            {"FlowDefinitionArn": FLOWS[0], "CreationTimeBefore": middle},
        ):
            with pytest.raises(a2i.exceptions.ValidationException) as caught:
                await a2i.list_human_loops(NextToken=token, **other)
            assert "NextToken" in caught.value.response["Error"]["Message"]
        with pytest.raises(raw.exceptions.ValidationException):
            await raw.list_human_loops(FlowDefinitionArn=FLOWS[0], NextToken="x" * 4000)


@pytest.mark.parametrize("emulator", [{"complete_after": 0.0}], indirect=True)
async def test_pages_stay_right_while_loops_come_and_go(
    emulator: Any, loaded: dict[str, list[dict[str, Any]]]
) -> None:
    flow = FLOWS[0]
    original = [x["name"] for x in loaded[flow]]
    seen: list[str] = []
    deleted: set[str] = set()
    deleted_unlisted: set[str] = set()
    added: list[str] = []
    async with client(emulator.url, A2I, max_pool_connections=16) as a2i:
        token = None
        page_number = 0
        while True:
            kwargs: dict[str, Any] = {"FlowDefinitionArn": flow, "MaxResults": 50}
            if token:
                kwargs["NextToken"] = token
            page = await a2i.list_human_loops(**kwargs)
            seen += names(page["HumanLoopSummaries"])
            token = page.get("NextToken")
            if not token:
                break
            page_number += 1
            # Between pages: delete two loops already listed and two not yet listed, and
            # start two more on this flow definition (and one on another).
            position = len(seen)
            doomed = [original[position - 1], original[position - 20]]
            doomed += [n for n in original[position + 3 : position + 5]]
            for name in doomed:
                if name not in deleted:
                    await a2i.delete_human_loop(HumanLoopName=name)
                    deleted.add(name)
                    if name not in seen:
                        deleted_unlisted.add(name)
            fresh = [f"new-{page_number}-{k}" for k in range(2)]
            await start_many(a2i, [(n, flow) for n in fresh] + [(f"x-{page_number}", FLOWS[1])])
            added += fresh

    assert len(seen) == len(set(seen)), "no loop twice"
    assert set(seen) <= set(original) | set(added)
    # Every loop never deleted is listed; a loop deleted before its page came is not.
    listed_at = {name: i for i, name in enumerate(seen)}
    for name in original:
        if name not in deleted:
            assert name in listed_at
    assert deleted_unlisted and not deleted_unlisted & set(seen)
    # Loops started during the listing come after every older one, oldest first.
    assert [n for n in seen if n.startswith("new-")] == added
    assert seen[: len(seen) - len(added)] == [n for n in seen if not n.startswith("new-")]
