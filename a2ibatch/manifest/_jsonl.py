"""JSON Lines manifests: one object per line, checked in batches with the duplicate-id table
probed inline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson

from .._idtable import HASH, MASK64, IdTable
from .._models import Invalid, Item, TaskType
from ._rules import CHECKS, MAX_ID_CHARS, id_problem, kind, unparsable


class Done:
    """Stands in for a line whose id the ledger has done (no item is built for it)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DONE"


#: the one `Done` entry
DONE = Done()


@dataclass(frozen=True)
class DoneIds:
    """The ledger's ids, and the table values (state codes) that mean done."""

    table: IdTable
    values: frozenset[int]
    hash: Callable[[str], int] = HASH  # the table's hash of ids


class JsonlParser:
    """Checks batches of JSON Lines: one entry per non-blank line.

    With `done` (the ledger's table of ids and the table values that mean done), a line
    whose id the ledger has done is not checked nor built: it becomes `DONE`, at the cost
    of its parse and one probe.  A rerun past a million done items reads them at that cost.
    """

    def __init__(self, task: TaskType, done: DoneIds | None = None) -> None:
        self._check = CHECKS[task]
        self._ids = IdTable()
        self._done = done

    def expect(self, lines: int) -> None:
        """Prepare for a manifest of about `lines` lines."""
        self._ids.reserve(lines - self._ids.used)

    def feed(self, lines: list[bytes], first: int, final: bool) -> list[Item | Invalid | Done]:
        """Entries for `lines`, the first of which is line number `first`."""
        # The hot loop: everything that runs per line is inline, and nothing raises on the
        # happy path.  The duplicate-id table's probe is inlined here.
        out: list[Item | Invalid | Done] = []
        append = out.append
        loads = orjson.loads
        check = self._check
        ids = self._ids
        ids.reserve(len(lines))
        slots, firsts, mask = ids.keys, ids.values, ids.mask
        hash_ = HASH
        used = ids.used
        lineno = first - 1
        done = self._done
        if done is not None:
            done_keys, done_values, done_mask = done.table.keys, done.table.values, done.table.mask
            done_codes = done.values
            done_hash = None if done.hash is hash_ else done.hash
        for raw in lines:
            lineno += 1
            try:
                obj = loads(raw)
            except orjson.JSONDecodeError as exc:
                reason = unparsable(raw, exc)
                if reason is not None:
                    append(Invalid(lineno, reason))
                continue
            if type(obj) is not dict:
                append(Invalid(lineno, f"line is {kind(obj)}, not a JSON object"))
                continue
            item_id = obj.get("id")
            if type(item_id) is not str or not 0 < len(item_id) <= MAX_ID_CHARS:
                append(Invalid(lineno, id_problem(item_id)))
                continue
            digest = (hash_(item_id) & MASK64) or 1
            slot = digest & mask
            while True:
                seen = slots[slot]
                if seen == 0:
                    slots[slot] = digest
                    firsts[slot] = lineno
                    used += 1
                    if done is not None:
                        key = digest if done_hash is None else (done_hash(item_id) & MASK64) or 1
                        at = key & done_mask
                        held = done_keys[at]
                        while held != key and held:
                            at = (at + 1) & done_mask
                            held = done_keys[at]
                        if held and done_values[at] & 0xFF in done_codes:
                            append(DONE)
                            break
                    append(check(obj, lineno, item_id))
                    break
                if seen == digest:
                    append(
                        Invalid(lineno, f"duplicate id; first seen on line {firsts[slot]}", item_id)
                    )
                    break
                slot = (slot + 1) & mask
        ids.used = used
        return out
