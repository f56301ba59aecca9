"""The lease of a ledger in S3: who runs it, until when (``lease.json`` beside its segments).

Taken with ``If-None-Match: *``, renewed every third of its time with ``If-Match`` on its
ETag, taken over with ``If-Match`` once it has expired (by more than the clocks of two
containers may differ), so two containers can never run one shard at once: the one that
loses the lease stops at its next renewal or upload.  Released on a clean end.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Final

import anyio
import orjson

from .._calls import CallFailed
from .._errors import LedgerError, LedgerWriteError
from .._log import get_logger

if TYPE_CHECKING:
    from ._s3store import S3Location

log = get_logger()

#: clocks of two containers may differ by this much
CLOCK_SLACK: Final = 5.0


class Lease:
    """The lease object `key` of `location`, for one run."""

    def __init__(self, location: S3Location, key: str, label: str) -> None:
        self.location = location
        self.key = key
        self.label = label
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._etag = ""
        #: how far the clocks of two containers may differ (at most half a lease)
        self.slack = min(CLOCK_SLACK, location.lease_seconds / 2)

    def _body(self, seconds: float) -> bytes:
        return orjson.dumps({"owner": self.owner, "expires": time.time() + seconds})

    async def take(self) -> None:
        """Take the lease, waiting for another holder's to expire (LedgerError if it is
        renewed for three lease times: the same shard runs elsewhere)."""
        loc = self.location
        deadline = time.monotonic() + 3 * loc.lease_seconds + self.slack
        while True:
            try:
                self._etag = await loc.put(self.key, self._body(loc.lease_seconds), IfNoneMatch="*")
                return
            except LedgerWriteError:
                pass  # a lease exists: see whose, and until when
            found = await loc.get(self.key)
            if found is None:
                continue
            data, etag = found
            try:
                expires = float(orjson.loads(data).get("expires", 0))
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                expires = 0.0
            if expires + self.slack < time.time():
                try:
                    self._etag = await loc.put(
                        self.key, self._body(loc.lease_seconds), IfMatch=etag
                    )
                    log.warning("ledger_lease_taken_over", ledger=self.label)
                    return
                except LedgerWriteError:
                    continue  # someone else took it first: look again
            if time.monotonic() > deadline:
                raise LedgerError(
                    f"ledger {self.label} is being run by another process (its lease is renewed "
                    "and holds); is the same shard running twice?"
                )
            await anyio.sleep(min(5.0, max(0.2, expires + self.slack - time.time())))

    async def renew(self) -> None:
        """Renew every third of the lease, for ever (LedgerWriteError once it is lost)."""
        loc = self.location
        while True:
            await anyio.sleep(loc.lease_seconds / 3)
            self._etag = await loc.put(self.key, self._body(loc.lease_seconds), IfMatch=self._etag)

    async def release(self) -> None:
        with contextlib.suppress(LedgerError, CallFailed):  # else it expires by itself
            await self.location.put(self.key, self._body(-1e9), IfMatch=self._etag)
