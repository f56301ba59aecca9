"""Where each item of a job of several flow definitions goes: the flow of its region.

A Textract or Rekognition item goes to the region of its document's or image's bucket
(those services read S3 only in the region they are called in, and A2I wants the flow
definition there too); a custom item to the region its ``region`` field names.  `Routes`
answers an item's region from what it knows, synchronously (the plan rule decides entries
one at a time); `prepare` learns the regions of a batch's new buckets first, with one
GetBucketLocation per bucket for the whole job, many at once.

A bucket whose region cannot be read (access denied, no such bucket, retries spent) is
remembered with the error code, and its items are refused (`invalid`) with a reason that
names the field and the code, never the bucket or the key: a rerun reads the lines again
and asks once more.  A job of one flow has no `Routes`: its items go to that flow, as ever,
and nothing is looked up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._calls import Caller, CallFailed
from ._errors import JobAborted
from ._log import get_logger
from ._meters import InFlightCap
from ._models import Item, TaskType
from ._pool import fan_out
from ._regions import bucket_region, listing
from ._settings import SubmitSettings
from ._text import printable

log = get_logger()

#: GetBucketLocation calls at once while a batch's buckets are learnt
LOOKUPS_AT_ONCE: Final = 8
_FIELDS: Final = {TaskType.TEXTRACT: "document", TaskType.REKOGNITION: "image"}


@dataclass(frozen=True, slots=True)
class Unroutable:
    """Why an item has no region: the reason its `invalid` outcome records."""

    reason: str


class Routes:
    """The region of each item of one job of several flows (one per region in `flows`).

    `s3` and `caller` ask GetBucketLocation (built-in task types only); the regions learnt
    are kept for the whole job: its preflight scan, dry run and run share one `Routes`.
    """

    def __init__(
        self,
        task: TaskType,
        flows: Mapping[str, str],
        *,
        s3: Any | None = None,
        caller: Caller | None = None,
    ) -> None:
        self.task = task
        self.flows = dict(flows)
        self.custom = task is TaskType.CUSTOM
        self._field = _FIELDS.get(task, "")
        self._s3 = s3
        self._caller = caller
        #: bucket -> its region, or why it is not known
        self._buckets: dict[str, str | Unroutable] = {}
        self._listed = listing(self.flows)

    def route(self, item: Item) -> str | Unroutable:
        """The item's region (its flow may be missing: see `reason`), or why it has none."""
        if self.custom:
            region = item.region
            if region is None:
                return Unroutable(
                    "needs field 'region': this job has flow definitions in several regions "
                    f"({self._listed})"
                )
            return region
        ref = item.s3
        found = self._buckets.get(ref.bucket) if ref is not None else None
        if found is None:  # not prepared: a bug of ours, never a guess
            return Unroutable(f"the region of the bucket of field '{self._field}' is not known")
        return found

    def reason(self, routed: str | Unroutable) -> str:
        """Why an item routed to `routed` cannot be sent: no region, or no flow there."""
        if isinstance(routed, Unroutable):
            return routed.reason
        where = (
            "field 'region' names" if self.custom else f"the bucket of field '{self._field}' is in"
        )
        return (
            f"{where} region {printable(routed)}, which has no flow definition in this job "
            f"(it has {self._listed}); add a flow definition of that region to send it"
        )

    async def prepare(self, batch: Iterable[object]) -> None:
        """Learn the region of every bucket of `batch`'s items not known yet."""
        if self.custom:
            return
        known = self._buckets
        wanted = {
            entry.s3.bucket
            for entry in batch
            if type(entry) is Item and entry.s3 is not None and entry.s3.bucket not in known
        }
        if wanted:
            await fan_out(InFlightCap(LOOKUPS_AT_ONCE), sorted(wanted), self._locate)

    async def _locate(self, bucket: str) -> None:
        if self._s3 is None or self._caller is None:
            raise RuntimeError("Routes needs an S3 client to learn bucket regions")
        try:
            answer = await self._caller.call(
                "GetBucketLocation", self._s3.get_bucket_location, Bucket=bucket
            )
        except CallFailed as exc:
            code = exc.error.code
        except JobAborted as exc:
            if exc.code == "EndpointUnreachable":
                raise  # the job's condition, not this bucket's
            code = exc.code or "AccessDenied"  # access denied, say: this bucket's items only
        else:
            self._buckets[bucket] = bucket_region(answer.get("LocationConstraint"))
            return
        log.warning("bucket_region_unreadable", code=code)
        self._buckets[bucket] = Unroutable(
            f"cannot tell the region of the bucket of field '{self._field}' (S3 "
            f"GetBucketLocation answered {printable(code)}); once the bucket can be read, a "
            "rerun reads the line again"
        )


def routes_for(settings: SubmitSettings, s3: Any | None, caller: Caller) -> Routes | None:
    """The routes of a job of several flows (None for a job of one: nothing to route)."""
    if len(settings.flow_definition_arns) == 1:
        return None
    return Routes(settings.task, settings.flows, s3=s3, caller=caller)
