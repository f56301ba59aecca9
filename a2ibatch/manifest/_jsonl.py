"""JSON Lines manifests: one object per line, checked in batches with the duplicate-id table
probed inline."""

from __future__ import annotations

import orjson

from .._idtable import HASH, MASK64, IdTable
from .._models import Invalid, Item, TaskType
from ._rules import CHECKS, MAX_ID_CHARS, id_problem, kind, unparsable


class JsonlParser:
    """Checks batches of JSON Lines: one entry per non-blank line."""

    def __init__(self, task: TaskType) -> None:
        self._check = CHECKS[task]
        self._ids = IdTable()

    def expect(self, lines: int) -> None:
        """Prepare for a manifest of about `lines` lines."""
        self._ids.reserve(lines - self._ids.used)

    def feed(self, lines: list[bytes], first: int, final: bool) -> list[Item | Invalid]:
        """Entries for `lines`, the first of which is line number `first`."""
        # The hot loop: everything that runs per line is inline, and nothing raises on the
        # happy path.  The duplicate-id table's probe is inlined here.
        out: list[Item | Invalid] = []
        append = out.append
        loads = orjson.loads
        check = self._check
        ids = self._ids
        ids.reserve(len(lines))
        slots, firsts, mask = ids.keys, ids.values, ids.mask
        hash_ = HASH
        used = ids.used
        lineno = first - 1
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
