"""Cutting a manifest's bytes into physical lines, in bulk and in bounded memory."""

from __future__ import annotations

from typing import Final

#: a longer line is invalid without being parsed; it bounds the reader's memory per line
#: (an input of 3 MiB characters takes up to 18 MiB as JSON text when every one is escaped)
MAX_LINE_BYTES: Final = 32 * 1024 * 1024
#: stands in for a line longer than MAX_LINE_BYTES; never valid JSON, recognised by identity
TOO_LONG: Final = b"\x00line too long\x00"
_BOM: Final = b"\xef\xbb\xbf"


class LineSplitter:
    """Cuts chunks into physical lines (without their newline), in bulk.

    A line longer than MAX_LINE_BYTES is dropped as it streams by and replaced by the
    `TOO_LONG` marker, so that it costs no memory and keeps its line number.
    """

    def __init__(self, *, at_start: bool = True) -> None:
        self._parts: list[bytes] = []  # the current unfinished line
        self._size = 0
        self._skipping = False  # inside a line that is too long
        self._first = at_start  # a byte order mark may come first

    @property
    def pending(self) -> int | None:
        """Bytes of the unfinished line held back; None inside an over-long line."""
        return None if self._skipping else self._size

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        if self._skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                return out
            out.append(TOO_LONG)
            self._skipping = False
            chunk = chunk[nl + 1 :]
        nl = chunk.rfind(b"\n")
        if nl < 0:
            self._parts.append(chunk)
            self._size += len(chunk)
            if self._size > MAX_LINE_BYTES:
                self._parts, self._size, self._skipping = [], 0, True
            return self._bom(out)
        head = chunk[:nl]
        if self._parts:
            self._parts.append(head)
            head = b"".join(self._parts)
        lines = head.split(b"\n")
        if self._size and len(lines[0]) > MAX_LINE_BYTES:
            lines[0] = TOO_LONG
        rest = chunk[nl + 1 :]
        self._parts = [rest] if rest else []
        self._size = len(rest)
        if out:
            out.extend(lines)
            return self._bom(out)
        return self._bom(lines)

    def finish(self) -> list[bytes]:
        """The last line when the data does not end with a newline."""
        if self._skipping:
            self._skipping = False
            return [TOO_LONG]
        last = b"".join(self._parts)
        self._parts, self._size = [], 0
        return self._bom([last]) if last else []

    def _bom(self, lines: list[bytes]) -> list[bytes]:
        # A byte order mark (Windows editors, Excel) is no part of the first line.
        if self._first and lines:
            self._first = False
            if lines[0].startswith(_BOM):
                lines[0] = lines[0][len(_BOM) :]
        return lines
