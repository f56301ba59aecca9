"""Regions: every call is answered in the region of its signature, over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from test_emulator import A2I, FLOW, client, error_of, get, start_args
from test_emulator_builtin import loop_config

pytestmark = pytest.mark.anyio

EU = "eu-west-1"
EU_FLOW = FLOW.replace("us-east-1", EU)


async def test_loops_are_unique_per_region_and_seen_only_there(emulator: Any) -> None:
    async with client(emulator.url, A2I) as east, client(emulator.url, A2I, region=EU) as eu:
        first = await east.start_human_loop(**start_args("shared-name"))
        second = await eu.start_human_loop(**start_args("shared-name", flow=EU_FLOW))
        assert first["HumanLoopArn"].split(":")[3] == "us-east-1"
        assert second["HumanLoopArn"].split(":")[3] == EU
        await eu.start_human_loop(**start_args("only-in-eu", flow=EU_FLOW))

        with pytest.raises(east.exceptions.ResourceNotFoundException):
            await east.describe_human_loop(HumanLoopName="only-in-eu")
        with pytest.raises(east.exceptions.ResourceNotFoundException):
            await east.stop_human_loop(HumanLoopName="only-in-eu")
        with pytest.raises(east.exceptions.ResourceNotFoundException):
            await east.delete_human_loop(HumanLoopName="only-in-eu")
        described = await eu.describe_human_loop(HumanLoopName="shared-name")
        assert described["HumanLoopArn"] == second["HumanLoopArn"]
        assert described["FlowDefinitionArn"] == EU_FLOW

        await eu.stop_human_loop(HumanLoopName="shared-name")
        assert (await east.describe_human_loop(HumanLoopName="shared-name"))[
            "HumanLoopStatus"
        ] == "InProgress"
        listed = await eu.list_human_loops(FlowDefinitionArn=EU_FLOW)
        assert [s["HumanLoopName"] for s in listed["HumanLoopSummaries"]] == [
            "shared-name",
            "only-in-eu",
        ]
        # A flow definition of another region does not exist in this one.
        with pytest.raises(east.exceptions.ResourceNotFoundException) as caught:
            await east.list_human_loops(FlowDefinitionArn=EU_FLOW)
        assert EU in caught.value.response["Error"]["Message"]
        with pytest.raises(east.exceptions.ResourceNotFoundException):
            await east.list_human_loops(FlowDefinitionArn=FLOW.replace("reviews", "missing-x"))

    loops = await get(emulator.url, "/_emulator/loops")
    assert [(x["name"], x["region"]) for x in loops] == [
        ("shared-name", "us-east-1"),
        ("shared-name", EU),
        ("only-in-eu", EU),
    ]
    stats = await get(emulator.url, "/_emulator/stats")  # the figures stay global
    assert stats["loops_created"] == 3 and stats["in_progress"] == 2


async def test_a_flow_definition_of_another_region_is_refused(emulator: Any) -> None:
    async with (
        client(emulator.url, A2I) as a2i,
        client(emulator.url, "textract") as tx,
        client(emulator.url, "rekognition") as rk,
    ):
        with pytest.raises(a2i.exceptions.ValidationException) as caught:
            await a2i.start_human_loop(**start_args("abroad", flow=EU_FLOW))
        assert error_of(caught.value) == ("ValidationException", 400)
        messages = [caught.value.response["Error"]["Message"]]
        with pytest.raises(tx.exceptions.InvalidParameterException) as caught:
            await tx.analyze_document(
                Document={"S3Object": {"Bucket": "scans", "Name": "a.png"}},
                FeatureTypes=["FORMS"],
                HumanLoopConfig=loop_config("abroad", EU_FLOW),
            )
        messages.append(caught.value.response["Error"]["Message"])
        with pytest.raises(rk.exceptions.InvalidParameterException) as caught:
            await rk.detect_moderation_labels(
                Image={"S3Object": {"Bucket": "uploads", "Name": "a.jpg"}},
                HumanLoopConfig=loop_config("abroad", EU_FLOW),
            )
        messages.append(caught.value.response["Error"]["Message"])
    for message in messages:
        assert EU in message and "us-east-1" in message and "region" in message
    assert (await get(emulator.url, "/_emulator/stats"))["loops_created"] == 0


@pytest.mark.parametrize("emulator", [{"max_in_progress": 1}], indirect=True)
async def test_the_in_progress_cap_is_per_region(emulator: Any) -> None:
    async with client(emulator.url, A2I) as east, client(emulator.url, A2I, region=EU) as eu:
        await east.start_human_loop(**start_args("east-1"))
        with pytest.raises(east.exceptions.ServiceQuotaExceededException):
            await east.start_human_loop(**start_args("east-2"))
        await eu.start_human_loop(**start_args("eu-1", flow=EU_FLOW))


async def test_flow_definitions_are_described_in_the_calls_region(emulator: Any) -> None:
    for region in ("us-east-1", EU, "ap-southeast-2"):
        async with client(emulator.url, "sagemaker", region=region) as sm:
            described = await sm.describe_flow_definition(FlowDefinitionName="reviews")
        assert described["FlowDefinitionArn"].split(":")[3] == region
        assert described["HumanLoopConfig"]["WorkteamArn"].split(":")[3] == region


async def test_an_input_bucket_in_another_region_cannot_be_read(emulator: Any) -> None:
    """A bucket the emulator's S3 holds elsewhere is refused; an unknown bucket is virtual."""
    async with (
        client(emulator.url, "s3", region=EU) as s3,
        client(emulator.url, "textract") as tx,
        client(emulator.url, "rekognition") as rk,
        client(emulator.url, "textract", region=EU) as tx_eu,
    ):
        await s3.create_bucket(
            Bucket="eu-scans", CreateBucketConfiguration={"LocationConstraint": EU}
        )
        abroad = {"S3Object": {"Bucket": "eu-scans", "Name": "form.png"}}
        with pytest.raises(tx.exceptions.InvalidS3ObjectException) as caught:
            await tx.analyze_document(Document=abroad, FeatureTypes=["FORMS"])
        assert error_of(caught.value) == ("InvalidS3ObjectException", 400)
        assert caught.value.response["Error"]["Message"] == (
            "Unable to get object metadata from S3. Check object key, region and/or access "
            "permissions."
        )
        with pytest.raises(rk.exceptions.InvalidS3ObjectException):
            await rk.detect_moderation_labels(
                Image=abroad, HumanLoopConfig=loop_config("never", FLOW)
            )
        # In its own region the bucket is read (virtually) as before...
        await tx_eu.analyze_document(Document=abroad, FeatureTypes=["FORMS"])
        # ...and a bucket the emulator's S3 does not hold is a virtual input anywhere.
        await tx.analyze_document(
            Document={"S3Object": {"Bucket": "nowhere", "Name": "x.png"}}, FeatureTypes=["FORMS"]
        )
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 0 and stats["calls"]["AnalyzeDocument"] == 3
