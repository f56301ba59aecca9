"""Checks before spending: refuse a job that would fail or cost more than agreed.

A submit job can start a million human loops in minutes, and some mistakes only show once
workers open their tasks, or once the bill comes.  Before the first StartHumanLoop (or
AnalyzeDocument, DetectModerationLabels), `preflight` checks, with a few read-only calls:

* the flow definition exists, is Active, and lives in the region the job calls;
* a public (Mechanical Turk) work team gets only data declared free of personal
  information (A2I never sends other tasks to Mechanical Turk, so they would sit unseen),
  by the job's content classifiers and by those manifest lines set for themselves;
* every input bucket of a Textract or Rekognition job is in that region and has the CORS
  rule the worker UI needs to load the document (without it, review tasks fail);
* the estimated labour cost (items x workers per item x price per task) is within
  ``max_cost``, unless the user confirmed it.

A job of flows in several regions runs these checks once per region, with that region's
items (`_lanes`); its clients are then signed for the flow definition's region.

A refusal is a `PreflightError` whose message says what to fix; doubts that do not justify
a refusal become warnings in the `PreflightReport`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from ._aws import client_kwargs, make_session, open_client
from ._calls import Caller, CallFailed
from ._counters import Counters
from ._errors import ConfigError, JobAborted, PreflightError, setting
from ._meters import InFlightCap, Meters
from ._models import TaskType
from ._pool import fan_out
from ._settings import SubmitSettings

__all__ = [
    "A2I_CORS_RULE",
    "PUBLIC_WORKTEAM_MARK",
    "FlowDefinitionInfo",
    "PreflightReport",
    "preflight",
]

#: the account and path of the public Mechanical Turk work team, in every region
PUBLIC_WORKTEAM_MARK = ":394669845002:workteam/public-crowd/"
PII_FREE = "FreeOfPersonallyIdentifiableInformation"
ADULT_FREE = "FreeOfAdultContent"
#: the CORS rule A2I documents for input buckets: the worker UI fetches objects with GET
A2I_CORS_RULE: Mapping[str, Any] = {
    "AllowedHeaders": [],
    "AllowedMethods": ["GET"],
    "AllowedOrigins": ["*"],
    "ExposeHeaders": [],
}
_NOT_FOUND = frozenset({"ResourceNotFound", "ResourceNotFoundException"})
_BUCKET_CONCURRENCY = 8


@dataclass(frozen=True)
class FlowDefinitionInfo:
    """What DescribeFlowDefinition said that matters to a job."""

    arn: str
    name: str
    status: str
    region: str
    workteam_arn: str | None
    public_workforce: bool
    task_count: int | None  # workers per item
    price_per_task: float | None  # USD, public work team only
    output_path: str | None  # S3OutputPath of the answers

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class PreflightReport:
    """The checks passed; what they learnt, and doubts that did not stop the job."""

    flow_definition: FlowDefinitionInfo
    items: int | None
    buckets: list[str]  # input buckets checked
    estimated_cost: float | None  # USD; None when unknown (private work team, no count)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow_definition": self.flow_definition.to_dict(),
            "items": self.items,
            "buckets": self.buckets,
            "estimated_cost": self.estimated_cost,
            "warnings": self.warnings,
        }


def _arn_parts(arn: str) -> tuple[str, str]:
    """(region, name) of a flow definition ARN."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or not parts[5].startswith("flow-definition/") or not parts[3]:
        raise ConfigError(
            f"{arn!r} is not a flow definition ARN "
            "(arn:aws:sagemaker:REGION:ACCOUNT:flow-definition/NAME)"
        )
    return parts[3], parts[5].split("/", 1)[1]


def _price(config: Mapping[str, Any]) -> float | None:
    price = config.get("PublicWorkforceTaskPrice") or {}
    amount = price.get("AmountInUsd")
    if not amount:
        return None
    usd = (
        Decimal(int(amount.get("Dollars") or 0))
        + Decimal(int(amount.get("Cents") or 0)) / 100
        + Decimal(int(amount.get("TenthFractionsOfACent") or 0)) / 1000
    )
    return float(usd)


async def preflight(
    settings: SubmitSettings,
    *,
    session: Any | None = None,
    items: int | None,
    buckets: Collection[str],
    s3_client: Any | None = None,
    item_classifiers: Mapping[tuple[str, ...], int] | None = None,
    caller: Caller | None = None,
    flow_definition_arn: str | None = None,
) -> PreflightReport:
    """Run the checks for a job of `items` items reading from `buckets`; raise on refusal.

    `items` None (a manifest that cannot be read twice, such as stdin) skips the cost
    estimate.  `buckets` matter for Textract and Rekognition jobs only.
    `item_classifiers` counts the items by the content classifiers they set for
    themselves (the others use the job's).  S3 calls use `s3_client` when given, else a
    client of `session` at the S3 endpoint (see `AwsSettings.s3_endpoint_url`).  `caller`
    is the job's, so that preflight's calls share its meters; by default, one of its own.
    `flow_definition_arn` is the one of the job's flows to check, in a job of several (its
    calls are then made in its region); by default the job's only one, in the job's region.
    """
    if flow_definition_arn is None and len(settings.flow_definition_arns) > 1:
        raise ConfigError(
            f"preflight checks one flow definition at a time: pass "
            f"{setting('flow_definition_arn')}, one of the job's"
        )
    arn = flow_definition_arn or settings.flow_definition_arns[0]
    region, name = _arn_parts(arn)
    caller = caller or Caller(Meters(Counters()))
    warnings: list[str] = []
    async with AsyncExitStack() as stack:
        session = make_session(settings.aws, session)
        signed = region if flow_definition_arn is not None else None
        kwargs = client_kwargs(settings.aws, "sagemaker", _BUCKET_CONCURRENCY, region=signed)
        sagemaker = await open_client(stack, session, "sagemaker", kwargs)
        client_region = str(sagemaker.meta.region_name)
        if client_region != region:
            raise PreflightError(
                f"the flow definition {arn} is in region {region} "
                f"but the job would call region {client_region}: pass "
                f"{setting('region', region)} "
                "(the flow definition, the input buckets and a private work team must share "
                "one region)",
                code="RegionMismatch",
            )
        flow = await _describe_flow(caller, sagemaker, arn, name, region)
        _check_workforce(flow, settings, warnings, items, item_classifiers or {})
        checked: list[str] = []
        if settings.task is not TaskType.CUSTOM and buckets:
            if s3_client is None:
                s3_kwargs = client_kwargs(settings.aws, "s3", _BUCKET_CONCURRENCY)
                s3_client = await open_client(stack, session, "s3", s3_kwargs)
            checked = sorted(set(buckets))
            await _check_buckets(caller, s3_client, checked, region, warnings)
    cost = _estimate(flow, items, settings, warnings)
    return PreflightReport(flow, items, checked, cost, warnings)


async def _describe_flow(
    caller: Caller, sagemaker: Any, arn: str, name: str, region: str
) -> FlowDefinitionInfo:

    try:
        found: Mapping[str, Any] = await caller.call(
            "DescribeFlowDefinition", sagemaker.describe_flow_definition, FlowDefinitionName=name
        )
    except CallFailed as exc:
        if exc.error.code in _NOT_FOUND:
            raise PreflightError(
                f"the flow definition {arn} does not exist in region {region} for this "
                f"account: check {setting('flow_definition_arn')} (and {setting('region')} / "
                f"{setting('profile')}), or create "
                "the human review workflow first (SageMaker console > Augmented AI, or "
                "CreateFlowDefinition)",
                code=exc.error.code,
            ) from None
        raise PreflightError(
            f"cannot check the flow definition {arn}: {exc.error.code} {exc.error.message}; "
            f"fix that or skip the checks with {setting('preflight', False)}",
            code=exc.error.code,
        ) from None
    except PreflightError:
        raise
    except JobAborted as exc:
        raise PreflightError(
            f"cannot check the flow definition: {exc}; the checks need "
            f"sagemaker:DescribeFlowDefinition (or skip them with {setting('preflight', False)})",
            code=exc.code,
        ) from None
    status = str(found.get("FlowDefinitionStatus"))
    if status != "Active":
        reason = found.get("FailureReason")
        because = f" ({reason})" if reason else ""
        raise PreflightError(
            f"the flow definition {arn} is {status}{because}, not Active: no loop can start "
            "until it is; wait for it to become Active, or create a new one and pass its ARN",
            code="FlowDefinitionNotActive",
        )
    config = found.get("HumanLoopConfig") or {}
    workteam = config.get("WorkteamArn")
    output = found.get("OutputConfig") or {}
    count = config.get("TaskCount")
    return FlowDefinitionInfo(
        arn=str(found.get("FlowDefinitionArn") or arn),
        name=name,
        status=status,
        region=region,
        workteam_arn=workteam,
        public_workforce=isinstance(workteam, str) and PUBLIC_WORKTEAM_MARK in workteam,
        task_count=int(count) if count is not None else None,
        price_per_task=_price(config),
        output_path=output.get("S3OutputPath"),
    )


def _check_workforce(
    flow: FlowDefinitionInfo,
    settings: SubmitSettings,
    warnings: list[str],
    items: int | None,
    item_classifiers: Mapping[tuple[str, ...], int],
) -> None:
    if not flow.public_workforce:
        return
    own = sum(item_classifiers.values())
    without = sum(n for c, n in item_classifiers.items() if PII_FREE not in c)
    if without:
        raise PreflightError(
            f"the flow definition {flow.arn} sends tasks to the public Mechanical Turk "
            f"workforce, and {without} item(s) of the manifest set content_classifiers "
            f"without {PII_FREE}: A2I never sends such tasks there, so they would wait "
            f"unseen. Add {PII_FREE} to those items' content_classifiers if their data is "
            "free of personal information, or send them with a private work team",
            code="PublicWorkforceWithoutPiiClassifier",
        )
    job = tuple(settings.content_classifiers)
    # the classifier lists in use: the items' own, and the job's if any item goes without
    in_use = [*item_classifiers, job] if items is None or items > own else [*item_classifiers]
    if PII_FREE not in job and job in in_use:
        raise PreflightError(
            f"the flow definition {flow.arn} sends tasks to the public Mechanical Turk "
            f"workforce, and A2I sends them there only with the {PII_FREE} content "
            "classifier: without it every task would wait unseen. If the data is free of "
            f"personal information (PHI included), add {PII_FREE} to "
            f"{setting('content_classifiers')}; "
            "otherwise use a flow definition with a private or vendor work team",
            code="PublicWorkforceWithoutPiiClassifier",
        )
    if any(ADULT_FREE not in c for c in in_use):
        warnings.append(
            f"public workforce without the {ADULT_FREE} classifier: Mechanical Turk may "
            f"show the tasks to fewer workers; add {ADULT_FREE} to the content "
            "classifiers if the data is free of adult content"
        )


def _cors_fix(bucket: str) -> str:
    rules = orjson.dumps({"CORSRules": [A2I_CORS_RULE]}).decode()
    return f"aws s3api put-bucket-cors --bucket {bucket} --cors-configuration '{rules}'"


async def _check_buckets(
    caller: Caller, s3: Any, buckets: list[str], region: str, warnings: list[str]
) -> None:

    problems: list[str] = []

    async def check(bucket: str) -> None:
        try:
            location = await caller.call("GetBucketLocation", s3.get_bucket_location, Bucket=bucket)
            where = location.get("LocationConstraint") or "us-east-1"
            where = "eu-west-1" if where == "EU" else str(where)
            if where != region:
                problems.append(
                    f"bucket {bucket} is in region {where} but the flow definition is in "
                    f"{region}: A2I needs input buckets in the flow definition's region "
                    "(copy the objects to a bucket there)"
                )
                return
            cors = await caller.call("GetBucketCors", s3.get_bucket_cors, Bucket=bucket)
        except CallFailed as exc:
            code = exc.error.code
            if code == "NoSuchCORSConfiguration":
                problems.append(
                    f"bucket {bucket} has no CORS configuration, so the worker UI cannot load "
                    f"its objects and review tasks fail; add A2I's rule: {_cors_fix(bucket)}"
                )
            elif code == "NoSuchBucket":
                problems.append(f"bucket {bucket} does not exist (check the manifest)")
            else:
                warnings.append(f"cannot check bucket {bucket} ({code}); check it by hand")
            return
        except PreflightError:
            raise
        except JobAborted as exc:
            warnings.append(
                f"cannot check bucket {bucket} ({exc.code}): make sure it is in "
                f"{region} and has A2I's CORS rule"
            )
            return
        rules = cors.get("CORSRules") or []
        gets = [r for r in rules if "GET" in (r.get("AllowedMethods") or [])]
        if not gets:
            problems.append(
                f"bucket {bucket} has no CORS rule allowing GET, so the worker UI cannot load "
                f"its objects and review tasks fail; add A2I's rule: {_cors_fix(bucket)}"
            )
        elif not any("*" in (r.get("AllowedOrigins") or []) for r in gets):
            warnings.append(
                f"bucket {bucket}'s CORS rules allow GET only from some origins; A2I's "
                'worker UI needs any origin (AllowedOrigins ["*"])'
            )

    await fan_out(InFlightCap(_BUCKET_CONCURRENCY), buckets, check)
    if problems:
        shown = problems[:10]
        more = f" (and {len(problems) - 10} more buckets)" if len(problems) > 10 else ""
        raise PreflightError("; ".join(sorted(shown)) + more, code="InputBucket")


def _estimate(
    flow: FlowDefinitionInfo,
    items: int | None,
    settings: SubmitSettings,
    warnings: list[str],
) -> float | None:
    if items is None or flow.price_per_task is None:
        if settings.max_cost is not None and flow.public_workforce:
            warnings.append(
                "the cost cannot be estimated, so the cost limit (max_cost) was not applied"
            )
        return None
    workers = flow.task_count or 1
    cost = round(items * workers * flow.price_per_task, 3)
    if settings.max_cost is not None and cost > settings.max_cost and not settings.confirm_cost:
        raise PreflightError(
            f"the estimated labour cost is ${cost:,.2f} ({items} items x {workers} workers x "
            f"${flow.price_per_task:g} per task), above {setting('max_cost')} "
            f"${settings.max_cost:,.2f}; pass {setting('confirm_cost', True)} to accept it, or "
            f"raise {setting('max_cost')}",
            code="MaxCost",
        )
    return cost
