"""After a lost container: the loops its last moments started, found by listing them.

A ledger in S3 holds what was uploaded at the last checkpoint; a container that vanished
took the records since with it.  The calls of those records may have started loops.  A
Textract or Rekognition item sent again without knowing would be analysed again (paid), so
before the first call the job lists the flow definition's loops created since the ledger's
last record (ListHumanLoops, both bounds), and every item whose loop name is among them is
treated as a call that may have gone through: looked up before anything is sent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ._calls import Caller, CallFailed
from ._log import get_logger
from ._settings import SubmitSettings
from .ledger import LedgerFile, last_record, parse_time

log = get_logger()

#: before the last record: the clocks (this machine's against the service's; synchronised
#: clocks differ by well under a second); after it: calls still in flight, a read timeout or
#: two.  A loop the window misses costs a Textract or Rekognition item one more analysis, never
#: a second loop: its name is the same, and the service says it is taken.
BEFORE = timedelta(seconds=5)
AFTER = timedelta(minutes=3)


async def loops_created_since(
    a2i: Any, caller: Caller, flow_definition_arn: str, prefix: str, since: datetime
) -> set[str]:
    """The names (with the job's `prefix`) of the flow's loops created around and after
    `since`; an empty set when the listing fails (the plan then checks nothing more)."""
    names: set[str] = set()
    start = since - BEFORE
    end = max(datetime.now(UTC), since) + AFTER
    token: str | None = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {
            "FlowDefinitionArn": flow_definition_arn,
            "CreationTimeAfter": start,
            "CreationTimeBefore": end,
            "MaxResults": 100,
        }
        if token:
            kwargs["NextToken"] = token
        try:
            page = await caller.call("ListHumanLoops", a2i.list_human_loops, **kwargs)
        except CallFailed as exc:
            log.warning("recovery_listing_failed", code=exc.error.code)
            return names
        pages += 1
        for summary in page.get("HumanLoopSummaries", []):
            name = str(summary.get("HumanLoopName", ""))
            if name.startswith(prefix + "-") or prefix == "":
                names.add(name)
        token = page.get("NextToken")
        if not token:
            break
    log.info("recovery_listing", pages=pages, loops=len(names))
    return names


def unfinished_since(ledger: LedgerFile) -> datetime | None:
    """When the ledger's last run did not end (no summary last): its last record's time."""
    line = last_record(ledger)
    if line is None:
        return None
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or record.get("event") == "summary":
        return None
    return parse_time(str(record.get("at", "")))


async def recovered_names(
    settings: SubmitSettings, ledger: LedgerFile, a2i: Any, caller: Caller
) -> frozenset[str]:
    """When the ledger's last run did not end (no summary last): the names of the loops
    created since its last record (a job of one flow; `_lanes` lists each region's)."""
    since = unfinished_since(ledger)
    if since is None:
        return frozenset()
    arn = settings.flow_definition_arns[0]
    return frozenset(await loops_created_since(a2i, caller, arn, settings.name_prefix, since))
