"""The quota of an API, read from Service Quotas where the account allows it.

**Read.**  A job that knows its start call's quota need not find it by being throttled: it
can start at it and never exceed it (`RateController.know_quota`).  Service Quotas tells the
value applied to the account (the default, or an increase AWS granted) if the identity may
call ``servicequotas:ListServiceQuotas``; many job roles may not, and then the controller
finds the quota as it always has.  So `applied_quota` is an optimisation that must never
cost a job anything: an access denial, an endpoint out of reach (a VPC without a Service
Quotas endpoint), an unknown service or a quota not listed all mean "not known", after at
most `LOOKUP_TIMEOUT` seconds, and never stop the job or close its outage gate.  Quotas are
matched by service code and by the operation their usage metric counts
(``UsageMetric.MetricDimensions.Resource``), or else by a name that says it is the rate of
that operation, never by quota code: AWS does not publish the codes of these quotas.

Where it cannot be read, the rate controller counts it (`_admission.AdmissionCount`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._aws import open_clients
from ._calls import Caller, CallFailed
from ._counters import Counters
from ._log import get_logger
from ._meters import Meters
from ._retry import CallError, ErrorKind, describe_exception

if TYPE_CHECKING:  # the stubs are a development dependency (types-aiobotocore)
    from types_aiobotocore_service_quotas import ServiceQuotasClient
    from types_aiobotocore_service_quotas.type_defs import (
        ListServiceQuotasResponseTypeDef,
        ServiceQuotaTypeDef,
    )

    from ._retry import RetryPolicy
    from ._settings import SubmitSettings

log = get_logger()

#: the Service Quotas service code of each operation whose rate a job controls
SERVICE_CODES: Final = {
    "StartHumanLoop": "sagemaker",
    "DescribeHumanLoop": "sagemaker",
    "ListHumanLoops": "sagemaker",
    "StopHumanLoop": "sagemaker",
    "DeleteHumanLoop": "sagemaker",
    "AnalyzeDocument": "textract",
    "DetectModerationLabels": "rekognition",
}
#: the whole lookup gives up after this long (seconds): it must not hold a job up
LOOKUP_TIMEOUT: Final = 5.0
#: quotas asked for per page, and pages read at most (SageMaker lists hundreds)
PAGE_SIZE = 100
MAX_PAGES: Final = 20
_PERIOD_SECONDS: Final = {
    "MICROSECOND": 1e-6,
    "MILLISECOND": 1e-3,
    "SECOND": 1.0,
    "MINUTE": 60.0,
    "HOUR": 3600.0,
    "DAY": 86400.0,
    "WEEK": 604800.0,
}


@dataclass(frozen=True, slots=True)
class AppliedQuota:
    """One operation's rate quota as the account applies it."""

    operation: str
    rate: float  # calls per second
    service_code: str
    quota_code: str
    name: str

    def describe(self) -> str:
        """A short account of where the rate came from, for a job's summary."""
        return (
            f"{self.operation} quota {self.rate:g}/s from Service Quotas "
            f"({self.service_code} {self.quota_code})"
        )


def _classify(exc: BaseException) -> CallError:
    """Errors that would stop a job or wait out an outage only end the lookup here."""
    error = describe_exception(exc)
    if error.kind in (ErrorKind.FATAL, ErrorKind.NOT_SENT, ErrorKind.QUOTA):
        return CallError(ErrorKind.ITEM, error.code, error.message, error.status)
    return error


async def applied_quota(
    caller: Caller,
    quotas: ServiceQuotasClient,
    operation: str,
    *,
    within: float = LOOKUP_TIMEOUT,
) -> AppliedQuota | None:
    """The applied rate quota of `operation` in the client's region, or None if the
    account does not tell it (see the module docstring).

    Calls go through `caller` (the job's meters and retries: throttling and server errors
    are retried, for at most `within` seconds).  Why it is unknown is logged (``quota_unknown``).
    """
    found, _reason = await _lookup(caller, quotas, operation, within)
    return found


async def use_applied_quota(
    meters: Meters,
    caller: Caller,
    quotas: ServiceQuotasClient | None,
    operation: str,
    *,
    shards: int = 1,
) -> str:
    """Start `operation`'s rate controller at its applied quota, if the account tells it;
    return what the job's summary says of its rate.

    The quota read becomes the controller's ceiling (a lower ``--rate`` stays) and its
    first rate: no slow start, no throttled probe past the quota.  One of `shards` starts
    at its 1/N share of it (shards that start equal share the quota fairly) and may grow
    past it when its peers are not running.  Unknown (or not read: `quotas` None), the
    controller finds the quota as it does without Service Quotas.
    """
    found, reason = None, "not read"
    if quotas is not None:
        found, reason = await _lookup(caller, quotas, operation, LOOKUP_TIMEOUT)
    controller = meters.rate(operation)
    told = controller.settings.ceiling if meters.told else None
    if found is None:
        if told is not None:
            return f"{operation} at most {told:g}/s (the rate given)"
        line = f"{operation} quota found by pacing (Service Quotas: {reason})"
        if shards > 1:
            # Untold, shards share the quota unevenly (`_rate`): say what evens it out.
            line += f"; shards that find it share it unevenly: give each --rate quota/{shards}"
        return line
    controller.know_quota(found.rate, share=1.0 / shards)
    if told is not None and told < found.rate:
        return f"{operation} at most {told:g}/s (the rate given; {found.describe()})"
    if shards > 1:
        return f"{found.describe()}, this shard from 1/{shards} of it"
    return found.describe()


def start_at_applied_quota(
    meters: Meters,
    settings: SubmitSettings,
    session: Any | None,
    operation: str,
    policy: RetryPolicy,
    said: Callable[[str], None] | None = None,
    *,
    region: str | None = None,
) -> None:
    """Before `meters`' first call of `operation`, `use_applied_quota` (each such call
    waits for it) if `settings` say so, and give `said` its line (by default, log it).

    The Service Quotas client is opened then, for the lookup alone: a job or Submitter
    that never sends neither asks nor pays for the client (botocore's endpoint data, tens
    of milliseconds).  The lookup has meters and counts of its own, as the ledger's S3
    calls do: a job's counted calls are the service's.
    """
    aside = Caller(Meters(Counters()), policy)

    async def setup() -> None:
        async with AsyncExitStack() as stack:
            quotas = None
            if settings.service_quotas:
                services = {"service-quotas": 2}
                opened = await open_clients(stack, settings.aws, session, services, region=region)
                quotas = opened.quotas
            line = await use_applied_quota(meters, aside, quotas, operation, shards=settings.shards)
        if said is None:
            log.info("rate", detail=line)
        else:
            said(line)

    meters.before_first_call(setup)


async def _lookup(
    caller: Caller, quotas: ServiceQuotasClient, operation: str, within: float
) -> tuple[AppliedQuota | None, str]:
    service = SERVICE_CODES.get(operation)
    if service is None:
        reason = "no Service Quotas service for this operation"
    else:
        reason = f"no answer within {within:g} s"
        with anyio.move_on_after(within):
            try:
                return await _find(caller, quotas, service, operation), ""
            except CallFailed as failed:
                reason = failed.error.code
            except _NotListed as missing:
                reason = str(missing)
    _unknown(operation, reason)
    return None, reason


class _NotListed(Exception):
    """The service lists no rate quota for the operation."""


async def _find(
    caller: Caller, quotas: ServiceQuotasClient, service: str, operation: str
) -> AppliedQuota:
    kwargs: dict[str, Any] = {"ServiceCode": service, "MaxResults": PAGE_SIZE}
    by_name: AppliedQuota | None = None
    for _ in range(MAX_PAGES):
        answer, _attempts = await caller.attempt(
            "ListServiceQuotas", quotas.list_service_quotas, kwargs, classify=_classify
        )
        page: ListServiceQuotasResponseTypeDef = answer
        for quota in page.get("Quotas", []):
            found = _rate_quota(quota, service, operation)
            if found is None:
                continue
            if _metric_resource(quota) == operation:
                return found
            by_name = by_name or found
        token = page.get("NextToken")
        if not token:
            break
        kwargs["NextToken"] = token
    if by_name is not None:
        return by_name
    raise _NotListed(f"no rate quota of {operation} listed for {service}")


def _metric_resource(quota: ServiceQuotaTypeDef) -> str | None:
    dimensions: Mapping[str, str] = quota.get("UsageMetric", {}).get("MetricDimensions", {})
    return dimensions.get("Resource")


def _rate_quota(quota: ServiceQuotaTypeDef, service: str, operation: str) -> AppliedQuota | None:
    """The quota as a rate of `operation`, if it is one: its usage metric counts the
    operation (or its name names it), and it has a period (or its name says it is a rate;
    then it is per second)."""
    name = quota.get("QuotaName", "")
    resource = _metric_resource(quota)
    rate_name = _names_rate_of(name, operation)
    if resource != operation and not (resource is None and rate_name):
        return None
    value = quota.get("Value")
    period = quota.get("Period")
    if value is None or (period is None and not rate_name):
        return None
    period = period or {}
    seconds = _PERIOD_SECONDS.get(period.get("PeriodUnit", "SECOND"), math.nan)
    seconds *= period.get("PeriodValue", 1)
    rate = float(value) / seconds if seconds > 0 else math.nan
    if not (rate > 0 and math.isfinite(rate)):
        return None
    return AppliedQuota(operation, rate, service, quota.get("QuotaCode", "?"), name)


def _names_rate_of(name: str, operation: str) -> bool:
    """Whether a quota's name says it is the request rate of `operation`."""
    lowered = name.lower()
    return operation.lower() in lowered.replace(" ", "") and any(
        word in lowered for word in ("per second", "rate of", "tps", "transactions per")
    )


def _unknown(operation: str, reason: str) -> None:
    log.info("quota_unknown", operation=operation, reason=reason)
