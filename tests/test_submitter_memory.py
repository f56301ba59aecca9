"""Memory per id of what a Submitter keeps for months: the ledger index's `IdTable`, against a
dict of id strings and a dict of 64-bit digests (docs/library.md quotes the figures of
`bytes_per_id` at 1,000,000 and 10,000,000 ids; this checks them at a smaller size)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from a2ibatch import Outcome, Status, Submitter, TaskType
from a2ibatch._idtable import IdTable, digest
from test_submitter import submitter_settings

pytestmark = pytest.mark.anyio


def ids(n: int) -> Iterator[str]:
    return (f"claim-{i:010d}" for i in range(n))


def bytes_per_id(n: int) -> dict[str, float]:
    """Bytes an id held once `n` ids are in: IdTable (its arrays; as traced), dict[str],
    dict[int] (the ids' digests), each measured with tracemalloc."""
    figures: dict[str, float] = {}
    gc.collect()
    tracemalloc.start()
    table = IdTable()
    for item_id in ids(n):
        table.set(digest(item_id), 1)
    figures["idtable_traced"] = tracemalloc.get_traced_memory()[0] / n
    tracemalloc.stop()
    figures["idtable"] = table.nbytes / n
    del table
    for kind in ("str", "int"):
        gc.collect()
        tracemalloc.start()
        held: dict[Any, int] = {}
        for item_id in ids(n):
            held[item_id if kind == "str" else digest(item_id)] = 1
        figures[f"dict_{kind}"] = tracemalloc.get_traced_memory()[0] / n
        tracemalloc.stop()
        del held
    return figures


def test_the_index_costs_a_fraction_of_a_dict() -> None:
    figures = bytes_per_id(50_000)
    # 12 bytes a slot, at most 5/8 of the slots used: 19.2 to 38.4 bytes an id
    assert 19.2 <= figures["idtable"] <= 38.4
    assert figures["idtable_traced"] == pytest.approx(figures["idtable"], rel=0.05)
    assert figures["dict_str"] > 3 * figures["idtable"]
    assert figures["dict_int"] > 2 * figures["idtable"]


async def test_a_submitter_grows_by_its_index_alone(emulator: Any, tmp_path: Path) -> None:
    """Outcomes decided by a long-running Submitter add index entries; the cache of recent
    outcomes stays at its size."""
    s = submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path)
    async with Submitter(s, recent=16) as submitter:
        recall = submitter._recall
        for i in range(5000):  # as if decided by sends: the index and the cache take them
            recall.note(Outcome(id=f"claim-{i}", line=0, status=Status.STARTED))
        stats = submitter.stats()
    assert stats.ledger_ids == 5000 and stats.recent == 16
    assert stats.index_bytes / stats.ledger_ids <= 38.4
