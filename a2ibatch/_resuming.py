"""A job's use of its ledger's resume point: read through it, keep it, seek the manifest.

For a ledger that is one local file (see `ledger._resume`): the job reads the ledger
through its resume point when there is a usable one (the point's index plus the ledger's
bytes after it), and otherwise reads it all, keyed for saving; while the job runs, a task
saves a new point every `RESUME_SECONDS` and once more at the end, with the manifest's
mark when the job reads a local JSON Lines manifest.  A rerun whose manifest is unchanged
up to the mark starts reading after it; the lines before count as the mark's tally says.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread

from ._counters import Counters
from ._errors import A2IBatchError, raise_first
from ._log import get_logger
from ._marks import Marking
from ._settings import SubmitSettings
from .ledger import (
    FileLocation,
    LedgerFile,
    LedgerIndex,
    LedgerWriter,
    Location,
    ManifestMark,
    ResumeKeeper,
    keeper_for,
    load_resume,
    read_ledger,
)
from .ledger._resume import RESUME_SECONDS
from .manifest import Boundary, ManifestStart

log = get_logger()


class Resumption:
    """One run's resume point: the mark it starts from, and the keeper of the next."""

    def __init__(
        self,
        keeper: ResumeKeeper,
        mark: ManifestMark | None,
        marking: Marking | None,
        interval: float = RESUME_SECONDS,
    ) -> None:
        self.keeper = keeper
        self.interval = interval
        self.mark = mark
        #: which lines are settled (None: the manifest is not a local JSON Lines file)
        self.marking = marking

    @property
    def start(self) -> ManifestStart | None:
        """Where the manifest reader may start (None: at the top)."""
        mark = self.mark
        if mark is None:
            return None
        return ManifestStart(mark.line, mark.offset, mark.verify_end, mark.digest)

    def boundary(self, boundary: Boundary) -> None:
        if self.marking is not None:
            self.marking.boundary(boundary)

    @asynccontextmanager
    async def keeping(self, writer: LedgerWriter) -> AsyncIterator[None]:
        """Save a point every `interval` seconds while the body runs, and once at its end (not
        after the writer failed: the ledger may then lack records the mark counts)."""

        async def every() -> None:
            while self.interval > 0:  # 0: only when the run ends
                await anyio.sleep(self.interval)
                await self._save(writer)

        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(every)
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise_first(group)
        finally:
            if writer.failed is None:
                with anyio.CancelScope(shield=True):
                    await self._save(writer)

    async def _save(self, writer: LedgerWriter) -> None:
        mark = self.marking.mark() if self.marking is not None else None
        try:
            await self.keeper.save(mark, writer.checkpoint)
        except (OSError, A2IBatchError) as exc:  # a full disk, say: the ledger is what counts
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            log.warning("resume_point_not_saved", reason=reason)


def _can_mark(settings: SubmitSettings, items: bool) -> bool:
    """Whether the job reads a manifest a mark can describe: a local, plain JSON Lines
    file (the reader finds out about gzip itself)."""
    manifest = settings.manifest
    return (
        not items
        and manifest != "-"
        and not manifest.startswith("s3://")
        and not manifest.lower().removesuffix(".gz").endswith(".csv")
    )


async def read_resumable(
    settings: SubmitSettings,
    location: Location,
    file: LedgerFile,
    counters: Counters,
    *,
    items: bool,
) -> tuple[LedgerIndex, Resumption | None]:
    """The job's ledger index, read through its resume point where it can be; and the
    run's `Resumption` (None where the ledger is not one local file)."""
    if not isinstance(location, FileLocation):
        index = await anyio.to_thread.run_sync(
            functools.partial(read_ledger, file, path=location.label),
            abandon_on_cancel=True,
        )
        return index, None
    loaded = await anyio.to_thread.run_sync(load_resume, file, abandon_on_cancel=True)
    mark: ManifestMark | None = None
    if loaded is not None:
        index, mark = loaded
    else:
        index = await anyio.to_thread.run_sync(
            functools.partial(read_ledger, file, path=location.label),
            abandon_on_cancel=True,
        )
    keeper = keeper_for(file.path, index)
    marking: Marking | None = None
    if _can_mark(settings, items):
        flows = settings.flow_definition_arns
        header = index.header
        marked = mark.flows if mark is not None and mark.flows else ()
        if not marked and header is not None:
            marked = header.flow_definition_arns  # a mark of a ledger of one flow
        if mark is not None and (
            mark.source != settings.manifest
            or (settings.retry_failed and mark.has_failures)
            or set(marked) != set(flows)
        ):
            # Another manifest, lines the mark counts settled are to be sent, or other flow
            # definitions (lines refused for a region without one may now be sendable).
            mark = None
        marking = Marking(settings.manifest, 1, 0, mark, counters, flows)
    else:
        mark = None
    return index, Resumption(keeper, mark, marking, settings.resume_interval)
