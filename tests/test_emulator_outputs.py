"""A completed loop's output.json in the emulator's S3, where and as A2I writes it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from a2ibatch.emulator import EmulatorConfig, serve
from test_emulator import A2I, FLOW, client, error_of, start_args
from test_emulator_builtin import loop_config

pytestmark = pytest.mark.anyio

PUBLIC_FLOW = FLOW.replace("reviews", "public-reviews")
DONE = {"complete_after": 0.0, "seed": 5}


async def read(s3: Any, uri: str) -> dict[str, Any]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    answer = await s3.get_object(Bucket=bucket, Key=key)
    assert answer["ContentType"] == "application/json"
    document: dict[str, Any] = orjson.loads(await answer["Body"].read())
    return document


def parse_time(text: str) -> datetime:
    assert text.endswith("Z") and len(text) == len("2020-09-28T19:17:59.880Z")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("emulator", [{"complete_after": 1.0, "seed": 5}], indirect=True)
async def test_a_completed_custom_loop_writes_output_json_where_describe_says(
    emulator: Any,
) -> None:
    content = {"claim": 17, "text": "water damage"}
    async with client(emulator.url, A2I) as a2i, client(emulator.url, "s3") as s3:
        await a2i.start_human_loop(**start_args("claim-17", content))
        with pytest.raises(s3.exceptions.NoSuchBucket):  # nothing is written before the end
            await s3.list_objects_v2(Bucket="a2i-output")
        await asyncio.sleep(1.1)
        # No A2I call in between: the S3 read itself finds the loop's time has come.
        listed = await s3.list_objects_v2(Bucket="a2i-output", Prefix="reviews/")
        described = await a2i.describe_human_loop(HumanLoopName="claim-17")
        assert described["HumanLoopStatus"] == "Completed"
        uri = described["HumanLoopOutput"]["OutputS3Uri"]
        stamp = described["CreationTime"].astimezone(UTC).strftime("%Y/%m/%d/%H/%M/%S")
        assert uri == f"s3://a2i-output/reviews/{stamp}/claim-17/output.json"
        assert [o["Key"] for o in listed["Contents"]] == [uri.removeprefix("s3://a2i-output/")]
        output = await read(s3, uri)
        location = await s3.get_bucket_location(Bucket="a2i-output")
    assert set(output) == {"flowDefinitionArn", "humanAnswers", "humanLoopName", "inputContent"}
    assert output["flowDefinitionArn"] == FLOW and output["humanLoopName"] == "claim-17"
    assert output["inputContent"] == content
    [answer] = output["humanAnswers"]  # a private team: TaskCount 1
    assert answer["answerContent"]["decision"] in ("approve", "reject")
    assert 0 <= answer["answerContent"]["confidence"] <= 1
    assert isinstance(answer["workerId"], str) and answer["workerId"]
    identity = answer["workerMetadata"]["identityData"]
    assert identity["identityProviderType"] == "Cognito"
    assert identity["issuer"].startswith("https://cognito-idp.us-east-1.amazonaws.com/us-east-1_")
    assert len(identity["sub"]) == 36
    created = described["CreationTime"]
    submitted = parse_time(answer["submissionTime"])
    assert parse_time(answer["acceptanceTime"]) <= submitted
    assert abs((submitted - created).total_seconds() - 1.0) < 0.01  # the last answer ends it
    assert location["LocationConstraint"] is None


@pytest.mark.parametrize("emulator", [DONE], indirect=True)
async def test_a_public_workforce_answers_three_times(emulator: Any) -> None:
    async with client(emulator.url, A2I) as a2i, client(emulator.url, "s3") as s3:
        await a2i.start_human_loop(**start_args("crowd-1", flow=PUBLIC_FLOW))
        described = await a2i.describe_human_loop(HumanLoopName="crowd-1")
        output = await read(s3, described["HumanLoopOutput"]["OutputS3Uri"])
    answers = output["humanAnswers"]
    assert len(answers) == 3  # the public workforce's TaskCount
    assert len({a["workerId"] for a in answers}) == 3
    assert all("workerMetadata" not in a for a in answers)  # only private workers carry it


@pytest.mark.parametrize(
    "emulator", [{**DONE, "failure_rate": 1.0}, {"stopping_seconds": 0.0}], indirect=True
)
async def test_failed_and_stopped_loops_write_nothing(emulator: Any) -> None:
    async with client(emulator.url, A2I) as a2i, client(emulator.url, "s3") as s3:
        await s3.create_bucket(Bucket="a2i-output")
        await a2i.start_human_loop(**start_args("not-reviewed"))
        if emulator.config.complete_after is None:
            await a2i.stop_human_loop(HumanLoopName="not-reviewed")
        status = (await a2i.describe_human_loop(HumanLoopName="not-reviewed"))["HumanLoopStatus"]
        assert status in ("Failed", "Stopped")
        assert (await s3.list_objects_v2(Bucket="a2i-output")).get("Contents") is None


@pytest.mark.parametrize("emulator", [{**DONE, "activation_rate": 1.0}], indirect=True)
async def test_built_in_task_outputs_carry_the_service_request_and_response(
    emulator: Any,
) -> None:
    textract_flow = FLOW.replace("reviews", "textract-forms")
    rekognition_flow = FLOW.replace("reviews", "rekognition-images")
    async with (
        client(emulator.url, A2I) as a2i,
        client(emulator.url, "textract") as tx,
        client(emulator.url, "rekognition") as rk,
        client(emulator.url, "s3") as s3,
    ):
        await tx.analyze_document(
            Document={"S3Object": {"Bucket": "scans", "Name": "form-1.png"}},
            FeatureTypes=["FORMS", "TABLES"],
            HumanLoopConfig=loop_config(
                "tx-1",
                textract_flow,
                DataAttributes={"ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation"]},
            ),
        )
        await rk.detect_moderation_labels(
            Image={"S3Object": {"Bucket": "uploads", "Name": "cat.jpg"}},
            HumanLoopConfig=loop_config("rk-1", rekognition_flow),
        )
        outputs = {}
        for name in ("tx-1", "rk-1"):
            described = await a2i.describe_human_loop(HumanLoopName=name)
            outputs[name] = await read(s3, described["HumanLoopOutput"]["OutputS3Uri"])

    textract, rekognition = outputs["tx-1"], outputs["rk-1"]
    for output, source in (
        (textract, "AWS/Textract/AnalyzeDocument/Forms/V1"),
        (rekognition, "AWS/Rekognition/DetectModerationLabels/Image/V3"),
    ):
        assert output["awsManagedHumanLoopRequestSource"] == source
        assert set(output["inputContent"]) == {
            "aiServiceRequest",
            "aiServiceResponse",
            "humanTaskActivationConditionResults",
            "selectedAiServiceResponse",
        }
        conditions = output["inputContent"]["humanTaskActivationConditionResults"]["Conditions"]
        assert conditions[0]["EvaluationResult"] is True
        [answer] = output["humanAnswers"]
        assert list(answer["answerContent"]) == [source]

    request = textract["inputContent"]["aiServiceRequest"]
    assert request["document"] == {"s3Object": {"bucket": "scans", "name": "form-1.png"}}
    assert request["featureTypes"] == ["FORMS", "TABLES"]
    assert request["humanLoopConfig"] == {
        "humanLoopName": "tx-1",
        "flowDefinitionArn": textract_flow,
        "dataAttributes": {"contentClassifiers": ["FreeOfPersonallyIdentifiableInformation"]},
    }
    response = textract["inputContent"]["aiServiceResponse"]
    assert response["documentMetadata"] == {"pages": 1}
    assert {b["blockType"] for b in response["blocks"]} >= {"PAGE", "KEY_VALUE_SET", "TABLE"}
    selected = textract["inputContent"]["selectedAiServiceResponse"]["blocks"]
    assert {b["blockType"] for b in selected} == {"KEY_VALUE_SET", "WORD"}
    answer_content = textract["humanAnswers"][0]["answerContent"]
    corrected = answer_content["AWS/Textract/AnalyzeDocument/Forms/V1"]["blocks"]
    assert corrected and all(b["confidence"] == 100.0 for b in corrected)
    handwritten = [b for b in corrected if b.get("textType") == "HANDWRITING"]
    assert handwritten and "Doe" in handwritten[0]["text"]  # the reviewer's reading

    assert rekognition["inputContent"]["aiServiceRequest"]["image"] == {
        "s3Object": {"bucket": "uploads", "name": "cat.jpg"}
    }
    labels = rekognition["inputContent"]["aiServiceResponse"]["moderationLabels"]
    assert labels and all({"name", "confidence", "parentName"} <= set(x) for x in labels)
    chosen = rekognition["humanAnswers"][0]["answerContent"][
        "AWS/Rekognition/DetectModerationLabels/Image/V3"
    ]["moderationLabels"]
    assert chosen and {x["name"] for x in chosen} <= {x["name"] for x in labels}


async def test_the_answers_are_the_seeds_and_the_loops() -> None:
    """Two emulators with one seed review alike; another seed reviews otherwise."""

    async def review(seed: int) -> list[Any]:
        results = []
        async with (
            serve(EmulatorConfig(complete_after=0.0, seed=seed)) as emulator,
            client(emulator.url, A2I) as a2i,
            client(emulator.url, "s3") as s3,
        ):
            for i in range(4):
                await a2i.start_human_loop(**start_args(f"same-{i}", flow=PUBLIC_FLOW))
                described = await a2i.describe_human_loop(HumanLoopName=f"same-{i}")
                output = await read(s3, described["HumanLoopOutput"]["OutputS3Uri"])
                results.append(
                    [(a["workerId"], a["answerContent"]) for a in output["humanAnswers"]]
                )
        return results

    first, again, other = await review(1), await review(1), await review(2)
    assert first == again
    assert first != other


@pytest.mark.parametrize("emulator", [{**DONE, "output_bucket": "eu-reviews"}], indirect=True)
async def test_the_output_bucket_is_made_in_the_flow_definitions_region(emulator: Any) -> None:
    eu_flow = FLOW.replace("us-east-1", "eu-west-1")
    async with (
        client(emulator.url, A2I, region="eu-west-1") as a2i,
        client(emulator.url, "s3", region="eu-west-1") as s3,
    ):
        names = [f"eu-{i}" for i in range(30)]
        for name in names:
            await a2i.start_human_loop(**start_args(name, flow=eu_flow))
        await a2i.delete_human_loop(HumanLoopName="eu-0")  # its output stays, as in A2I
        paginator = s3.get_paginator("list_objects_v2")
        keys = [
            o["Key"]
            async for page in paginator.paginate(
                Bucket="eu-reviews", Prefix="reviews/", PaginationConfig={"PageSize": 7}
            )
            for o in page["Contents"]
        ]
        location = await s3.get_bucket_location(Bucket="eu-reviews")
    assert sorted(k.split("/")[-2] for k in keys) == sorted(names)
    assert location["LocationConstraint"] == "eu-west-1"
    async with client(emulator.url, "s3") as s3:  # nothing went to the default bucket
        with pytest.raises(s3.exceptions.ClientError) as caught:
            await s3.head_object(Bucket="a2i-output", Key=keys[0])
    assert error_of(caught.value)[1] == 404
