"""How far a job's manifest is settled: the mark a resume point saves.

Entries are taken in manifest order; most are settled when taken (done earlier, another
shard's, invalid, failed earlier), an item sent is settled when its outcome is recorded
(any outcome but ``unverified``, which a rerun must check).  `Marking` keeps one byte per
entry taken since the last mark (0 while unsettled, else what a rerun would count it as),
so that finding the settled prefix is a C-speed scan, and the manifest reader's
`Boundary`s (places between lines where the file's offset and digest are known).  The mark
is the last boundary the settled prefix has passed, with the tally of the lines before it.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from ._counters import Counters
from ._models import Status
from .ledger import ManifestMark
from .manifest import Boundary

#: what a settled entry is, as a rerun would count it (a `Counters` field), by code
_NAMES: Final = (
    "",
    "skipped",
    "skipped_failed",
    "skipped_name_taken",
    "other_shards",
    "skipped_invalid",
)
SKIPPED: Final = 1
SKIPPED_FAILED: Final = 2
SKIPPED_NAME_TAKEN: Final = 3
OTHER_SHARD: Final = 4
INVALID: Final = 5
#: the code an outcome settles its entry with (0: not settled)
BY_STATUS: Final = {
    Status.STARTED: SKIPPED,
    Status.NOT_ACTIVATED: SKIPPED,
    Status.FAILED: SKIPPED_FAILED,
    Status.NAME_TAKEN: SKIPPED_NAME_TAKEN,
    Status.INVALID: INVALID,
    Status.UNVERIFIED: 0,
}


class Marking:
    """The settled prefix of one read of a manifest (`source`), for one shard."""

    def __init__(
        self,
        source: str,
        shards: int,
        shard_index: int,
        resumed: ManifestMark | None,
        counters: Counters,
        flows: tuple[str, ...] = (),
    ) -> None:
        self._source = source
        self._flows = flows
        self._counters = counters
        self._first = True
        #: the manifest line the reading started after (None: at the top)
        self.resumed_after: int | None = None
        self._shards = shards
        self._shard_index = shard_index
        self._kinds = bytearray()  # one byte per entry taken since `_base`
        self._base = 0  # the ordinal of `_kinds[0]`
        self._boundaries: deque[Boundary] = deque()
        self._mark = resumed
        self._tally: dict[str, int] = dict(resumed.tally) if resumed is not None else {}

    def boundary(self, boundary: Boundary) -> None:
        """The manifest reader passed `boundary`.  The first is where it started: after the
        resumed mark's line when it could seek there (its lines count as the mark's tally
        says), else at the top (the mark is dropped)."""
        if self._first:
            self._first = False
            resumed = self._mark
            if resumed is not None and boundary.entries == 0 and boundary.line == resumed.line:
                self.resumed_after = resumed.line
                counters = self._counters
                for name, n in resumed.tally.items():
                    setattr(counters, name, getattr(counters, name) + n)
            else:
                self._mark, self._tally = None, {}
        self._boundaries.append(boundary)

    def taken(self, code: int) -> int:
        """An entry was taken (settled with `code`, or 0 when not yet); its ordinal."""
        kinds = self._kinds
        kinds.append(code)
        return self._base + len(kinds) - 1

    def settled(self, ordinal: int, status: Status) -> None:
        """The entry `ordinal` (sent) has an outcome of `status`."""
        at = ordinal - self._base
        if at >= 0:
            self._kinds[at] = BY_STATUS[status]

    def mark(self) -> ManifestMark | None:
        """The latest mark: the last boundary before the first entry not settled."""
        kinds = self._kinds
        first_open = kinds.find(0)
        settled = self._base + (len(kinds) if first_open < 0 else first_open)
        best: Boundary | None = None
        boundaries = self._boundaries
        while boundaries and boundaries[0].entries <= settled:
            best = boundaries.popleft()
        if best is None or best.line == 0:
            return self._mark  # nothing new, or nothing at all, settled
        passed = best.entries - self._base
        done = bytes(kinds[:passed])
        tally = self._tally
        for code in range(1, len(_NAMES)):
            n = done.count(code)
            if n:
                tally[_NAMES[code]] = tally.get(_NAMES[code], 0) + n
        del kinds[:passed]
        self._base = best.entries
        self._mark = ManifestMark(
            source=self._source,
            line=best.line,
            offset=best.offset,
            verify_end=best.verify_end,
            digest=best.digest,
            shards=self._shards,
            shard_index=self._shard_index,
            tally=dict(tally),
            flows=self._flows,
        )
        return self._mark
