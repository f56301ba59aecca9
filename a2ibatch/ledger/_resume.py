"""A ledger's resume point: what a rerun needs, saved so that it need not read it all again.

A rerun past a million done items used to parse the whole ledger (two records an item) and
the whole manifest before its first new call.  A job whose ledger is one local file keeps,
next to it (``LEDGER.resume``, 0600, replaced atomically), every `RESUME_SECONDS` and when
it ends:

* the ledger's index as of an offset of the ledger: the ids' states in an `IdTable` keyed
  by `keyed_hash` (a digest that is the same in every process, keyed with a random key kept
  in the file), with the counts the summary and ``status`` show;
* the manifest's *mark* (`ManifestMark`): its lines 1 to N are settled (each done, failed,
  refused as invalid, or another shard's) by records that were durable in the ledger before
  the point was saved, and where line N + 1 starts, with the SHA-256 of the manifest's bytes
  up to there (and a little beyond: to the end of the block the mark was taken in).

A rerun loads the point only if it still describes the ledger (at least as long, and the
first and last bytes the point covered are unchanged) and its table is intact; it then
reads only the ledger's bytes after the point, and the manifest reader seeks past line N
if the manifest's bytes up to the mark are unchanged.  Anything else (no point, a damaged
or stale one, another manifest) is a full read, as without a point: the ledger stays the
one source of truth, the point only saves reading it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from array import array
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import anyio
import anyio.to_thread
import orjson

from .._idtable import IdTable, keyed_hash
from .._log import get_logger
from ._files import LedgerFile, _fsync_directory
from ._format import JobHeader
from ._index import LedgerIndex
from ._reader import read_ledger

log = get_logger()

#: a resume point lives next to its ledger, under this suffix
RESUME_SUFFIX: Final = ".resume"
#: how often a running job saves its resume point (and once when it ends)
RESUME_SECONDS: Final = 30.0
#: bytes at each end of the covered part of the ledger that a loaded point must find again
_EDGE: Final = 4096
_FORMAT: Final = 1


@dataclass(frozen=True)
class ManifestMark:
    """How far a manifest is settled: lines 1 to `line` need nothing more from any rerun of
    the same shard (``--retry-failed`` aside: a mark over failed items is not used then)."""

    source: str  # the manifest as the job was given it
    line: int  # the last settled line
    offset: int  # where line `line` + 1 starts
    verify_end: int  # the manifest's bytes [0, verify_end) ...
    digest: str  # ... have this SHA-256 (hex)
    shards: int = 1
    shard_index: int = 0
    #: the settled lines by what a rerun would count them as (`Counters` field names)
    tally: Mapping[str, int] = field(default_factory=dict)
    #: the flow definitions of the run that took the mark (empty: the ledger's first job
    #: record's); under others, lines it counts as invalid ("no flow definition for region")
    #: may be sendable, so a run of other flows reads the whole manifest
    flows: tuple[str, ...] = ()

    @property
    def has_failures(self) -> bool:
        return bool(self.tally.get("skipped_failed") or self.tally.get("skipped_name_taken"))


def resume_path(ledger: str) -> str:
    return ledger + RESUME_SUFFIX


def new_index(path: str) -> LedgerIndex:
    """An empty index keyed for saving in a resume point."""
    key = secrets.token_bytes(16)
    return LedgerIndex(path, hash=keyed_hash(key), hash_key=key)


def _edges(fd: int, size: int) -> tuple[str, str]:
    head = os.pread(fd, min(size, _EDGE), 0)
    tail = os.pread(fd, min(size, _EDGE), max(0, size - _EDGE))
    return hashlib.sha256(head).hexdigest(), hashlib.sha256(tail).hexdigest()


def load_resume(file: LedgerFile) -> tuple[LedgerIndex, ManifestMark | None] | None:
    """The index and mark of `file`'s resume point, with the ledger's bytes after the point
    read into the index; None when there is no usable point (read the whole ledger)."""
    path = resume_path(file.path)
    try:
        with open(path, "rb") as f:
            head = f.readline()
            body = f.read()
        meta = orjson.loads(head)
        found = _load(meta, body, file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("resume_point_unusable", reason=type(exc).__name__)
        return None
    if found is None:
        return None
    index, mark = found
    _read_on(file, file.path, index, repair=True)
    return index, mark


def _read_on(file: LedgerFile, path: str, index: LedgerIndex, *, repair: bool) -> None:
    """Read the ledger's records after those `index` holds into it."""
    read_ledger(
        file, path=path, into=index, start=index.read_to, lines_before=index.lines, repair=repair
    )


def _load(
    meta: dict[str, Any], body: bytes, file: LedgerFile
) -> tuple[LedgerIndex, ManifestMark | None] | None:
    if meta.get("format") != _FORMAT or meta.get("byteorder") != sys.byteorder:
        return None
    covered = meta["ledger"]
    size = covered["size"]
    if file.size() < size or _edges(file.fd, size) != (covered["head"], covered["tail"]):
        log.warning("resume_point_stale", ledger=file.path)
        return None
    if hashlib.sha256(body).hexdigest() != meta["body"]:
        raise ValueError("the resume point's table is damaged")
    slots = meta["slots"]
    keys, values = array("Q"), array("I")
    if len(body) != slots * (keys.itemsize + values.itemsize):
        raise ValueError("the resume point's table has the wrong size")
    keys.frombytes(body[: slots * keys.itemsize])
    values.frombytes(body[slots * keys.itemsize :])
    table = IdTable()
    table.keys, table.values, table.mask = keys, values, slots - 1
    table.used, table.limit = meta["used"], slots * 5 // 8
    saved = meta["index"]
    key = bytes.fromhex(meta["key"])
    header = None if saved["header"] is None else JobHeader.from_record(saved["header"])
    index = LedgerIndex(
        file.path,
        header=header,
        started_at=saved["started_at"],
        table=table,
        records=saved["records"],
        runs=saved["runs"],
        invalid_lines=saved["invalid_lines"],
        lines=covered["lines"],
        read_to=size,
        hash=keyed_hash(key),
        hash_key=key,
    )
    # A point saved before ledgers named regions: its runs had the first job record's flow.
    flows = saved.get("flows", {} if header is None else header.flows)
    index.flows = {str(region): str(arn) for region, arn in flows.items()}
    index.regions = [str(region) for region in saved.get("regions", index.flows)]
    default = () if header is None else header.flow_definition_arns
    index.run_flows = tuple(str(arn) for arn in saved.get("run_flows", default))
    mark = meta.get("mark")
    if mark is None:
        return index, None
    return index, ManifestMark(**{**mark, "flows": tuple(mark.get("flows", ()))})


def _header_record(header: JobHeader | None) -> dict[str, Any] | None:
    if header is None:
        return None
    record = header.to_record()
    record.pop("at", None)
    return record


class ResumeKeeper:
    """Keeps a ledger's resume point: its own copy of the index, brought up to date from the
    ledger's new bytes whenever it saves (in a worker thread, off the event loop)."""

    def __init__(self, ledger: str, index: LedgerIndex, key: bytes) -> None:
        self._ledger = ledger
        self._index = index
        self._key = key
        self._lock = anyio.Lock()
        self.saves = 0

    async def save(
        self, mark: ManifestMark | None, checkpoint: Callable[[], Awaitable[None]]
    ) -> None:
        """Save a point with `mark`: first `checkpoint` (the ledger's records handed over so
        far, the ones that settled the marked lines among them, are made durable)."""
        async with self._lock:
            await checkpoint()
            await anyio.to_thread.run_sync(self._save, mark)
            self.saves += 1

    def _save(self, mark: ManifestMark | None) -> None:
        file = LedgerFile.open(self._ledger, write=False)
        if file is None:
            return
        try:
            index = self._index
            _read_on(file, self._ledger, index, repair=False)
            size = index.read_to
            head, tail = _edges(file.fd, size)
        finally:
            file.close()
        table = index.table
        body = table.keys.tobytes() + table.values.tobytes()
        meta = {
            "format": _FORMAT,
            "byteorder": sys.byteorder,
            "key": self._key.hex(),
            "ledger": {"size": size, "lines": index.lines, "head": head, "tail": tail},
            "index": {
                "header": _header_record(index.header),
                "started_at": index.started_at,
                "records": index.records,
                "runs": index.runs,
                "invalid_lines": index.invalid_lines,
                "flows": index.flows,
                "regions": index.regions,
                "run_flows": list(index.run_flows),
            },
            "slots": table.mask + 1,
            "used": table.used,
            "body": hashlib.sha256(body).hexdigest(),
            "mark": None
            if mark is None
            else {**asdict(mark), "tally": dict(mark.tally), "flows": list(mark.flows)},
        }
        _replace(resume_path(self._ledger), orjson.dumps(meta) + b"\n" + body)


def keeper_for(ledger: str, index: LedgerIndex) -> ResumeKeeper:
    """A keeper of the resume point of `ledger`, whose index is `index`.  A keyed index
    (loaded from a point) is copied; any other is rebuilt, keyed, by the keeper's first save,
    in its worker thread: the job's first calls need not wait for that."""
    if index.hash_key is not None:
        return ResumeKeeper(ledger, index.copy(), index.hash_key)
    fresh = new_index(ledger)
    assert fresh.hash_key is not None
    return ResumeKeeper(ledger, fresh, fresh.hash_key)


def _replace(path: str, data: bytes) -> None:
    """Write `path` whole or not at all: a temporary file, fsync, rename, fsync the folder."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_directory(path)
