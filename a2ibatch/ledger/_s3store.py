"""A ledger in S3: a local working copy, segments uploaded at every checkpoint, and a lease.

Containers on AWS Batch or Kubernetes are preempted and restarted elsewhere with an empty
disk, so a ledger on local disk would be lost with them.  `S3Store` keeps the ledger's
truth in S3 under ``<prefix><name>/``:

* ``segments/<seq>.jsonl``: the records synced since the previous segment, uploaded after
  every fsync of the working copy (every second or so), each with ``If-None-Match: *``, so
  no segment is ever overwritten; whole lines only;
* ``chunk-<first>-<last>.jsonl``: the records of segments first..last in one object,
  written every `CHUNK_SEGMENTS` segments and when a shard's run ends (then over the whole
  ledger); the segments (and smaller chunks) it holds are then deleted.  A reader that
  finds both, after a crash between the two steps, uses the chunk and skips what it holds,
  so a restart downloads a few objects, not one per second of the run;
* ``responses/<run>/<seq>.jsonl``: the sidecar's segments (Textract and Rekognition
  answers), under a name of each run's own that sorts after the earlier runs';
* ``lease.json``: who runs this ledger, until when (`_s3lease.Lease`): two containers can
  never run one shard at once.

On start the segments are downloaded into a fresh working copy (the S3 copy is the truth),
so a new container with an empty disk resumes where the last upload left.  What a kill
loses is at most the records since the last upload: a job recovers the loops those calls
started by listing the loops created since (`docs/ledger.md`).
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread

from .._calls import Caller, CallFailed
from .._errors import LedgerError, LedgerWriteError, raise_first
from .._log import get_logger
from ._files import LedgerFile, append_all_to, last_line_end
from ._format import dumps, event_record
from ._index import LedgerIndex
from ._location import LIFECYCLE_NAME, ledger_name
from ._reader import read_ledger
from ._s3lease import Lease
from ._store import RunFiles

log = get_logger()

#: seconds a lease lasts without renewal
LEASE_SECONDS: Final = 60.0
#: segments gathered into a chunk while a run goes on
CHUNK_SEGMENTS: Final = 300
_PRECONDITION: Final = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
#: answers that no retry changes: a wrong bucket, region or permission (exit 2, not 3)
_SETUP_ERRORS: Final = frozenset({
    "AccessDenied", "403", "NoSuchBucket", "InvalidBucketName", "PermanentRedirect", "301",
    "AuthorizationHeaderMalformed", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "AllAccessDisabled", "InvalidRequest", "NoCredentials", "Unauthorized",
})  # fmt: skip


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix ending in "/") of ``s3://bucket/prefix/``."""
    rest = uri.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise LedgerError(f"{uri} is not an s3://bucket/prefix/ location")
    return bucket, (prefix.rstrip("/") + "/") if prefix.strip("/") else ""


def _seq(key: str) -> int:
    """The (last) segment number an object's name carries; -1 for none."""
    stem = key.rsplit("/", 1)[-1].split(".", 1)[0]
    number = stem.rsplit("-", 1)[-1]
    return int(number) if number.isdigit() else -1


def _range(key: str) -> tuple[int, int]:
    """(first, last) segment numbers of a segment or chunk object."""
    stem = key.rsplit("/", 1)[-1].split(".", 1)[0]
    parts = stem.split("-")
    if parts[0] == "chunk" and len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    seq = _seq(key)
    return seq, seq


def covering(keys: list[str]) -> list[str]:
    """The objects to read, in order: chunks and segments, none held by another read."""
    spans = sorted((_range(k), k) for k in keys if _seq(k) >= 0)
    chosen: list[str] = []
    end = 0
    for (first, last), key in sorted(spans, key=lambda s: (s[0][0], -s[0][1])):
        if last <= end:
            continue  # held by a chunk already chosen
        if first <= end:  # overlaps without holding: a larger chunk's part; use what's new
            continue
        chosen.append(key)
        end = last
    return chosen


class S3Location:
    """A job's ledgers under ``s3://bucket/prefix/``, one folder per ledger."""

    def __init__(
        self,
        uri: str,
        *,
        s3: Any,
        caller: Caller,
        work_dir: str | os.PathLike[str] | None = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.bucket, self.prefix = split_uri(uri)
        self.label = f"s3://{self.bucket}/{self.prefix}"
        self.s3 = s3
        self.caller = caller
        self.lease_seconds = lease_seconds
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        if work_dir is None:
            self._temp = tempfile.TemporaryDirectory(prefix="a2ibatch-")
            work_dir = self._temp.name
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)

    # -- S3 calls ----------------------------------------------------------------------

    async def list_keys(self, prefix: str, *, delimiter: str | None = None) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if delimiter:
                kwargs["Delimiter"] = delimiter
            if token:
                kwargs["ContinuationToken"] = token
            page = await self.call("ListObjectsV2", self.s3.list_objects_v2, **kwargs)
            if delimiter:
                keys += [str(p["Prefix"]) for p in page.get("CommonPrefixes", [])]
            keys += [str(o["Key"]) for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return keys

    async def get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag; None when there is none."""
        try:
            answer = await self.call("GetObject", self.s3.get_object, Bucket=self.bucket, Key=key)
        except CallFailed as exc:
            if exc.error.code in ("NoSuchKey", "404"):
                return None
            raise
        async with answer["Body"] as body:
            data: bytes = await body.read()
        return data, str(answer.get("ETag", ""))

    async def put(self, key: str, data: bytes, **condition: str) -> str:
        """Put an object under a condition (``IfNoneMatch="*"`` or ``IfMatch=etag``); its
        new ETag.  LedgerWriteError when the condition fails."""
        try:
            answer = await self.call(
                "PutObject", self.s3.put_object, Bucket=self.bucket, Key=key, Body=data, **condition
            )
        except CallFailed as exc:
            if exc.error.code in _PRECONDITION:
                raise LedgerWriteError(
                    f"s3://{self.bucket}/{key} was written by another process: this run no "
                    "longer holds the ledger's lease and stopped; the same command resumes"
                ) from None
            raise
        return str(answer.get("ETag", ""))

    async def call(self, operation: str, method: Any, **kwargs: Any) -> Any:
        try:
            return await self.caller.call(operation, method, **kwargs)
        except CallFailed as exc:
            if exc.error.code in _PRECONDITION or exc.error.code in ("NoSuchKey", "404"):
                raise
            if exc.error.code in _SETUP_ERRORS:  # the bucket, its region or the permissions
                raise LedgerError(
                    f"cannot use the ledger at {self.label}: S3 {operation} failed "
                    f"({exc.error.code}); check the bucket, the region and s3:{operation}"
                ) from None
            # S3 kept failing (5xx, throttling, the network) after every retry: the job stops
            # like on a failed disk write (exit 3), and the same command resumes.
            raise LedgerWriteError(
                f"the ledger at {self.label} is unavailable: S3 {operation} kept failing "
                f"({exc.error.code}); the job stopped, the same command resumes"
            ) from None

    # -- the location ------------------------------------------------------------------

    def own(self, shards: int, shard_index: int | None) -> S3Store:
        return S3Store(self, ledger_name(shards, shard_index))

    async def members(self) -> list[str]:
        """The names of the location's ledgers, the lifecycle ledger last."""
        folders = await self.list_keys(self.prefix, delimiter="/")
        names = sorted(f[len(self.prefix) :].rstrip("/") for f in folders)
        ordinary = [n for n in names if n and n != LIFECYCLE_NAME]
        return ordinary + ([LIFECYCLE_NAME] if LIFECYCLE_NAME in names else [])

    async def download(self, name: str, into: Path) -> int:
        """Every record of ledger `name` into the file `into` (new); the last segment's
        number (0 for none)."""
        base = f"{self.prefix}{name}/"
        keys = [
            k
            for k in await self.list_keys(base)
            if k.startswith(base + "segments/") or k[len(base) :].startswith("chunk-")
        ]
        parts = covering(keys)
        last = max((_seq(k) for k in parts), default=0)
        fd = os.open(into, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for key in parts:
                found = await self.get(key)
                if found is not None:
                    await anyio.to_thread.run_sync(append_all_to, fd, found[0])
        finally:
            os.close(fd)
        return last

    async def read_into(self, index: LedgerIndex, *, exclude: str | None, **options: Any) -> None:
        for name in await self.members():
            if name == exclude:
                continue
            local = self.work_dir / f"read-{name}-{uuid.uuid4().hex[:8]}.jsonl"
            await self.download(name, local)
            try:
                file = LedgerFile.open(local, write=False)
                assert file is not None
                try:
                    read_ledger(
                        file, path=f"{self.label}{name}/", into=index, repair=False, **options
                    )
                finally:
                    file.close()
            finally:
                local.unlink(missing_ok=True)

    @asynccontextmanager
    async def lifecycle(self) -> AsyncIterator[LedgerFile]:
        """A fresh local file for lifecycle records, uploaded as one segment at the end."""
        local = self.work_dir / f"lifecycle-{uuid.uuid4().hex[:8]}.jsonl"
        file = LedgerFile.open(local, write=True, create=True)
        assert file is not None
        try:
            file.append_all(dumps(event_record(LIFECYCLE_NAME, {})))
            yield file
            file.fsync()
            data = os.pread(file.fd, file.size(), 0)
            if data.count(b"\n") > 1:  # more than the header
                stamp = f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}"
                key = f"{self.prefix}{LIFECYCLE_NAME}/segments/{stamp}.jsonl"
                await self.put(key, data, IfNoneMatch="*")
        finally:
            file.close()
            local.unlink(missing_ok=True)


class S3Store:
    """One ledger of an `S3Location`, for a run: lease, working copy, segment uploads."""

    def __init__(self, location: S3Location, name: str) -> None:
        self.location = location
        self.name = name
        self.label = f"{location.label}{name}/"
        self.ident = name
        self.base = f"{location.prefix}{name}/"
        self.lease = Lease(location, self.base + "lease.json", self.label)
        self._seq = 0
        self._response_seq = 0
        self._responses_name = ""
        self._uploaded = 0
        self._responses_uploaded = 0
        self._chunked = 0  # segments up to here are in chunks
        self._files: RunFiles | None = None
        self.finished = False  # set by the job when its run ended with every item decided

    # -- the run -----------------------------------------------------------------------

    @asynccontextmanager
    async def run(self, *, sidecar: bool) -> AsyncIterator[RunFiles]:
        loc = self.location
        await self.lease.take()
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self.lease.renew)
                try:
                    local = loc.work_dir / f"{self.name}.jsonl"
                    local.unlink(missing_ok=True)
                    self._seq = await loc.download(self.name, local)
                    # This run's answers go under a name of its own, after every earlier
                    # run's (their keys sort by the ledger's segment at each run's start):
                    # no listing of what may be thousands of earlier answer segments.
                    self._responses_name = f"{self._seq:012d}-{self.lease.owner[-8:]}"
                    self._response_seq = 0
                    ledger = LedgerFile.open(local, write=True, create=True, lock=True)
                    assert ledger is not None
                    side: LedgerFile | None = None
                    if sidecar:
                        side_path = loc.work_dir / f"{self.name}.responses.jsonl"
                        side_path.unlink(missing_ok=True)
                        side = LedgerFile.open(side_path, write=True, create=True)
                    self._uploaded = ledger.size()
                    files = RunFiles(ledger, side, after_sync=self.upload)
                    self._files = files
                    try:
                        yield files
                        await self.upload()
                        if self.finished:
                            await self._compact()
                    finally:
                        for file in (side, ledger):
                            if file is not None:
                                file.close()
                finally:
                    tasks.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise_first(group)
        finally:
            with anyio.CancelScope(shield=True):
                await self.lease.release()

    async def upload(self) -> None:
        """Upload the records synced since the last upload, as the next segment(s)."""
        files = self._files
        if files is None:
            return
        if files.sidecar is not None:
            self._responses_uploaded, self._response_seq = await self._push(
                files.sidecar,
                self._responses_uploaded,
                self._response_seq,
                f"responses/{self._responses_name}",
            )
        self._uploaded, self._seq = await self._push(
            files.ledger, self._uploaded, self._seq, "segments"
        )
        if self._seq - self._chunked >= CHUNK_SEGMENTS:
            await self._chunk(self._chunked + 1)

    async def _push(self, file: LedgerFile, done: int, seq: int, folder: str) -> tuple[int, int]:
        end = last_line_end(file.fd, file.size())
        if end <= done:
            return done, seq
        data = os.pread(file.fd, end - done, done)
        seq += 1
        await self.location.put(f"{self.base}{folder}/{seq:012d}.jsonl", data, IfNoneMatch="*")
        return end, seq

    async def _compact(self) -> None:
        """At the end of a run: the whole ledger in one chunk."""
        if self._seq > 1:
            await self._chunk(1)

    async def _chunk(self, first: int) -> None:
        """Segments first..now in one object; then delete what it holds."""
        files = self._files
        if files is None or first > self._seq:
            return
        loc = self.location
        last = self._seq
        keys = await loc.list_keys(self.base)
        held = [
            k
            for k in keys
            if (k.startswith(self.base + "segments/") or k[len(self.base) :].startswith("chunk-"))
            and first <= _range(k)[0]
            and _range(k)[1] <= last
        ]
        parts = covering(held)
        data = b"".join([found[0] for k in parts if (found := await loc.get(k)) is not None])
        await loc.put(f"{self.base}chunk-{first:012d}-{last:012d}.jsonl", data, IfNoneMatch="*")
        self._chunked = last
        for old in held:
            await loc.call("DeleteObject", loc.s3.delete_object, Bucket=loc.bucket, Key=old)
