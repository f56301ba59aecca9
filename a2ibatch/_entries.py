"""What a job takes its entries from: a caller's items, or the manifest reader's batches.

A job's runner, dry run and preflight take lists of entries (`read_manifest_batches`'s
shape); a caller's items (any iterable or async iterable of `Item` and `Invalid`) are put
in that shape here, and `done_ids` is what lets the manifest reader pass over done lines.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable

import anyio
import anyio.lowlevel

from ._models import Invalid, Item
from ._settings import SubmitSettings
from .ledger import LedgerIndex
from .manifest import DoneIds, Entry

Source = AsyncIterable[Item | Invalid] | Iterable[Item | Invalid]

#: a plain iterable of items lets other tasks run after this many entries
_ITEMS_PER_CHECKPOINT = 256


async def as_async(source: Source) -> AsyncIterator[Item | Invalid]:
    """`source` as an async iterator.  A plain iterable yields to the event loop every
    `_ITEMS_PER_CHECKPOINT` entries: often enough that skipping a long run of done items
    starves nothing, seldom enough to cost nothing per item."""
    if isinstance(source, AsyncIterable):
        async for entry in source:
            yield entry
    else:
        for n, entry in enumerate(source, 1):
            yield entry
            if not n % _ITEMS_PER_CHECKPOINT:
                await anyio.lowlevel.checkpoint()


async def as_batches(source: Source) -> AsyncIterator[list[Entry]]:
    """`source`'s entries one per list, in the shape `read_manifest_batches` hands out."""
    async for entry in as_async(source):
        yield [entry]


def done_ids(settings: SubmitSettings, index: LedgerIndex | None) -> DoneIds | None:
    """What lets the manifest reader pass over the lines whose ids the ledger has done,
    without checking or building them (a rerun past a million done items); None where
    there is nothing done, or where a shard must first tell its items from other shards'
    (the plan counts those apart)."""
    if index is None or not len(index) or settings.shards > 1:
        return None
    return DoneIds(index.table, index.done_values(), index.hash)
