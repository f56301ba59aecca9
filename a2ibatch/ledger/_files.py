"""The only code that touches a ledger's bytes: open and lock, read lines, append, cut, fsync.

Everything else reads and writes ledgers through `LedgerFile`:

* opening refuses what is not a regular file before it can block (a FIFO would hang
  ``open()`` and ignore signals), creates new files private (0600) and tightens an existing
  file that others could read, and takes the writer's exclusive ``flock`` when asked;
* `lines` hands out the file's complete lines in large batches, in linear time and flat
  memory whatever the file holds: a "line" longer than `MAX_LINE_BYTES` (a tail of zero
  bytes left by a power loss, say) is replaced by the `TOO_LONG` marker as it streams by;
* `append_all` writes a whole batch of records, with as many ``write`` calls as a short
  write takes; `cut` truncates a torn tail durably; `fsync` makes appended records durable.

Appends use ``O_APPEND``: a batch of whole lines written by one ``write`` never interleaves
with another process's batch (a lifecycle command may append while a submit runs).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Iterator
from typing import Final

from .._errors import LedgerError

if sys.platform != "win32":
    import fcntl

#: a longer line is never a record a2ibatch wrote: it is damage, and is not held in memory
MAX_LINE_BYTES: Final = 8 * 1024 * 1024
#: stands in for an over-long line; never valid JSON, recognised by identity
TOO_LONG: Final = b"\x00line too long\x00"
# 256 KiB reads: few system calls, and each block's lines stay in the CPU cache while they
# are parsed (measured faster than both smaller reads and multi-MiB ones)
READ_SIZE: Final = 1 << 18
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_regular(path: str) -> bool:
    """Whether `path` exists; LedgerError if it exists but is not a regular file."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise LedgerError(f"cannot read ledger {path}: {_reason(exc)}") from None
    if not stat.S_ISREG(info.st_mode):
        raise LedgerError(
            f"ledger {path} is not a regular file (a FIFO, device or directory); "
            "give the path of a ledger file"
        )
    return True


class LedgerFile:
    """One open ledger (or sidecar) file.  Use `LedgerFile.open`; `close` when done."""

    __slots__ = ("fd", "locked", "new", "path", "tightened")

    def __init__(self, path: str, fd: int, *, new: bool, locked: bool, tightened: bool) -> None:
        self.path = path
        self.fd = fd
        #: created by this open
        self.new = new
        #: this process holds the exclusive writer lock
        self.locked = locked
        #: the file's mode let others read it and was tightened to 0600
        self.tightened = tightened

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, write: bool, create: bool = False, lock: bool = False
    ) -> LedgerFile | None:
        """Open `path`; None when it does not exist and `create` is false.

        `write` opens for appending (and reading); `lock` takes the exclusive writer lock
        without waiting and raises LedgerError when another process holds it.
        """
        p = os.fspath(path)
        exists = check_regular(p)
        if not exists and not create:
            return None
        flags = (os.O_RDWR | os.O_APPEND if write else os.O_RDONLY) | _CLOEXEC | _NONBLOCK
        new = False
        try:
            if not exists:
                try:
                    fd = os.open(p, flags | os.O_CREAT | os.O_EXCL, 0o600)
                    new = True
                except FileExistsError:
                    fd = os.open(p, flags)
            else:
                fd = os.open(p, flags)
        except FileNotFoundError:
            if not create:
                return None
            raise LedgerError(
                f"cannot create ledger file {p}: its directory does not exist"
            ) from None
        except OSError as exc:
            raise LedgerError(f"cannot open ledger file {p}: {_reason(exc)}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):  # swapped for something else since the stat
                raise LedgerError(f"ledger {p} is not a regular file")
            tightened = False
            if write and stat.S_IMODE(info.st_mode) & 0o077:
                os.fchmod(fd, 0o600)
                tightened = True
            locked = False
            if lock:
                if not try_lock(fd):
                    raise LedgerError(
                        f"ledger {p} is in use by another process (is the job already running?)"
                    )
                locked = True
            if new:
                _fsync_directory(p)
        except BaseException:
            os.close(fd)
            raise
        return cls(p, fd, new=new, locked=locked, tightened=tightened)

    def close(self) -> None:
        """Close the file (which also releases the lock)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def ends_with_newline(self) -> bool:
        """Whether the file is empty or its last byte ends a line (nothing torn to append to)."""
        size = self.size()
        return size == 0 or os.pread(self.fd, 1, size - 1) == b"\n"

    # -- reading ---------------------------------------------------------------------

    def lines(self, start: int = 0) -> Iterator[tuple[list[bytes], int]]:
        """The file's complete lines (without newlines) in batches, each with the file
        offset of its first line, from offset `start`.

        A last batch whose offset is negative, ``-1 - offset``, holds the incomplete tail
        (bytes after the last newline).  Over-long lines come as `TOO_LONG`.
        """
        fd = self.fd
        offset = start  # where the first byte of `pending` is in the file
        position = start
        pending: list[bytes] = []  # pieces of an unfinished line
        pending_size = 0
        overlong = False
        while block := os.pread(fd, READ_SIZE, position):
            position += len(block)
            if overlong:
                newline = block.find(b"\n")
                if newline < 0:
                    continue
                yield [TOO_LONG], offset
                offset = position - len(block) + newline + 1
                block = block[newline + 1 :]
                overlong = False
                if not block:
                    continue
            last = block.rfind(b"\n")
            if last < 0:
                pending.append(block)
                pending_size += len(block)
                if pending_size > MAX_LINE_BYTES:
                    pending, pending_size, overlong = [], 0, True
                continue
            head = block[:last]
            if pending:
                pending.append(head)
                head = b"".join(pending)
            lines = head.split(b"\n")
            if len(lines[0]) > MAX_LINE_BYTES:
                lines[0] = TOO_LONG
            yield lines, offset
            offset = position - len(block) + last + 1
            rest = block[last + 1 :]
            pending = [rest] if rest else []
            pending_size = len(rest)
        if overlong:
            yield [TOO_LONG], -1 - offset
        elif pending:
            yield [b"".join(pending)], -1 - offset

    # -- writing ---------------------------------------------------------------------

    def append_all(self, data: bytes) -> None:
        """Append `data` with as many ``write`` calls as it takes; OSError on failure."""
        append_all_to(self.fd, data)

    def fsync(self) -> None:
        """Make what was appended durable (a no-op for what cannot be synced)."""
        try:
            os.fsync(self.fd)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise

    def cut(self, size: int) -> int:
        """Truncate the file to `size` bytes, durably; how many bytes went.

        Only the lock's holder may cut: a live writer's tail may be a record being written.
        If this process does not hold the lock, it takes it for the moment of the cut (and
        raises LedgerError when another process holds it).
        """
        held = self.locked
        if not held and not try_lock(self.fd):
            raise LedgerError(
                f"ledger {self.path} ends with a torn record while another process writes it; "
                "try again in a moment"
            )
        try:
            before = self.size()
            os.truncate(self.path, size)
            os.fsync(self.fd)
        except OSError as exc:
            raise LedgerError(
                f"ledger {self.path} ends with a torn record that cannot be cut off: "
                f"{_reason(exc)}"
            ) from None
        finally:
            if not held:
                unlock(self.fd)
        return before - size

    def cut_incomplete_tail(self) -> int:
        """Cut the bytes after the last newline (a record torn by a crash); how many went.

        For files whose lines are never parsed on open (the sidecar): a backwards scan.
        """
        if self.ends_with_newline():
            return 0
        return self.cut(last_line_end(self.fd, self.size()))


def append_all_to(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd`, with as many ``write`` calls as a short write takes.

    A ``write`` that writes nothing (a full disk) raises OSError(ENOSPC).
    """
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def last_record(file: LedgerFile) -> bytes | None:
    """The last complete line of `file` (None for an empty file)."""
    end = last_line_end(file.fd, file.size())
    if end == 0:
        return None
    start = last_line_end(file.fd, end - 1)
    line = os.pread(file.fd, end - 1 - start, start)
    return line or None


def last_line_end(fd: int, size: int) -> int:
    """Offset just past the last newline among the first `size` bytes of `fd` (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def try_lock(fd: int) -> bool:
    """Take the exclusive writer lock without waiting; False when another holder has it.

    Filesystems without locks count as locked: there is nothing to coordinate with.
    """
    if sys.platform == "win32":
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
    return True


def unlock(fd: int) -> None:
    if sys.platform != "win32":
        fcntl.flock(fd, fcntl.LOCK_UN)


def _fsync_directory(path: str) -> None:
    """Make a new file's directory entry durable (best effort: not every system can)."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
