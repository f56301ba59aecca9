"""Per-operation rate quotas and the Service Quotas API that tells them, over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from a2ibatch.emulator._service_quotas import UNLIMITED_RATE
from test_emulator import A2I, FLOW, client, error_of, get, post, start_args

pytestmark = pytest.mark.anyio

SQ = "service-quotas"


def by_operation(quotas: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {q["UsageMetric"]["MetricDimensions"]["Resource"]: q for q in quotas}


@pytest.mark.parametrize(
    "emulator", [{"quota": 20.0, "quotas": {"AnalyzeDocument": 7.5}}], indirect=True
)
async def test_service_quotas_tell_the_rates_the_buckets_enforce(emulator: Any) -> None:
    async with client(emulator.url, SQ, region="eu-west-1") as sq:
        textract = (await sq.list_service_quotas(ServiceCode="textract"))["Quotas"]
        rekognition = (await sq.list_service_quotas(ServiceCode="rekognition"))["Quotas"]
        paginator = sq.get_paginator("list_service_quotas")
        sagemaker = [
            q
            async for page in paginator.paginate(
                ServiceCode="sagemaker", PaginationConfig={"PageSize": 4}
            )
            for q in page["Quotas"]
        ]
        start = by_operation(sagemaker)["StartHumanLoop"]
        got = await sq.get_service_quota(ServiceCode="sagemaker", QuotaCode=start["QuotaCode"])
        with pytest.raises(sq.exceptions.NoSuchResourceException):
            await sq.list_service_quotas(ServiceCode="no-such-service")
        with pytest.raises(sq.exceptions.NoSuchResourceException):
            await sq.get_service_quota(ServiceCode="textract", QuotaCode="L-00000000")

    [analyze] = textract
    assert analyze["ServiceCode"] == "textract" and analyze["ServiceName"] == "Amazon Textract"
    assert analyze["Value"] == 7.5  # the per-operation override
    assert analyze["Unit"] == "None"
    assert analyze["Period"] == {"PeriodValue": 1, "PeriodUnit": "SECOND"}
    assert analyze["QuotaArn"] == (
        f"arn:aws:servicequotas:eu-west-1:123456789012:textract/{analyze['QuotaCode']}"
    )
    assert "AnalyzeDocument" in analyze["QuotaName"]
    assert by_operation(rekognition)["DetectModerationLabels"]["Value"] == 20.0
    assert set(by_operation(sagemaker)) == {
        "StartHumanLoop",
        "DescribeHumanLoop",
        "ListHumanLoops",
        "StopHumanLoop",
        "DeleteHumanLoop",
        "DescribeFlowDefinition",
    }
    assert all(q["Value"] == 20.0 for q in sagemaker)
    assert got["Quota"] == start
    codes = [q["QuotaCode"] for q in (*textract, *rekognition, *sagemaker)]
    assert len(set(codes)) == len(codes)


async def test_an_unlimited_emulator_shows_a_large_quota(emulator: Any) -> None:
    async with client(emulator.url, SQ) as sq:
        quotas = (await sq.list_service_quotas(ServiceCode="rekognition"))["Quotas"]
    assert [q["Value"] for q in quotas] == [UNLIMITED_RATE]


@pytest.mark.parametrize("emulator", [{"service_quotas_access": "deny"}], indirect=True)
async def test_service_quotas_can_be_denied(emulator: Any) -> None:
    async with client(emulator.url, SQ) as sq:
        with pytest.raises(sq.exceptions.AccessDeniedException) as caught:
            await sq.list_service_quotas(ServiceCode="textract")
        assert error_of(caught.value) == ("AccessDeniedException", 400)
        with pytest.raises(sq.exceptions.AccessDeniedException):
            await sq.get_service_quota(ServiceCode="textract", QuotaCode="L-E0D942BC")
    status, _ = await post(emulator.url, "/_emulator/config", {"service_quotas_access": "allow"})
    assert status == 200
    async with client(emulator.url, SQ) as sq:
        assert (await sq.list_service_quotas(ServiceCode="textract"))["Quotas"]


@pytest.mark.parametrize(
    "emulator", [{"quotas": {"ListHumanLoops": 0.5, "GetServiceQuota": 0.5}, "burst": 1}],
    indirect=True,
)  # fmt: skip
async def test_a_per_operation_quota_limits_only_its_operation(emulator: Any) -> None:
    async with client(emulator.url, A2I) as a2i, client(emulator.url, SQ) as sq:
        for i in range(3):  # no shared quota: unlimited
            await a2i.start_human_loop(**start_args(f"free-{i}"))
        await a2i.list_human_loops(FlowDefinitionArn=FLOW)
        with pytest.raises(a2i.exceptions.ThrottlingException):
            await a2i.list_human_loops(FlowDefinitionArn=FLOW)
        await a2i.describe_human_loop(HumanLoopName="free-0")
        await sq.get_service_quota(ServiceCode="textract", QuotaCode="L-E0D942BC")
        with pytest.raises(sq.exceptions.TooManyRequestsException):
            await sq.get_service_quota(ServiceCode="textract", QuotaCode="L-E0D942BC")
        listed = by_operation((await sq.list_service_quotas(ServiceCode="sagemaker"))["Quotas"])
    assert listed["ListHumanLoops"]["Value"] == 0.5
    assert listed["StartHumanLoop"]["Value"] == UNLIMITED_RATE
    buckets = (await get(emulator.url, "/_emulator/quotas"))["us-east-1"]
    assert set(buckets) == {"ListHumanLoops", "GetServiceQuota"}
    assert buckets["ListHumanLoops"]["throttled"] == 1


@pytest.mark.parametrize("emulator", [{"quota": 0.5, "burst": 1}], indirect=True)
async def test_quotas_change_at_run_time_and_are_per_region(emulator: Any) -> None:
    async with (
        client(emulator.url, A2I) as east,
        client(emulator.url, A2I, region="eu-west-1") as eu,
    ):
        await east.start_human_loop(**start_args("east-1"))
        with pytest.raises(east.exceptions.ThrottlingException):
            await east.start_human_loop(**start_args("east-2"))
        eu_flow = FLOW.replace("us-east-1", "eu-west-1")
        await eu.start_human_loop(**start_args("eu-1", flow=eu_flow))  # its own buckets
        status, config = await post(
            emulator.url, "/_emulator/config", {"quotas": {"StartHumanLoop": 1e6}}
        )
        assert status == 200 and config["quotas"] == {"StartHumanLoop": 1e6}
        for i in range(3):
            await east.start_human_loop(**start_args(f"east-more-{i}"))
    for bad in (
        {"quotas": {"NoSuchOperation": 1}},
        {"quotas": {"StartHumanLoop": 0}},
        {"quotas": 3},
    ):
        status, answer = await post(emulator.url, "/_emulator/config", bad)
        assert status == 400 and answer["error"]
    buckets = await get(emulator.url, "/_emulator/quotas")
    assert buckets["us-east-1"]["StartHumanLoop"]["rate"] == 1e6
    assert buckets["eu-west-1"]["StartHumanLoop"]["rate"] == 1e6
