"""Where a job's ledgers live: one file, a directory of them, or an S3 prefix.

A job run as shards (an AWS Batch array job, a Kubernetes Indexed Job) writes one ledger
per shard, all in one *location*; every reader merges them, so an item counts as done if
any ledger of the location has it done, and a rerun with another number of shards, or
without shards, sends nothing twice.

* `FileLocation`: the ledger file itself (one run at a time; lifecycle commands append to it);
* `DirectoryLocation`: ``ledger.jsonl`` (no shards) or ``shard-K-of-N.jsonl`` per shard,
  and ``lifecycle.jsonl`` for what the lifecycle commands record;
* an S3 prefix (`_s3store.S3Location`): the same names, each a folder of segment objects.

Every ledger of a location must belong to the same job (task, flow definition, name
prefix): the reader refuses a mix.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Final, Protocol

import anyio
import anyio.to_thread

from .._errors import LedgerError
from .._text import printable
from ._files import LedgerFile
from ._format import SIDECAR_SUFFIX, dumps, event_record
from ._index import LedgerIndex
from ._reader import read_ledger
from ._store import LedgerStore, LocalStore

LIFECYCLE_NAME: Final = "lifecycle"
UNSHARDED_NAME: Final = "ledger"


def ledger_name(shards: int, shard_index: int | None) -> str:
    """The name of a run's own ledger in a location (without ``.jsonl``)."""
    if shards <= 1:
        return UNSHARDED_NAME
    return f"shard-{shard_index or 0:04d}-of-{shards:04d}"


class Location(Protocol):
    """A place that holds a job's ledgers."""

    label: str

    def own(self, shards: int, shard_index: int | None) -> LedgerStore:
        """The store of the ledger this run writes."""
        ...

    async def read_into(self, index: LedgerIndex, *, exclude: str | None, **options: Any) -> None:
        """Read every ledger of the location but `exclude` (the run's own) into `index`."""
        ...

    def lifecycle(self) -> AbstractAsyncContextManager[LedgerFile]:
        """An async context giving the ledger file lifecycle commands append to."""
        ...


class FileLocation:
    """A single ledger file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.label = path

    def own(self, shards: int, shard_index: int | None) -> LocalStore:
        if shards > 1:
            raise LedgerError(
                f"ledger {printable(self.path)} is a file: shards need a location of one "
                "ledger per shard (a directory, a path ending in '/', or s3://bucket/prefix/)"
            )
        return LocalStore(self.path)

    async def read_into(self, index: LedgerIndex, *, exclude: str | None, **options: Any) -> None:
        if exclude != self.path:
            await _read_file(self.path, index, options)

    @asynccontextmanager
    async def lifecycle(self) -> AsyncIterator[LedgerFile]:
        file = LedgerFile.open(self.path, write=True)
        if file is None:
            raise LedgerError(f"ledger {printable(self.path)} does not exist")
        try:
            yield file
        finally:
            file.close()


class DirectoryLocation:
    """A directory of ledgers: one per shard (or ``ledger.jsonl``), and ``lifecycle.jsonl``."""

    def __init__(self, path: str) -> None:
        self.path = path.rstrip("/") or "/"
        self.label = self.path + "/"

    def file(self, name: str) -> str:
        return os.path.join(self.path, name + ".jsonl")

    def own(self, shards: int, shard_index: int | None) -> LocalStore:
        Path(self.path).mkdir(parents=True, exist_ok=True)
        return LocalStore(self.file(ledger_name(shards, shard_index)))

    def members(self) -> list[str]:
        """Every ledger of the directory, the lifecycle ledger last."""
        try:
            names = sorted(os.listdir(self.path))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise LedgerError(f"cannot list {printable(self.label)}: {exc.strerror}") from None
        found = [
            os.path.join(self.path, name)
            for name in names
            if name.endswith(".jsonl")
            and not name.endswith(SIDECAR_SUFFIX)
            and name != LIFECYCLE_NAME + ".jsonl"
        ]
        lifecycle = self.file(LIFECYCLE_NAME)
        return found + ([lifecycle] if os.path.exists(lifecycle) else [])

    async def read_into(self, index: LedgerIndex, *, exclude: str | None, **options: Any) -> None:
        for member in self.members():
            if member != exclude:
                await _read_file(member, index, options)

    @asynccontextmanager
    async def lifecycle(self) -> AsyncIterator[LedgerFile]:
        Path(self.path).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, quick
        file = LedgerFile.open(self.file(LIFECYCLE_NAME), write=True, create=True)
        assert file is not None
        try:
            if file.new or file.size() == 0:
                file.append_all(dumps(event_record(LIFECYCLE_NAME, {})))
            yield file
        finally:
            file.close()


async def _read_file(path: str, index: LedgerIndex, options: dict[str, Any]) -> None:
    def read() -> None:
        file = LedgerFile.open(path, write=False)
        if file is None:
            return
        try:
            read_ledger(file, path=path, into=index, **options)
        finally:
            file.close()

    await anyio.to_thread.run_sync(read, abandon_on_cancel=True)


def is_directory(ledger: str | os.PathLike[str]) -> bool:
    text = os.fspath(ledger)
    return text.endswith("/") or os.path.isdir(text)


def location_for(ledger: str | os.PathLike[str], **s3_options: Any) -> Location:
    """The location a ``ledger`` setting names (S3 prefixes need `s3_options`: see
    `_s3store.S3Location`)."""
    text = os.fspath(ledger)
    if text.startswith("s3://"):
        from ._s3store import S3Location

        return S3Location(text, **s3_options)
    if is_directory(text):
        return DirectoryLocation(text)
    return FileLocation(text)


async def read_location(location: Location, **options: Any) -> LedgerIndex:
    """Every ledger of `location` in one index (LedgerError when it holds none)."""
    index = LedgerIndex(location.label)
    await location.read_into(index, exclude=None, **options)
    return index
