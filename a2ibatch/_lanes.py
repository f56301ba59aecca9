"""The regions of a job of several flow definitions: one lane per region.

Quotas are per region and a flow definition serves only its own region, so each lane has
its own clients (signed for its region), its own `Meters` (rate controllers, in-flight
cap, quota pause, outage gate), `Caller` and `ItemSender` (its flow definition; its ledger
records name the region).  `Lanes.cap` is the in-flight cap of all lanes together, the
size of the job's worker pool; a lane's `slots` hold its items to its own cap.

Preflight runs in each lane with that region's items (flow definition, work team and PII
rule, bucket regions and CORS, cost), and ``max_cost`` applies to the estimate of the
whole job, over its regions.  A job of one flow has no lanes: it runs as it always has.
"""

from __future__ import annotations

import dataclasses
import functools
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio

from ._aws import A2I_SERVICE, Clients, open_clients
from ._calls import Caller
from ._counters import Counters
from ._errors import PreflightError, setting
from ._log import get_logger
from ._meters import InFlightCap, Meters, job_meters
from ._plan import Tally
from ._preflight import PreflightReport, preflight
from ._recovery import loops_created_since, unfinished_since
from ._retry import RetryPolicy
from ._sender import ItemSender
from ._settings import SubmitSettings
from ._tasks import RequestOptions, TaskAdapter
from .ledger import LedgerFile, LedgerWriter

log = get_logger()


@dataclass
class Lane:
    """One region of a job: its flow definition, clients, meters, caller and sender."""

    region: str
    flow_definition_arn: str
    meters: Meters
    caller: Caller
    clients: Clients
    slots: anyio.CapacityLimiter
    sender: ItemSender | None = None


class Lanes:
    """A job's lanes by region, and the in-flight cap of them all (`cap`)."""

    def __init__(self, lanes: dict[str, Lane]) -> None:
        self.by_region = lanes
        self.cap = InFlightCap(sum(lane.meters.cap.limit for lane in lanes.values()))
        for lane in lanes.values():
            lane.meters.cap.on_change = functools.partial(self._changed, lane)

    def _changed(self, lane: Lane, limit: int) -> None:
        lane.slots.total_tokens = limit
        total = sum(other.meters.cap.limit for other in self.by_region.values())
        if total != self.cap.limit:
            self.cap.fixed = self.cap.limit = total
            if self.cap.on_change is not None:
                self.cap.on_change(total)

    @property
    def first(self) -> Lane:
        return next(iter(self.by_region.values()))

    def lane(self, region: str | None) -> Lane:
        """The lane of `region` (the plan routed the item there: it has one)."""
        return self.by_region[str(region)]

    def rate(self, operation: str) -> float:
        """`operation`'s rate over every region."""
        return sum(lane.meters.rate(operation).rate for lane in self.by_region.values())

    def attach(self, adapter: TaskAdapter, writer: LedgerWriter, settings: SubmitSettings) -> Lane:
        """Give each lane its sender, for the flow definition of its region; the first lane."""
        for lane in self.by_region.values():
            options = RequestOptions(
                lane.flow_definition_arn, settings.content_classifiers, settings.feature_types
            )
            lane.sender = ItemSender(
                adapter=adapter,
                clients=lane.clients,
                writer=writer,
                caller=lane.caller,
                options=options,
                region=lane.region,
            )
        return self.first


async def open_lanes(
    stack: AsyncExitStack,
    settings: SubmitSettings,
    adapter: TaskAdapter,
    counters: Counters,
    policy: RetryPolicy,
    session: Any | None,
) -> Lanes:
    """A lane for each of the job's flows: clients signed for its region, its meters."""
    s = settings
    pool = max(s.concurrency or 0, 1024)
    services = dict.fromkeys((adapter.service, A2I_SERVICE), pool)
    lanes: dict[str, Lane] = {}
    for region, arn in s.flows.items():
        clients = await open_clients(stack, s.aws, session, services, region=region)
        meters = job_meters(s, counters, adapter.operation)
        slots = anyio.CapacityLimiter(meters.cap.limit)
        lanes[region] = Lane(region, arn, meters, Caller(meters, policy), clients, slots)
    return Lanes(lanes)


async def preflight_lanes(
    settings: SubmitSettings,
    lanes: Lanes,
    scan: Tally | None,
    *,
    session: Any | None,
    s3_client: Any | None,
) -> dict[str, PreflightReport]:
    """Preflight in each region that has items to send (each, when they cannot be counted),
    then the cost limit over the whole job's estimate."""
    each = dataclasses.replace(settings, confirm_cost=True)  # the limit applies to the sum
    reports: dict[str, PreflightReport] = {}
    for region, lane in lanes.by_region.items():
        part = None if scan is None else scan.regions.get(region)
        if scan is not None and part is None:
            continue  # nothing to send there: nothing to check
        reports[region] = await preflight(
            each,
            session=session,
            items=None if part is None else part.to_send,
            buckets=() if part is None else part.buckets,
            s3_client=s3_client,
            item_classifiers=None if part is None else part.classifiers,
            caller=lane.caller,
            flow_definition_arn=lane.flow_definition_arn,
        )
        for warning in reports[region].warnings:
            log.warning("preflight", detail=warning, region=region)
    costs = {r: c for r, report in reports.items() if (c := report.estimated_cost) is not None}
    total = round(sum(costs.values()), 3)
    limit = settings.max_cost
    if limit is not None and total > limit and not settings.confirm_cost:
        parts = ", ".join(f"{region} ${cost:,.2f}" for region, cost in sorted(costs.items()))
        raise PreflightError(
            f"the estimated labour cost is ${total:,.2f} over the job's regions ({parts}), "
            f"above {setting('max_cost')} ${limit:,.2f}; pass {setting('confirm_cost', True)} "
            f"to accept it, or raise {setting('max_cost')}",
            code="MaxCost",
        )
    return reports


async def recovered_in_lanes(lanes: Lanes, prefix: str, ledger: LedgerFile) -> frozenset[str]:
    """When the ledger's last run did not end: the job's loops created since its last
    record, in every region (see `_recovery`)."""
    since = unfinished_since(ledger)
    if since is None:
        return frozenset()
    names: set[str] = set()
    for lane in lanes.by_region.values():
        names |= await loops_created_since(
            lane.clients.a2i, lane.caller, lane.flow_definition_arn, prefix, since
        )
    return frozenset(names)
