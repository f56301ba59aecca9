"""What a ledger says, as the one reader builds it: the index and its parts.

`LedgerIndex` holds the job's identity, each id's state in an `IdTable` (table values: the
state's code + 1, 0 for "an intent, no outcome yet", and the `PENDING` bit for a pending
intent), and, when asked, the job's loops (`LoopState`), the intents' loop names and the
rows of chosen states (`Row`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final

from .._errors import LedgerError
from .._idtable import HASH, MASK64, IdTable
from .._models import Status, TaskType
from ._format import JobHeader

STATUSES: Final[tuple[Status, ...]] = tuple(Status)
#: table value of each status: its code + 1 (0: an intent, no outcome yet)
STATE_VALUES: Final[dict[str, int]] = {s.value: i + 1 for i, s in enumerate(STATUSES)}
PENDING: Final = 0x100
#: done in a ledger read before the current one (a location's): later ledgers leave it be
FINAL: Final = 0x200
STATE_MASK: Final = 0xFF
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
        self, task: TaskType | str, flow_definition_arn: str, name_prefix: str
    ) -> None:
        """Refuse (LedgerError) to resume a ledger that was written for another job."""
        header = self.header
        if header is None:
            return
        wanted = {
            "task": TaskType(task).value,
            "flow definition": flow_definition_arn,
            "name prefix": name_prefix,
        }
        found = {
            "task": header.task.value,
            "flow definition": header.flow_definition_arn,
            "name prefix": header.name_prefix,
        }
        differences = [
            f"its {name} is {found[name]!r}, this run's is {wanted[name]!r}"
            for name in wanted
            if wanted[name] != found[name]
        ]
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

    def loop_counts(self) -> dict[str, int]:
        """The job's loops by last recorded status ("Untracked" when none was recorded)."""
        return dict(Counter(loop.status or "Untracked" for loop in self.loops.values()))
