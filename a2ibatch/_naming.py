"""Human loop names: deterministic by default, always valid.

A2I names are 1-63 characters matching ``^[a-z0-9](-*[a-z0-9])*$`` and unique per account
and region, and a finished loop keeps its name.  A name derived from the job (prefix, flow
definition, task type) and the item (id and payload) is therefore an idempotency key: the same
manifest always yields the same names, so a rerun or a retry can never start a second loop
for an item.  A deliberate second review of the same items takes a new prefix.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from typing import Any

from ._errors import ConfigError
from ._idtable import IdTable, digest

NAME_PATTERN = re.compile(r"^[a-z0-9](-*[a-z0-9])*$")
MAX_NAME_LENGTH = 63
#: 128-bit digest in lowercase hex: 32 characters of 0-9 and a-f
DIGEST_LENGTH = 32
MAX_PREFIX_LENGTH = MAX_NAME_LENGTH - DIGEST_LENGTH - 1
DEFAULT_PREFIX = "a2ib"


def name_problem(name: object) -> str | None:
    """Why `name` is not a valid human loop name, or None when it is."""
    if not isinstance(name, str):
        return "loop name must be a string"
    if not name:
        return "loop name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"loop name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
    if not NAME_PATTERN.fullmatch(name):
        return (
            "loop name may hold only a-z, 0-9 and '-', and must start and end with "
            "a letter or digit"
        )
    return None


def check_prefix(prefix: str) -> str:
    """Return `prefix` if it can start generated names, else raise ConfigError."""
    if not prefix or len(prefix) > MAX_PREFIX_LENGTH or not NAME_PATTERN.fullmatch(prefix):
        raise ConfigError(
            f"name prefix must be 1-{MAX_PREFIX_LENGTH} characters of a-z, 0-9 and '-', "
            "starting and ending with a letter or digit"
        )
    return prefix


def _part(h: Any, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)


def job_hasher(flow_definition_arn: str, task: str) -> Any:
    """The digest state of a job's constant parts, copied for each item."""
    h = hashlib.blake2b(digest_size=DIGEST_LENGTH // 2)
    _part(h, flow_definition_arn)
    _part(h, task)
    return h


def loop_name(prefix: str, flow_definition_arn: str, task: str, item_id: str, payload: str) -> str:
    """The deterministic loop name for one item of one job.

    `payload` is the canonical text of what the item sends for review (see
    `_tasks.TaskAdapter.payload_key`).  Each part is length-prefixed, so no two different
    tuples of parts feed the digest the same bytes.
    """
    return _item_name(prefix, job_hasher(flow_definition_arn, task), item_id, payload)


#: the 8-byte lengths `_part` writes, ready made for the usual short ids and payloads
_LENGTHS = tuple(n.to_bytes(8, "big") for n in range(1024))


def _item_name(prefix: str, job: Any, item_id: str, payload: str) -> str:
    """`loop_name` from the job's digest state: the same bytes in one update.

    A dry run names every manifest line, so this is kept lean: text is encoded strictly,
    which is quicker and gives the same bytes unless it holds a lone surrogate, and lengths
    below 1024 come from `_LENGTHS` rather than ``int.to_bytes`` (the same bytes).
    """
    try:
        a = item_id.encode()
        b = payload.encode()
    except UnicodeEncodeError:  # a lone surrogate, encoded as `_part` encodes it
        a = item_id.encode("utf-8", "surrogatepass")
        b = payload.encode("utf-8", "surrogatepass")
    na, nb = len(a), len(b)
    h = job.copy()
    h.update(
        b"".join(
            (
                _LENGTHS[na] if na < 1024 else na.to_bytes(8, "big"),
                a,
                _LENGTHS[nb] if nb < 1024 else nb.to_bytes(8, "big"),
                b,
            )
        )
    )
    return f"{prefix}-{h.hexdigest()}"


def looks_generated(name: str, prefix: str) -> bool:
    """Whether `name` has the shape of a name this prefix generates.

    Explicit names of that shape are refused, so that an explicit name can never collide
    with another item's generated one.
    """
    return (
        len(name) == len(prefix) + 1 + DIGEST_LENGTH
        and name.startswith(prefix + "-")
        and all(c in "0123456789abcdef" for c in name[len(prefix) + 1 :])
    )


class Namer:
    """Names the items of one job, and refuses explicit names that could collide.

    Generated names of distinct ids never collide (128-bit digests; duplicate ids are
    refused by the manifest reader), so only explicit names need remembering: one that
    repeats an earlier one, or that has the shape of a generated name, is refused before
    anything is sent.  The namers of one job's flows (one per region) share `explicit`, so
    that an explicit name is one loop's in the whole job.
    """

    def __init__(
        self, prefix: str, flow_definition_arn: str, task: str, explicit: IdTable | None = None
    ) -> None:
        self.prefix = check_prefix(prefix)
        self._job = job_hasher(flow_definition_arn, task)
        #: digests of the explicit names seen (an `IdTable`: 19 to 38 bytes a name, where a
        #: set of the names took over 100; a digest collision, about 3 in 10^8 per million
        #: names, refuses a name as used, never lets one through twice)
        self._explicit = IdTable() if explicit is None else explicit
        #: ``generated(item_id, payload)``: the name `name` gives an item without an explicit
        #: one, in a single call (a dry run names a million items)
        self.generated: Callable[[str, str], str] = functools.partial(
            _item_name, self.prefix, self._job
        )

    def name(self, item_id: str, explicit: str | None, payload: str) -> tuple[str, str | None]:
        """(loop name, None) or (name, reason it cannot be used)."""
        if explicit is None:
            return _item_name(self.prefix, self._job, item_id, payload), None
        problem = name_problem(explicit)
        if problem is not None:
            return explicit, problem
        if looks_generated(explicit, self.prefix):
            return explicit, (
                f"explicit loop name has the shape of names generated with prefix "
                f"{self.prefix!r} and could collide with another item's; choose another name"
            )
        key = digest(explicit)
        if key in self._explicit:
            return explicit, "explicit loop name is used by an earlier line of the manifest"
        self._explicit.set(key, 1)
        return explicit, None
