"""Service Quotas (JSON 1.1, ``ServiceQuotasV20190624.*``): the emulated operations' rate quotas.

ListServiceQuotas and GetServiceQuota answer, for each emulated operation, the rate the
emulator's token buckets enforce (``EmulatorConfig.quota_for``), in calls per second, with
``Unit: "None"`` and a one-second period as the real service shows TPS quotas.  A client can
so read its quota instead of discovering it by being throttled, and be tested both ways:
``service_quotas_access="deny"`` makes both operations answer AccessDeniedException.

The service codes are the real ones; the quota codes are stand-ins (the real codes are not
published), listed in docs/emulator.md.  An unlimited emulator shows `UNLIMITED_RATE`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Final

from ._errors import DIALECTS, SERVICE_QUOTAS, ServiceError
from ._state import Call, State

DIALECT: Final = DIALECTS[SERVICE_QUOTAS]
#: the value shown for an operation the emulator does not limit
UNLIMITED_RATE: Final = 1_000_000.0
LIST_DEFAULT_MAX: Final = 100
NO_SUCH_SERVICE: Final = "The request failed because the specified service does not exist."
DENIED: Final = "You don't have sufficient permission to perform this action."


@dataclass(frozen=True, slots=True)
class RateQuota:
    """One operation's requests-per-second quota as Service Quotas names it."""

    service_code: str
    quota_code: str  # a stand-in, see the module docstring
    operation: str
    name: str


SERVICE_NAMES: Final = {
    "sagemaker": "Amazon SageMaker",
    "textract": "Amazon Textract",
    "rekognition": "Amazon Rekognition",
}


def _a2i(code: str, operation: str) -> RateQuota:
    return RateQuota("sagemaker", code, operation, f"Rate of {operation} requests")


CATALOG: Final = (
    _a2i("L-EFB97D75", "StartHumanLoop"),
    _a2i("L-54C230AA", "DescribeHumanLoop"),
    _a2i("L-A2BAE0F9", "ListHumanLoops"),
    _a2i("L-288EFA4D", "StopHumanLoop"),
    _a2i("L-A56075C8", "DeleteHumanLoop"),
    _a2i("L-2C19A04C", "DescribeFlowDefinition"),
    RateQuota(
        "textract",
        "L-E0D942BC",
        "AnalyzeDocument",
        "Transactions per second per account for synchronous AnalyzeDocument operations",
    ),
    RateQuota(
        "rekognition",
        "L-8BA850D3",
        "DetectModerationLabels",
        "Transactions per second per account for the Amazon Rekognition Image operation "
        "DetectModerationLabels",
    ),
)
_BY_SERVICE: Final = {
    code: tuple(q for q in CATALOG if q.service_code == code) for code in SERVICE_NAMES
}


def _check_access(state: State) -> None:
    if state.config.service_quotas_access == "deny":
        raise ServiceError("AccessDeniedException", DENIED, 400)


def _service(raw: Any) -> tuple[RateQuota, ...]:
    if not isinstance(raw, str) or not raw:
        raise DIALECT.invalid("ServiceCode is required")
    quotas = _BY_SERVICE.get(raw)
    if quotas is None:
        raise DIALECT.missing(NO_SUCH_SERVICE)
    return quotas


def _shape(state: State, call: Call, quota: RateQuota) -> dict[str, Any]:
    """A ServiceQuota as botocore parses it."""
    rate = state.config.quota_for(quota.operation)
    region, account = call.caller.region, state.config.account_id
    return {
        "ServiceCode": quota.service_code,
        "ServiceName": SERVICE_NAMES[quota.service_code],
        "QuotaArn": f"arn:aws:servicequotas:{region}:{account}:"
        f"{quota.service_code}/{quota.quota_code}",
        "QuotaCode": quota.quota_code,
        "QuotaName": quota.name,
        "Value": UNLIMITED_RATE if rate is None else rate,
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
        "UsageMetric": {
            "MetricNamespace": "AWS/Usage",
            "MetricName": "CallCount",
            "MetricDimensions": {
                "Class": "None",
                "Resource": quota.operation,
                "Service": SERVICE_NAMES[quota.service_code].removeprefix("Amazon "),
                "Type": "API",
            },
            "MetricStatisticRecommendation": "Maximum",
        },
        "Period": {"PeriodValue": 1, "PeriodUnit": "SECOND"},
        "QuotaAppliedAtLevel": "ACCOUNT",
        "Description": f"The maximum number of {quota.operation} requests per second "
        "in this account and Region.",
    }


def get_service_quota(state: State, call: Call) -> dict[str, Any]:
    """GetServiceQuota: one quota by service code and quota code."""
    _check_access(state)
    quotas = _service(call.params.get("ServiceCode"))
    code = call.params.get("QuotaCode")
    if not isinstance(code, str) or not code:
        raise DIALECT.invalid("QuotaCode is required")
    for quota in quotas:
        if quota.quota_code == code:
            return {"Quota": _shape(state, call, quota)}
    raise DIALECT.missing(f"The request failed because the quota {code} does not exist.")


def list_service_quotas(state: State, call: Call) -> dict[str, Any]:
    """ListServiceQuotas: a service's rate quotas, optionally one QuotaCode, paged."""
    _check_access(state)
    params = call.params
    service = params.get("ServiceCode")
    quotas = _service(service)
    code = params.get("QuotaCode")
    if code:
        quotas = tuple(q for q in quotas if q.quota_code == code)
    limit = params.get("MaxResults") or LIST_DEFAULT_MAX
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise DIALECT.invalid("MaxResults must be an integer between 1 and 100")
    start = _decode_token(params["NextToken"], str(service)) if params.get("NextToken") else 0
    page = quotas[start : start + limit]
    answer: dict[str, Any] = {"Quotas": [_shape(state, call, q) for q in page]}
    if start + limit < len(quotas):
        answer["NextToken"] = base64.urlsafe_b64encode(
            f"quotas:{service}:{start + limit}".encode()
        ).decode()
    return answer


def _decode_token(token: Any, service: str) -> int:
    try:
        kind, owner, index = base64.urlsafe_b64decode(str(token)).decode().split(":")
        if kind != "quotas" or owner != service:
            raise ValueError(token)
        return int(index)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ServiceError("InvalidPaginationTokenException", "Invalid pagination token") from None
