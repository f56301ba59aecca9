"""What a ledger says, as the one reader builds it: the index and its parts.

`LedgerIndex` holds the job's identity, each id's state in an `IdTable` (table values: the
state's code + 1, 0 for "an intent, no outcome yet", the `PENDING` bit for a pending
intent, and in `REGION_BITS` the region its last intent was sent to: 1 + its place in
`regions`, 0 when unknown), the flow definition of each region its runs named, and, when
asked, the job's loops (`LoopState`), the intents' loop names and the rows of chosen states
(`Row`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from .._errors import LedgerError
from .._idtable import HASH, MASK64, IdTable
from .._models import Status, TaskType
from .._regions import arn_region
from ._format import JobHeader

STATUSES: Final[tuple[Status, ...]] = tuple(Status)
#: table value of each status: its code + 1 (0: an intent, no outcome yet)
STATE_VALUES: Final[dict[str, int]] = {s.value: i + 1 for i, s in enumerate(STATUSES)}
PENDING: Final = 0x100
#: done in a ledger read before the current one (a location's): later ledgers leave it be
FINAL: Final = 0x200
STATE_MASK: Final = 0xFF
#: the region an id's last intent went to (1 + its place in `LedgerIndex.regions`; 0: not
#: recorded, i.e. the first job record's only flow, for a ledger of one flow)
REGION_SHIFT: Final = 16
REGION_BITS: Final = 0xFF << REGION_SHIFT
#: a table value without its region
NOT_REGION: Final = 0xFFFFFFFF & ~REGION_BITS
MAX_REGIONS: Final = 0xFF
INVALID_VALUE: Final = STATE_VALUES[Status.INVALID.value]
UNVERIFIED_VALUE: Final = STATE_VALUES[Status.UNVERIFIED.value]
STARTED: Final = Status.STARTED.value
#: statuses after which a loop never changes again ("Deleted": the service no longer has it)
FINAL_STATUSES: Final = frozenset({"Completed", "Failed", "Stopped", "Deleted"})


@dataclass(slots=True)
class LoopState:
    """One human loop the ledger names, with what was last recorded about it."""

    id: str
    loop_name: str
    human_loop_arn: str | None
    status: str | None = None  # the last loop_status record's; None: never tracked
    output_s3_uri: str | None = None
    creation_time: str | None = None  # as the service reported it (ISO-8601)
    started_at: str = ""  # the started outcome's time (just after the loop's creation)
    deleted_by_us: bool = False  # a delete action of ours removed it
    #: the region of its flow definition (None: not recorded, the ledger's one flow's)
    region: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class Row:
    """One item of a chosen state, for listing: never its content."""

    id: str | None
    line: int | None
    status: str
    code: str | None
    reason: str | None
    loop_name: str | None = None


@dataclass
class LedgerIndex:
    """What a ledger says, as `read_ledger` found it."""

    path: str
    header: JobHeader | None = None  # the first job record: the job's identity
    started_at: str = ""  # the first job record's time
    table: IdTable = field(default_factory=IdTable)
    records: int = 0  # records read (blank lines and a cut tail excluded)
    runs: int = 0  # job records: how many runs wrote to the ledger
    repaired_bytes: int = 0  # bytes of torn tail cut off while reading
    invalid_lines: int = 0  # invalid outcomes of the last run (lines, with or without an id)
    #: of the last file read: its complete lines read, and the offset just after them
    lines: int = 0
    read_to: int = 0
    #: (first, last) record time of each run, in order
    run_spans: list[tuple[str, str]] = field(default_factory=list)
    loops: dict[str, LoopState] = field(default_factory=dict)  # by loop name, if asked
    intents: set[str] = field(default_factory=set)  # intents' loop names, if asked
    rows: list[Row] = field(default_factory=list)  # of the selected states, if asked
    #: the ids' hash: the process's `hash` (fast), or a keyed digest that is the same in
    #: every process (`keyed_hash`), for an index saved in a resume point and loaded again
    hash: Callable[[str], int] = HASH
    hash_key: bytes | None = None  # the key of a keyed `hash`
    #: region -> the flow definition the job records name there (one per region)
    flows: dict[str, str] = field(default_factory=dict)
    #: the regions of the table's region codes (code = place + 1)
    regions: list[str] = field(default_factory=list)
    #: the flow definitions of the last job record read (where a later read carries on)
    run_flows: tuple[str, ...] = ()

    def region_code(self, region: str) -> int:
        """`region`'s code in the table (given on first sight; 0 past `MAX_REGIONS`)."""
        try:
            return self.regions.index(region) + 1
        except ValueError:
            if len(self.regions) >= MAX_REGIONS:
                return 0
            self.regions.append(region)
            return len(self.regions)

    def note_flows(self, arns: Sequence[str]) -> None:
        """A job record named these flow definitions."""
        for arn in arns:
            region = arn_region(arn)
            self.flows.setdefault(region, arn)
            self.region_code(region)
        self.run_flows = tuple(arns)

    @property
    def default_region(self) -> str | None:
        """The region of an id whose table value has none: the first job record's flow's,
        when it named one (a ledger of one flow writes no regions)."""
        header = self.header
        if header is None or len(header.flow_definition_arns) != 1:
            return None
        return arn_region(header.flow_definition_arns[0])

    def region_of(self, item_id: str) -> str | None:
        """The region `item_id`'s last intent was sent to (None: no intent, or unknown)."""
        value = self.table.get(self.key_of(item_id), -1)
        if value < 0:
            return None
        code = (value & REGION_BITS) >> REGION_SHIFT
        return self.regions[code - 1] if code else self.default_region

    def key_of(self, item_id: str) -> int:
        """`item_id`'s key in `table`."""
        return (self.hash(item_id) & MASK64) or 1

    def note_outcome(self, item_id: str, status: Status) -> None:
        """Update `item_id`'s state as the reader does for an outcome record: an invalid
        outcome never undoes its id's real state; an unverified one leaves it pending."""
        table = self.table
        key = self.key_of(item_id)
        old = table.get(key, 0)
        code = STATE_VALUES[status.value]
        if code == INVALID_VALUE:
            if not old & STATE_MASK:
                table.set(key, old | code)
            return
        pending = PENDING if code == UNVERIFIED_VALUE else 0
        table.set(key, (old & ~(STATE_MASK | PENDING)) | code | pending)

    def note_pending(self, item_id: str) -> None:
        """`item_id` has an intent with no outcome since (a rerun checks it first)."""
        key = self.key_of(item_id)
        self.table.set(key, self.table.get(key, 0) | PENDING)

    def copy(self) -> LedgerIndex:
        """An independent copy of the identity, counts and table (not loops nor rows)."""
        return replace(
            self,
            table=self.table.copy(),
            flows=dict(self.flows),
            regions=list(self.regions),
            run_spans=list(self.run_spans),
            loops={},
            intents=set(),
            rows=[],
        )

    def state(self, item_id: str) -> Status | None:
        """The status of `item_id`'s last outcome; None when it has none."""
        code = self.table.get(self.key_of(item_id), 0) & STATE_MASK
        return STATUSES[code - 1] if code else None

    def lookup(self, item_id: str) -> tuple[Status | None, bool]:
        """(the state of `item_id`, whether it has a pending intent), in one probe."""
        value = self.table.get(self.key_of(item_id), 0)
        code = value & STATE_MASK
        return (STATUSES[code - 1] if code else None), bool(value & PENDING)

    def has_pending_intent(self, item_id: str) -> bool:
        """Whether a call for `item_id` may have reached the service with no outcome since."""
        return bool(self.table.get(self.key_of(item_id), 0) & PENDING)

    @property
    def pending(self) -> int:
        """How many ids have a pending intent."""
        return sum(1 for value in self.table.items_values() if value & PENDING)

    @property
    def counts(self) -> dict[Status, int]:
        """Ids by their last state (every status present, zero when unused)."""
        by_code = Counter(value & STATE_MASK for value in self.table.items_values())
        return {status: by_code.get(i + 1, 0) for i, status in enumerate(STATUSES)}

    def check_compatible(
        self,
        task: TaskType | str,
        flow_definition_arn: str | Sequence[str],
        name_prefix: str,
    ) -> None:
        """Refuse (LedgerError) to resume a ledger that was written for another job.

        The task type and name prefix must be the ledger's, and a region's flow definition
        the one the ledger's job records name for it (its items' loop names derive from it):
        a run may add the flow of a region the ledger does not know, or leave one out.
        """
        header = self.header
        if header is None:
            return
        arns = (
            (flow_definition_arn,)
            if isinstance(flow_definition_arn, str)
            else tuple(flow_definition_arn)
        )
        differences = [
            f"its {name} is {found!r}, this run's is {wanted!r}"
            for name, found, wanted in (
                ("task", header.task.value, TaskType(task).value),
                ("name prefix", header.name_prefix, name_prefix),
            )
            if found != wanted
        ]
        known = self.flows or header.flows
        for arn in arns:
            region = arn_region(arn)
            old = known.get(region)
            if old is None or old == arn:
                continue
            if len(known) == 1 and len(arns) == 1:
                differences.insert(1, f"its flow definition is {old!r}, this run's is {arn!r}")
            else:
                differences.append(
                    f"its flow definition of region {region} is {old!r}, this run's is {arn!r}"
                )
        if differences:
            raise LedgerError(
                f"ledger {self.path} was written for another job: "
                + "; ".join(differences)
                + ". Loop names depend on these, so the job cannot be resumed with other "
                "values: use the ledger's values, or a new ledger file for a new job"
            )

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self.key_of(item_id) in self.table

    def __len__(self) -> int:
        return len(self.table)

    def done_values(self) -> frozenset[int]:
        """The table values (state codes) of the done states."""
        return frozenset(STATE_VALUES[s.value] for s in STATUSES if s.done)

    def settle(self) -> None:
        """Mark every id done so far as final, before another ledger of the job is read."""
        done = {STATE_VALUES[s.value] for s in STATUSES if s.done}
        values, keys = self.table.values, self.table.keys
        for slot, value in enumerate(values):
            if keys[slot] and value & STATE_MASK in done:
                values[slot] = value | FINAL

    def region_counts(self) -> dict[str, dict[str, int]]:
        """Ids by the region their last intent went to, then by state ("pending": an
        intent, no outcome yet); ids never sent are left out."""
        found: Counter[tuple[int, int]] = Counter(
            ((value & REGION_BITS) >> REGION_SHIFT, value & STATE_MASK)
            for value in self.table.items_values()
            if value & REGION_BITS or value & PENDING
        )
        counts: dict[str, dict[str, int]] = {}
        for (code, state), n in sorted(found.items()):
            region = self.regions[code - 1] if code else self.default_region or "unknown"
            name = STATUSES[state - 1].value if state else "pending"
            per = counts.setdefault(region, {})
            per[name] = per.get(name, 0) + n
        return counts

    def loop_counts(self) -> dict[str, int]:
        """The job's loops by last recorded status ("Untracked" when none was recorded)."""
        return dict(Counter(loop.status or "Untracked" for loop in self.loops.values()))
