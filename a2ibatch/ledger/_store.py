"""Where a ledger lives, behind one small interface.

A store hands out the ledger's open files for the three ways a ledger is used: a *run*
(exclusive: the writer's lock is taken before the ledger is read, so what the run reads is
what it holds), an *append* beside a run (lifecycle commands), and a plain *read*.  The file
layer (`LedgerFile`) does the rest.  `LocalStore` is a ledger file on this machine; a store
that keeps the ledger elsewhere (S3) works on a local working copy of the same format and
adds what it needs in `after_sync` (upload the records synced since the last call).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

from .._errors import LedgerError
from ._files import LedgerFile
from ._format import SIDECAR_SUFFIX


@dataclass
class RunFiles:
    """The files of a run: the locked ledger, the sidecar if asked, and the store's hook."""

    ledger: LedgerFile
    sidecar: LedgerFile | None
    after_sync: Callable[[], Awaitable[None]] | None = None


class LedgerStore(Protocol):
    """A ledger's home.  `label` names it in messages; `ident` among its location's."""

    label: str
    ident: str

    def run(self, *, sidecar: bool) -> AbstractAsyncContextManager[RunFiles]:
        """Async context: the run's files, locked, created if new."""
        ...


class LocalStore:
    """A ledger file on this machine (and its sidecar, ``<path>.responses.jsonl``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.label = self.path
        self.ident = self.path

    @property
    def sidecar_path(self) -> str:
        return self.path + SIDECAR_SUFFIX

    @asynccontextmanager
    async def run(self, *, sidecar: bool) -> AsyncIterator[RunFiles]:
        ledger = LedgerFile.open(self.path, write=True, create=True, lock=True)
        assert ledger is not None
        side: LedgerFile | None = None
        try:
            if sidecar:
                side = LedgerFile.open(self.sidecar_path, write=True, create=True)
                if side is not None and not side.new:
                    side.cut_incomplete_tail()
            yield RunFiles(ledger, side)
        finally:
            # A run refused before its first record (preflight, say) leaves no empty files.
            for file in (side, ledger):
                if file is not None and file.new and file.fd >= 0 and file.size() == 0:
                    with suppress(OSError):
                        os.unlink(file.path)
            if side is not None:
                side.close()
            ledger.close()

    def append(self) -> LedgerFile | None:
        return LedgerFile.open(self.path, write=True)

    def read(self) -> LedgerFile | None:
        return LedgerFile.open(self.path, write=False)


@asynccontextmanager
async def open_writer(
    path: str | os.PathLike[str],
    header: Any,
    *,
    sidecar: bool = False,
    **options: Any,
) -> AsyncIterator[Any]:
    """A writer on the local ledger at `path`: a run when `header` is given (the lock taken
    and the ledger read and repaired first, as a job does), else append mode."""
    from ._reader import read_ledger
    from ._writer import LedgerWriter

    store = LocalStore(path)
    if header is None:
        file = store.append()
        if file is None:
            raise LedgerError(f"ledger {store.label} does not exist")
        try:
            read_ledger(file)  # cuts a dead run's torn tail, under a brief lock
            async with LedgerWriter.open(file, None, **options) as writer:
                yield writer
        finally:
            file.close()
        return
    async with store.run(sidecar=sidecar) as files:
        read_ledger(files.ledger)
        async with LedgerWriter.open(
            files.ledger, header, sidecar=files.sidecar, after_sync=files.after_sync, **options
        ) as writer:
            yield writer
