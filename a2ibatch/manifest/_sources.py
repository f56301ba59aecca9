"""Where a manifest's bytes come from: a local file, stdin, or an S3 object; gzip or plain.

Local files and stdin are read in a worker thread, an S3 object's body chunk by chunk as it
arrives; either way bytes come out in pieces of about `CHUNK_BYTES`, and gzip (recognised by
its magic bytes) is inflated in bounded pieces by `_decode`, so a gzip bomb cannot fill
memory.  Only regular files are opened by path: a FIFO would block ``open()`` where no
signal reaches it, so it is refused before opening (stdin, ``-``, may be a pipe).
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

import anyio
import anyio.to_thread

from .._errors import ManifestError
from .._text import printable
from ._decode import Decoder

#: bytes read (and, for gzip, produced) per step: few system calls and thread hops
CHUNK_BYTES: Final = 1024 * 1024


@dataclass(frozen=True)
class ManifestStart:
    """Where a rerun may start reading a manifest: at `offset`, the start of line `line` + 1,
    if the file's bytes [0, verify_end) still have the SHA-256 `digest` (the file is the
    one the mark was taken in, perhaps grown since)."""

    line: int
    offset: int
    verify_end: int
    digest: str


class _FileReader:
    """Chunks of a local file or of stdin, read and decompressed in a worker thread.

    With `track`, a plain file's bytes are hashed as they are read (`consumed`, `digest`:
    what a mark records); with `start`, reading starts there if the file's first bytes are
    still those the mark saw (`resumed` says whether it did)."""

    def __init__(
        self,
        stream: BinaryIO,
        label: str,
        gz_name: bool,
        owned: bool,
        size: int | None,
        start: ManifestStart | None = None,
        track: bool = False,
    ) -> None:
        self.size = size  # raw bytes in all, when known
        self._stream = stream
        self._label = label
        self._owned = owned
        self._decoder = Decoder(label, gz_name, CHUNK_BYTES)
        read1 = getattr(stream, "read1", None)  # a pipe's data as soon as some is there
        self._read: Callable[[int], bytes] = read1 if callable(read1) else stream.read
        self._start = start
        self._hash: Any = hashlib.sha256() if track or start is not None else None
        self.resumed = False
        self.consumed = 0  # bytes hashed: the file's first `consumed` bytes
        self.digest = hashlib.sha256().hexdigest()  # ... and their digest

    def _begin(self) -> None:
        """Verify the mark's bytes and seek past them, or start from the beginning."""
        start, self._start = self._start, None
        assert start is not None
        h = hashlib.sha256()
        at_offset: Any = None
        position = 0
        try:
            for limit in (start.offset, start.verify_end):
                while position < limit:
                    piece = self._stream.read(min(CHUNK_BYTES, limit - position))
                    if not piece:
                        break
                    h.update(piece)
                    position += len(piece)
                if limit == start.offset and position == limit:
                    at_offset = h.copy()
            same = position == start.verify_end and h.hexdigest() == start.digest
            if same and at_offset is not None:
                # The same bytes the mark hashed: a plain file (the mark was taken in one).
                self._stream.seek(start.offset)
                self._hash, self.consumed, self.resumed = at_offset, start.offset, True
                self._decoder.plain()
                return
            self._stream.seek(0)
        except OSError as exc:
            cause = exc.strerror or type(exc).__name__
            raise ManifestError(f"cannot read manifest {self._label}: {cause}") from None
        self._hash = hashlib.sha256()

    def _next(self) -> bytes:
        if self._start is not None:
            self._begin()
        decoder = self._decoder
        while (piece := decoder.take()) is None:
            try:
                raw = self._read(CHUNK_BYTES)
            except OSError as exc:
                cause = exc.strerror or type(exc).__name__
                raise ManifestError(f"cannot read manifest {self._label}: {cause}") from None
            decoder.give(raw)
            if self._hash is not None:
                if decoder.gzip:
                    self._hash = None  # a mark needs a seekable file: not a gzip stream
                else:
                    self._hash.update(raw)
                    self.consumed += len(raw)
        if self._hash is not None:
            self.digest = self._hash.copy().hexdigest() if piece else self.digest
        return piece

    async def begin(self) -> None:
        """With a start: verify the mark and seek past it (or start at the top), now."""
        if self._start is not None:
            await anyio.to_thread.run_sync(self._begin)

    @property
    def tracking(self) -> bool:
        return self._hash is not None

    @property
    def used(self) -> int:
        return self._decoder.used

    async def read(self) -> bytes:
        # stdin may block for ever: a cancelled job must not wait for it
        return await anyio.to_thread.run_sync(self._next, abandon_on_cancel=not self._owned)

    async def aclose(self) -> None:
        if self._owned:
            self._stream.close()


class _PipeReader:
    """Chunks of stdin when it is a pipe, a socket or a terminal, waited for on the event loop.

    No thread holds a read that may block for ever, so Ctrl-C and SIGTERM stop the job at
    once, and the process can exit (a thread stuck in ``read`` would keep it alive).  A
    read follows readiness, so it returns what has arrived without blocking.
    """

    def __init__(self, fd: int, label: str) -> None:
        self.size: int | None = None
        self._fd = fd
        self._label = label
        self._decoder = Decoder(label, False, CHUNK_BYTES)

    @property
    def used(self) -> int:
        return self._decoder.used

    async def read(self) -> bytes:
        decoder = self._decoder
        while (piece := decoder.take()) is None:
            await anyio.wait_readable(self._fd)
            try:
                raw = os.read(self._fd, CHUNK_BYTES)
            except BlockingIOError:
                continue
            except OSError as exc:
                cause = exc.strerror or type(exc).__name__
                raise ManifestError(f"cannot read manifest {self._label}: {cause}") from None
            decoder.give(raw)
        return piece

    async def aclose(self) -> None:
        return None


class _S3Reader:
    """Chunks of an S3 object's body as they arrive, decompressed on the fly."""

    def __init__(self, body: Any, uri: str, gz_name: bool, size: int | None) -> None:
        self.size = size  # raw bytes in all, when known
        self._body = body
        self._uri = uri
        self._decoder = Decoder(uri, gz_name, CHUNK_BYTES)

    @property
    def used(self) -> int:
        return self._decoder.used

    async def read(self) -> bytes:
        decoder = self._decoder
        while (piece := decoder.take()) is None:
            try:
                raw: bytes = await self._body.read(CHUNK_BYTES)
            except Exception as exc:  # the connection broke, a timeout, a short body
                cause = type(exc).__name__
                raise ManifestError(f"cannot read manifest {self._uri}: {cause}") from None
            decoder.give(raw)
        return piece

    async def aclose(self) -> None:
        self._body.close()


async def open_source(
    source: str,
    s3_client: Any | None,
    stdin: BinaryIO | None,
    *,
    start: ManifestStart | None = None,
    track: bool = False,
) -> _FileReader | _PipeReader | _S3Reader:
    """A reader of the manifest's bytes: ``await read()`` (b"" at the end), ``await aclose()``,
    and `size` and `used`, the raw bytes in all (None when unknown) and consumed so far.
    `start` and `track` apply to a local file (see `_FileReader`), and are ignored else."""
    gz_name = source.lower().endswith(".gz")
    if source == "-":
        if stdin is None:
            try:
                fd = sys.stdin.fileno()
                mode = os.fstat(fd).st_mode
            except (AttributeError, OSError, ValueError):  # no descriptor: read it in a thread
                fd, mode = -1, 0
            if fd >= 0 and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)):
                return _PipeReader(fd, "on stdin")
        stream = stdin if stdin is not None else sys.stdin.buffer
        return _FileReader(stream, "on stdin", False, owned=False, size=None)
    if source.startswith("s3://"):
        return await _open_s3(source, s3_client, gz_name)
    label = printable(source)
    try:
        # Never open what is not a regular file: a FIFO would block in open(), in a thread
        # no signal reaches.  O_NONBLOCK covers a swap between this check and the open.
        if not stat.S_ISREG(os.stat(source).st_mode):
            raise ManifestError(
                f"cannot open manifest {label}: not a regular file (a FIFO, device or "
                "directory); give a file, or '-' to read standard input"
            )
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | os.O_CLOEXEC)
    except OSError as exc:
        cause = exc.strerror or type(exc).__name__
        raise ManifestError(f"cannot open manifest {label}: {cause}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ManifestError(f"cannot open manifest {label}: not a regular file")
    stream = os.fdopen(fd, "rb", buffering=0)
    return _FileReader(
        stream, label, gz_name, owned=True, size=info.st_size, start=start, track=track
    )


async def _open_s3(source: str, s3_client: Any | None, gz_name: bool) -> _S3Reader:
    uri = printable(source)
    if s3_client is None:
        raise ManifestError(f"cannot open manifest {uri}: no S3 client was given")
    bucket, _, key = source[5:].partition("/")
    if not bucket or not key:
        raise ManifestError(f"cannot open manifest {uri}: not an s3://bucket/key URI")
    try:
        response = await s3_client.get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise ManifestError(f"cannot open manifest {uri}: {_s3_problem(exc)}") from None
    size = response.get("ContentLength")
    return _S3Reader(response["Body"], uri, gz_name, size if isinstance(size, int) else None)


def _s3_problem(exc: Exception) -> str:
    """The cause of a failed GetObject, from its error code."""
    error = getattr(exc, "response", None)
    code = ""
    if isinstance(error, dict):
        code = str((error.get("Error") or {}).get("Code") or "")
    known = {
        "NoSuchKey": "no such object (NoSuchKey)",
        "NoSuchBucket": "no such bucket (NoSuchBucket)",
        "AccessDenied": "access denied (AccessDenied); check s3:GetObject on the object",
        "404": "no such object (404)",
        "403": "access denied (403)",
    }
    if code in known:
        return known[code]
    if code:
        return f"S3 refused the request ({code})"
    return type(exc).__name__
