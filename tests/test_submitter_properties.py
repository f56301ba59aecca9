"""Properties of the Submitter under random interleavings (Hypothesis), against the emulator in
a child process: whatever the order, timing and cancellation of callers asking for the same
ids, and wherever the service restarts, every id gets exactly one loop and one send."""

from __future__ import annotations

import itertools
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a2ibatch import Item, Outcome, Status, Submitter, TaskType
from a2ibatch.emulator import EmulatorConfig, run_subprocess
from helpers import emulator_get, ledger_records
from test_submitter import item_for, submitter_settings

EXAMPLES = itertools.count()
Call = tuple[int, float, float | None]

#: one caller: (which id, how long it waits before asking, when it is cancelled or never)
CALLS = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.sampled_from([0.0, 0.001, 0.005]),
        st.sampled_from([None, None, 0.0, 0.003, 0.02]),
    ),
    min_size=1,
    max_size=30,
)


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    config = EmulatorConfig(processing_ms=4, processing_jitter_ms=4, s3=False, seed=3)
    with run_subprocess(config) as url:
        yield url


def example_item(example: int, i: int) -> Item:
    """Item `i` of one example: content of its own, so that no two examples share an input."""
    return Item(id=f"item-{i}", input_content=f'{{"example": {example}, "i": {i}}}')


async def run_phase(
    submitter: Submitter, example: int, calls: list[Call], seen: dict[str, set[str]]
) -> None:
    async def one(i: int, delay: float, cancel_after: float | None) -> None:
        await anyio.sleep(delay)
        with anyio.move_on_after(float("inf") if cancel_after is None else cancel_after):
            outcome: Outcome = await submitter.submit(example_item(example, i))
            assert outcome.status is Status.STARTED and outcome.human_loop_arn
            seen[outcome.id or ""].add(outcome.human_loop_arn)

    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(one, *call)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    calls=CALLS,
    restart_at=st.integers(0, 30),
    concurrency=st.sampled_from([1, 2, 8]),
    recent=st.sampled_from([0, 4]),
)
def test_any_interleaving_of_duplicate_ids_gives_one_loop_per_id(
    emulator_url: str,
    calls: list[Call],
    restart_at: int,
    concurrency: int,
    recent: int,
) -> None:
    n = next(EXAMPLES)  # examples share the emulator: each has inputs of its own
    ids = {i for i, _, _ in calls}
    last: list[Call] = [(i, 0.0, None) for i in ids]  # then every id once more, uncancelled

    async def example(folder: Path) -> None:
        s = submitter_settings(TaskType.CUSTOM, emulator_url, folder, concurrency=concurrency)
        before = await emulator_get(emulator_url, "/_emulator/stats")
        seen: dict[str, set[str]] = defaultdict(set)
        for phase in (calls[:restart_at], calls[restart_at:], last):  # two restarts
            async with Submitter(s, recent=recent) as submitter:
                await run_phase(submitter, n, phase, seen)
        after = await emulator_get(emulator_url, "/_emulator/stats")
        assert after["loops_created"] - before["loops_created"] == len(ids)
        assert after["inputs_with_multiple_loops"] == before["inputs_with_multiple_loops"] == 0
        assert all(len(arns) == 1 for arns in seen.values())  # every caller, the same loop
        records = ledger_records(folder / "ledger.jsonl")
        intents = Counter(r["id"] for r in records if r["event"] == "intent")
        assert len(intents) == len(ids) and set(intents.values()) == {1}  # one send per id
        started = Counter(r["id"] for r in records if r.get("status") == "started")
        assert set(started.values()) == {1}

    with tempfile.TemporaryDirectory() as folder:
        anyio.run(example, Path(folder), backend="asyncio")


def test_the_loop_name_alone_rebuilds_the_arn_the_service_gave(
    emulator_url: str, tmp_path: Path
) -> None:
    async def main() -> dict[str, Any]:
        s = submitter_settings(TaskType.CUSTOM, emulator_url, tmp_path, name_prefix="arn")
        async with Submitter(s) as submitter:
            sent = await submitter.submit(item_for(TaskType.CUSTOM, 1))
        async with Submitter(s) as submitter:
            rebuilt = await submitter.submit(item_for(TaskType.CUSTOM, 1))
        loops = await emulator_get(emulator_url, "/_emulator/loops")
        return {"sent": sent, "rebuilt": rebuilt, "loops": loops}

    found = anyio.run(main, backend="asyncio")
    arns = {loop["arn"] for loop in found["loops"] if loop["name"] == found["sent"].loop_name}
    assert arns == {found["sent"].human_loop_arn} == {found["rebuilt"].human_loop_arn}
