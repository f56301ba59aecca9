"""A manifest's raw bytes into its bytes: gzip recognised by its magic and inflated.

Kept apart from where the bytes come from (`_sources`: a file, stdin, an S3 object), so
that one state machine serves every source, in a worker thread or on the event loop.
Inflation is incremental and bounded: a gzip bomb cannot fill memory.
"""

from __future__ import annotations

import zlib
from typing import Final

from .._errors import ManifestError

_GZIP_MAGIC: Final = b"\x1f\x8b"


class Inflater:
    """Incremental gzip decompression in bounded pieces (a gzip bomb cannot fill memory).

    Handles multi-member files (``cat a.gz b.gz``) and trailing zero padding like `gzip`.
    """

    def __init__(self, piece_bytes: int) -> None:
        self._piece = piece_bytes  # at most this many bytes out per `pull`
        self._d = zlib.decompressobj(wbits=31)
        self._pending = b""  # compressed bytes not yet decompressed
        self._fed = False  # the current member has received input
        self._padding = False  # only zero bytes may follow

    @property
    def hungry(self) -> bool:
        return not self._pending

    @property
    def pending(self) -> int:
        return len(self._pending)

    def push(self, data: bytes) -> None:
        self._pending = data

    def pull(self) -> bytes:
        """Up to `piece_bytes` decompressed bytes from the pending input (maybe none)."""
        data, self._pending = self._pending, b""
        if self._padding or (self._d.eof and not data.strip(b"\x00")):
            if data.strip(b"\x00"):
                raise ValueError("data follows the end of the gzip stream")
            self._padding = True
            return b""
        if self._d.eof:
            self._d = zlib.decompressobj(wbits=31)  # the next member
        self._fed = True
        out = self._d.decompress(data, self._piece)
        self._pending = self._d.unused_data if self._d.eof else self._d.unconsumed_tail
        return out

    def finish(self) -> None:
        if self._fed and not self._d.eof and not self._padding:
            raise ValueError("the gzip stream is truncated")


class Decoder:
    """Raw bytes in, the manifest's bytes out: gzip is recognised by its magic and inflated.

    A pure state machine, so that a file's reader can run it in a worker thread and an S3
    object's reader on the event loop: `take` answers None when it needs `give` first.
    """

    def __init__(self, label: str, gz_name: bool, piece_bytes: int) -> None:
        self._label = label
        self._gz_name = gz_name
        self._head = b""  # the first bytes, until there are enough to see the magic
        self._gzip: bool | None = None  # None until known
        self._inflater = Inflater(piece_bytes)
        self._plain = b""
        self._end = False
        self._given = 0

    @property
    def gzip(self) -> bool:
        return self._gzip is True

    def plain(self) -> None:
        """The bytes are known to be plain (not gzip) whatever they start with."""
        self._gzip = False

    @property
    def used(self) -> int:
        """Raw bytes turned into manifest bytes so far (to estimate the manifest's size)."""
        return self._given - len(self._head) - len(self._plain) - self._inflater.pending

    def give(self, raw: bytes) -> None:
        """The next raw bytes; b"" at the end of the input."""
        self._given += len(raw)
        if not raw:
            self._end = True
        if self._gzip is None:
            self._head += raw
            if len(self._head) < len(_GZIP_MAGIC) and not self._end:
                return
            raw, self._head = self._head, b""
            self._gzip = raw.startswith(_GZIP_MAGIC)
            if self._gz_name and raw and not self._gzip:
                raise ManifestError(f"cannot read manifest {self._label}: named .gz but not gzip")
        if not raw:
            return
        if self._gzip:
            self._inflater.push(raw)
        else:
            self._plain = raw

    def take(self) -> bytes | None:
        """The next bytes of the manifest, b"" at its end, or None when `give` must come first."""
        if self._gzip:
            inflater = self._inflater
            try:
                while not inflater.hungry:
                    piece = inflater.pull()
                    if piece:
                        return piece
                if self._end:
                    inflater.finish()
            except (zlib.error, ValueError) as exc:
                problem = "not a valid gzip stream" if isinstance(exc, zlib.error) else str(exc)
                raise ManifestError(f"cannot read manifest {self._label}: {problem}") from None
        elif self._plain:
            piece, self._plain = self._plain, b""
            return piece
        return b"" if self._end else None
