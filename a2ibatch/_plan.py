"""The one rule that decides what happens to an entry: invalid, skipped, or sent (and how).

`Planner.decide` takes a manifest entry (or an item a library caller handed over) and the
ledger's state of its id, and answers:

* an `Invalid`: the entry cannot be sent (a bad line, a repeated id, an unusable name);
* `Skip.DONE`: the ledger has the item started or not activated;
* `Skip.FAILED`: it failed in an earlier run and `retry_failed` is off (unless a call of
  that run may have reached the service: then it is checked, not skipped);
* `Skip.NAME_TAKEN`: its explicit name is held by a loop the ledger could not call its own,
  unless `retry_failed`;
* `Skip.OTHER_SHARD`: the job runs as shards and the item belongs to another one;
* its loop name (a `str`): send it;
* a `Resend` (a `str` too): send it, but a call for it may already have reached the service
  (a pending intent, or an unverified outcome), so the caller checks before sending.

The runner, the dry run and the preflight scan all decide through this one function (the
latter two by `tally`), so the dry run's count and the cost estimate are exactly what
submit sends.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ._idtable import HASH, MASK64, IdTable
from ._models import Invalid, Item, Status
from ._naming import Namer
from .ledger import LedgerIndex
from .manifest import DONE, Entry


class Skip(enum.Enum):
    """Why an entry needs no call."""

    DONE = "done"
    FAILED = "failed"
    NAME_TAKEN = "name_taken"
    OTHER_SHARD = "other_shard"  # another shard of the job sends it


def shard_of(item_id: str, shards: int) -> int:
    """The shard an item belongs to: the same on every machine and Python version (a
    64-bit BLAKE2b digest of the id's UTF-8 bytes, modulo the number of shards)."""
    data = item_id.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") % shards


class Resend(str):
    """A loop name to send under, where a call may already have reached the service."""

    __slots__ = ()


Decision = str | Resend | Skip | Invalid


class Planner:
    """Decides each entry of one job.  `unique` refuses a repeated id (for sources that
    the manifest reader, which refuses them itself, did not read)."""

    def __init__(
        self,
        namer: Namer,
        index: LedgerIndex | None,
        payload_key: Callable[[Item], str],
        *,
        retry_failed: bool = False,
        unique: bool = False,
        shards: int = 1,
        shard_index: int = 0,
        recovered_names: frozenset[str] = frozenset(),
    ) -> None:
        self.namer = namer
        self.index = index
        self.payload_key = payload_key
        self.retry_failed = retry_failed
        self._resuming = index is not None and len(index) > 0
        self._seen: IdTable | None = IdTable() if unique else None
        self._shards = shards
        self._shard = shard_index
        #: loop names found to exist after a lost container: checked before sending
        self.recovered_names = recovered_names

    def decide(self, entry: Entry) -> Decision:
        if type(entry) is not Item:
            if entry is DONE:
                return Skip.DONE  # the reader found the id done in the ledger
            assert isinstance(entry, Invalid)
            return entry
        item_id = entry.id
        if self._shards > 1 and shard_of(item_id, self._shards) != self._shard:
            return Skip.OTHER_SHARD
        if self._seen is not None:
            key = (HASH(item_id) & MASK64) or 1
            first = self._seen.get(key)
            if first >= 0:
                where = f"first seen on line {first}" if first else "an earlier item has it"
                return Invalid(entry.line, f"duplicate id; {where}", item_id)
            self._seen.set(key, entry.line)
        pending = False
        if self._resuming:
            assert self.index is not None
            state, pending = self.index.lookup(item_id)
            if state is not None:
                if state.done:
                    return Skip.DONE
                if state is Status.UNVERIFIED:
                    pending = True
                elif not self.retry_failed and not pending:
                    if state is Status.FAILED:
                        return Skip.FAILED
                    if state is Status.NAME_TAKEN:
                        return Skip.NAME_TAKEN
        if entry.name is None:
            name = self.namer.generated(item_id, self.payload_key(entry))
        else:
            name, problem = self.namer.name(item_id, entry.name, self.payload_key(entry))
            if problem is not None:
                return Invalid(entry.line, problem, item_id)
        if pending or (self.recovered_names and name in self.recovered_names):
            return Resend(name)
        return name


@dataclass
class Tally:
    """What the plan decides for a whole source, counted (a dry run; preflight's scan)."""

    items: int = 0  # valid items seen
    to_send: int = 0  # items the plan sends (new, retried, or to check first)
    to_check: int = 0  # of those, items a call may already have reached (checked first)
    done: int = 0
    failed: int = 0  # skipped: failed earlier
    name_taken: int = 0  # skipped: name held by a loop of unknown owner
    other_shards: int = 0  # skipped: another shard's
    invalid: int = 0
    problems: list[Invalid] = field(default_factory=list)  # the first `max_problems`
    sample_names: list[str] = field(default_factory=list)
    buckets: set[str] = field(default_factory=set)  # of the items to send
    #: items to send by the content classifiers they set for themselves
    classifiers: dict[tuple[str, ...], int] = field(default_factory=dict)


async def tally(
    planner: Planner,
    batches: AsyncIterator[list[Entry]],
    *,
    max_problems: int = 0,
    samples: int = 0,
    details: bool = False,
) -> Tally:
    """Decide every entry of `batches` and count the decisions; send nothing.

    With `details`, the buckets and own content classifiers of the items to send are
    collected too (what preflight checks).  The per-entry work is kept to the decision:
    a dry run of a million lines is measured against ``json.loads`` over the same file.
    """
    result = Tally()
    problems = result.problems
    names = result.sample_names
    decide = planner.decide
    sent = checked = skipped_done = skipped_failed = skipped_taken = invalid = others = 0
    for_items: list[Item] = []
    async for batch in batches:
        for entry in batch:
            decision = decide(entry)
            kind = type(decision)
            if kind is str or kind is Resend:
                sent += 1
                if kind is Resend:
                    checked += 1
                if len(names) < samples:
                    names.append(str(decision))
                if details:
                    for_items.append(entry)  # type: ignore[arg-type]
            elif decision is Skip.DONE:
                skipped_done += 1
            elif decision is Skip.FAILED:
                skipped_failed += 1
            elif decision is Skip.NAME_TAKEN:
                skipped_taken += 1
            elif decision is Skip.OTHER_SHARD:
                others += 1
            else:
                invalid += 1
                if len(problems) < max_problems:
                    problems.append(decision)  # type: ignore[arg-type]
        if for_items:
            _details(result, for_items)
            for_items.clear()
    result.to_send, result.to_check, result.invalid = sent, checked, invalid
    result.done, result.failed, result.name_taken = skipped_done, skipped_failed, skipped_taken
    result.other_shards = others
    result.items = sent + skipped_done + skipped_failed + skipped_taken
    return result


def _details(result: Tally, items: list[Item]) -> None:
    classifiers = result.classifiers
    for item in items:
        if item.s3 is not None:
            result.buckets.add(item.s3.bucket)
        own = item.content_classifiers
        if own is not None:
            classifiers[own] = classifiers.get(own, 0) + 1
