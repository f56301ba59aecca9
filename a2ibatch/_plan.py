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
* an `Invalid` too when the item's region has no flow definition in the job (a job of
  several flows, see `_routes`), or when a call for it may have reached another region
  than the one it would be sent to now (it is checked and resent only where it went);
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
from ._models import Invalid, Item, Status, TaskType
from ._naming import Namer
from ._regions import arn_region
from ._routes import Routes
from ._settings import SubmitSettings
from ._tasks import adapter_for
from ._text import printable
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
    the manifest reader, which refuses them itself, did not read).

    A job of one flow has `namer` (its flow's) and `region` (that flow's; a custom item
    naming another is refused).  A job of several has `routes` and a namer per region in
    `namers`, all sharing their explicit names.
    """

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
        region: str | None = None,
        custom: bool = False,
        routes: Routes | None = None,
        namers: dict[str, Namer] | None = None,
    ) -> None:
        self.namer = namer
        self.routes = routes
        self.namers = namers or {}
        self.region = region
        #: a custom job of one flow: the region a line's own `region` must name
        self._custom_region = region if custom and routes is None else None
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
        namer = self.namer
        routes = self.routes
        if routes is not None:
            region = routes.route(entry)
            routed = self.namers.get(region)  # type: ignore[arg-type]
            if routed is None:
                return Invalid(entry.line, routes.reason(region), item_id)
            namer = routed
        elif (
            self._custom_region is not None
            and entry.region is not None
            and entry.region != self._custom_region
        ):
            return Invalid(entry.line, _no_flow(entry.region, self._custom_region), item_id)
        if pending:
            elsewhere = self._sent_elsewhere(entry)
            if elsewhere is not None:
                return Invalid(entry.line, elsewhere, item_id)
        if entry.name is None:
            name = namer.generated(item_id, self.payload_key(entry))
        else:
            name, problem = namer.name(item_id, entry.name, self.payload_key(entry))
            if problem is not None:
                return Invalid(entry.line, problem, item_id)
        if pending or (self.recovered_names and name in self.recovered_names):
            return Resend(name)
        return name

    def region_of(self, item: Item) -> str | None:
        """The region `item` is sent to (a job of one flow: its flow's)."""
        if self.routes is None:
            return self.region
        region = self.routes.route(item)
        return region if isinstance(region, str) else None

    def _sent_elsewhere(self, item: Item) -> str | None:
        """Why a pending item cannot go where it would now: its call may have reached
        another region (its loop would be looked for, and started, in the wrong one)."""
        assert self.index is not None
        went = self.index.region_of(item.id)
        here = self.region_of(item)
        if went is None or here is None or went == here:
            return None
        return (
            f"a call for this item may have reached region {went}, and it would now go to "
            f"{here}: give the job region {went}'s flow definition again and route the item "
            "there, so that it is checked where it went (a second loop could start otherwise)"
        )


def job_planner(
    settings: SubmitSettings,
    index: LedgerIndex | None,
    *,
    unique: bool,
    recovered: frozenset[str] = frozenset(),
    routes: Routes | None = None,
) -> Planner:
    """The plan of a job's entries (the runner's, the dry run's and preflight's); a job of
    several flows needs its `routes`."""
    adapter = adapter_for(settings.task)
    prefix, task, arns = settings.name_prefix, settings.task.value, settings.flow_definition_arns
    explicit = IdTable()  # one job: an explicit name is one loop's, whatever its region
    namers = {region: Namer(prefix, arn, task, explicit) for region, arn in settings.flows.items()}
    if len(arns) > 1 and routes is None:
        raise ValueError("a job of several flow definitions is planned with its routes")
    return Planner(
        namers[arn_region(arns[0])],
        index,
        adapter.payload_key,
        retry_failed=settings.retry_failed,
        unique=unique,
        shards=settings.shards,
        shard_index=settings.shard_index or 0,
        recovered_names=recovered,
        region=arn_region(arns[0]) if len(arns) == 1 else None,
        custom=settings.task is TaskType.CUSTOM,
        routes=routes,
        namers=namers if len(arns) > 1 else None,
    )


def _no_flow(region: str, only: str) -> str:
    return (
        f"field 'region' names region {printable(region)}, which has no flow definition in "
        f"this job (its flow definition is in {only})"
    )


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
    #: a job of several flows: the items to send of each region (`to_send` and, with
    #: details, `buckets` and `classifiers`)
    regions: dict[str, Tally] = field(default_factory=dict)


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
    routes = planner.routes
    sent = checked = skipped_done = skipped_failed = skipped_taken = invalid = others = 0
    for_items: list[Item] = []
    async for batch in batches:
        if routes is not None:
            await routes.prepare(batch)
        for entry in batch:
            decision = decide(entry)
            kind = type(decision)
            if kind is str or kind is Resend:
                sent += 1
                if kind is Resend:
                    checked += 1
                if len(names) < samples:
                    names.append(str(decision))
                if details or routes is not None:
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
            if details:
                _details(result, for_items)
            if routes is not None:
                for item in for_items:
                    region = planner.region_of(item) or ""
                    part = result.regions.get(region) or result.regions.setdefault(region, Tally())
                    part.to_send += 1
                    if details:
                        _details(part, [item])
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
