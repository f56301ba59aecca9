"""A compact table from item ids to small numbers, for millions of ids in little memory.

Three parts of a job remember something per id: the manifest reader (the first line of each
id, to refuse a repeated one), the ledger index (each id's state) and the planner of items a
library caller hands over (ids seen so far).  A dict keyed by the id strings costs over 150
bytes per id; a dict of 64-bit digests about 100.  This table keeps a 64-bit digest and a
32-bit value per slot in two flat arrays, open addressing with linear probing, at most 5/8
full: 12 bytes a slot, so 19 to 38 bytes an id (the table is 5/16 to 5/8 full between two
growths), never a Python object per id.

The digest is the id's `hash` (a 64-bit SipHash on 64-bit builds, keyed per process): ids
cannot be chosen to collide, and the chance that two of ten million ids share a digest is
about 3 in a million per process; a rerun draws a new key, so a collision never repeats.
Builds with a narrower `hash` use a 64-bit BLAKE2b digest.  Digests are never written
anywhere: they mean nothing in another process.

Hot loops (the manifest parser, the ledger reader) inline `probe` for speed; they use the
attributes `keys`, `values` and `mask` directly and call `reserve` first.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Callable, Iterator

MASK64 = (1 << 64) - 1


def _blake2b(item_id: str) -> int:
    digest = hashlib.blake2b(item_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


#: an id's digest before masking (0 is mapped to 1 by `digest`: 0 marks a free slot); hot
#: loops inline `digest` as ``(HASH(item_id) & MASK64) or 1``
HASH: Callable[[str], int] = hash if sys.hash_info.width >= 64 else _blake2b


def keyed_hash(key: bytes) -> Callable[[str], int]:
    """A 64-bit BLAKE2b digest keyed with `key`: stable across processes (a table built
    with it can be saved and loaded), unpredictable without the key (ids cannot be chosen
    to collide).  About ten times the cost of `hash`: used where a table outlives its
    process (a ledger's resume point), never in the manifest reader's common path."""
    blake2b = hashlib.blake2b
    from_bytes = int.from_bytes

    def keyed(item_id: str) -> int:
        data = item_id.encode("utf-8", "surrogatepass")
        return from_bytes(blake2b(data, digest_size=8, key=key).digest(), "little")

    return keyed


def digest(item_id: str) -> int:
    """The table key of `item_id`: a non-zero 64-bit number."""
    return (HASH(item_id) & MASK64) or 1


class IdTable:
    """id digest -> unsigned 32-bit value.  Values are what the owner makes them."""

    __slots__ = ("keys", "limit", "mask", "used", "values")

    def __init__(self, expected: int = 0) -> None:
        self.keys = array("Q", [0]) * 1024
        self.values = array("I", [0]) * 1024
        self.mask = 1023
        self.used = 0
        self.limit = 640
        if expected:
            self.reserve(expected)

    def __len__(self) -> int:
        return self.used

    @property
    def nbytes(self) -> int:
        """Bytes held by the two arrays (what the table costs in memory)."""
        return len(self.keys) * self.keys.itemsize + len(self.values) * self.values.itemsize

    def reserve(self, more: int) -> None:
        """Make room for `more` new ids without growing again (growing is a pass in Python)."""
        if self.used + more <= self.limit:
            return
        size = self.mask + 1
        while self.used + more > size * 5 // 8:
            size *= 2
        old_keys, old_values = self.keys, self.values
        mask = size - 1
        keys = array("Q", [0]) * size
        values = array("I", [0]) * size
        for key, value in zip(old_keys, old_values, strict=True):
            if key:
                slot = key & mask
                while keys[slot]:
                    slot = (slot + 1) & mask
                keys[slot] = key
                values[slot] = value
        self.keys, self.values, self.mask, self.limit = keys, values, mask, size * 5 // 8

    def probe(self, key: int) -> int:
        """The slot of `key`: where it is, or the free slot where it would go."""
        keys, mask = self.keys, self.mask
        slot = key & mask
        while True:
            seen = keys[slot]
            if seen == 0 or seen == key:
                return slot
            slot = (slot + 1) & mask

    def get(self, key: int, default: int = -1) -> int:
        slot = self.probe(key)
        return self.values[slot] if self.keys[slot] else default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self.keys[self.probe(key)] != 0

    def set(self, key: int, value: int) -> None:
        self.reserve(1)
        slot = self.probe(key)
        if not self.keys[slot]:
            self.keys[slot] = key
            self.used += 1
        self.values[slot] = value

    def setdefault(self, key: int, value: int) -> int:
        """The value of `key`, after setting it to `value` if it had none."""
        self.reserve(1)
        slot = self.probe(key)
        if self.keys[slot]:
            return self.values[slot]
        self.keys[slot] = key
        self.values[slot] = value
        self.used += 1
        return value

    def copy(self) -> IdTable:
        """An independent table with the same contents."""
        other = IdTable()
        other.keys, other.values = array("Q", self.keys), array("I", self.values)
        other.mask, other.used, other.limit = self.mask, self.used, self.limit
        return other

    def items_values(self) -> Iterator[int]:
        """Every stored value (one per id), in no particular order."""
        for key, value in zip(self.keys, self.values, strict=True):
            if key:
                yield value
