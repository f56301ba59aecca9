"""The emulator's Textract, Rekognition and SageMaker APIs, and the wire protocols they use."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from test_emulator import A2I, FLOW, client, error_of, get, start_args

pytestmark = pytest.mark.anyio

NAME_IN_USE = (
    "HumanLoop '{}' already exists and is finished. To start a new HumanLoop, you can try "
    "your request again with a different HumanLoopName"
)


def document(key: str, version: str | None = None) -> dict[str, Any]:
    obj = {"Bucket": "scans", "Name": key}
    if version:
        obj["Version"] = version
    return {"S3Object": obj}


def loop_config(name: str, flow: str = FLOW, **extra: Any) -> dict[str, Any]:
    return {"HumanLoopName": name, "FlowDefinitionArn": flow, **extra}


async def analyze(tx: Any, key: str, name: str | None = None, **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"Document": document(key), "FeatureTypes": ["FORMS", "TABLES"]}
    if name:
        args["HumanLoopConfig"] = loop_config(name)
    args.update(kwargs)
    response: dict[str, Any] = await tx.analyze_document(**args)
    return response


# -- Textract -------------------------------------------------------------------------------


@pytest.mark.parametrize("emulator", [{"activation_rate": 0.5, "seed": 3}], indirect=True)
async def test_textract_starts_a_loop_only_when_activation_holds(emulator: Any) -> None:
    async with client(emulator.url, "textract") as tx, client(emulator.url, A2I) as a2i:
        answers = {i: await analyze(tx, f"doc-{i}.png", f"tx-{i}") for i in range(40)}
        activated = {
            i for i, r in answers.items() if "HumanLoopArn" in r["HumanLoopActivationOutput"]
        }
        assert 8 < len(activated) < 32  # both kinds, near the rate
        for i, response in answers.items():
            output = response["HumanLoopActivationOutput"]
            evaluation = orjson.loads(output["HumanLoopActivationConditionsEvaluationResults"])
            assert evaluation["Conditions"][0]["EvaluationResult"] is (i in activated)
            if i in activated:
                assert output["HumanLoopActivationReasons"] == ["ConditionsEvaluation"]
                assert output["HumanLoopArn"].endswith(f":human-loop/tx-{i}")
                described = await a2i.describe_human_loop(HumanLoopName=f"tx-{i}")
                assert described["HumanLoopStatus"] == "InProgress"
            else:
                assert "HumanLoopActivationReasons" not in output
                with pytest.raises(a2i.exceptions.ResourceNotFoundException):
                    await a2i.describe_human_loop(HumanLoopName=f"tx-{i}")
        # The decision depends on the document and the seed only: a rerun agrees.
        again = {
            i
            for i in range(40)
            if "HumanLoopArn"
            in (await analyze(tx, f"doc-{i}.png", f"rerun-{i}"))["HumanLoopActivationOutput"]
        }
        assert again == activated
    loops = await get(emulator.url, "/_emulator/loops")
    assert {loop["task"] for loop in loops} == {"textract"}
    assert loops[0]["s3"] == {"Bucket": "scans", "Name": f"doc-{min(activated)}.png"}
    assert "input_content" not in loops[0]
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["inputs"] == len(activated)
    assert stats["inputs_with_multiple_loops"] == len(activated)  # the rerun doubled them
    assert stats["not_activated"] == 2 * (40 - len(activated))


async def test_textract_answers_plausible_blocks(emulator: Any) -> None:
    async with client(emulator.url, "textract") as tx:
        response = await analyze(tx, "form.png")
        forms_only = await analyze(tx, "form.png", FeatureTypes=["FORMS"])
    assert "HumanLoopActivationOutput" not in response  # no HumanLoopConfig, no loop
    assert response["DocumentMetadata"] == {"Pages": 1}
    assert response["AnalyzeDocumentModelVersion"]
    blocks = response["Blocks"]
    kinds = {b["BlockType"] for b in blocks}
    assert {"PAGE", "LINE", "WORD", "KEY_VALUE_SET", "TABLE", "CELL"} <= kinds
    assert "TABLE" not in {b["BlockType"] for b in forms_only["Blocks"]}
    ids = {b["Id"] for b in blocks}
    for block in blocks:
        assert 0 <= block["Confidence"] <= 100
        assert set(block["Geometry"]) == {"BoundingBox", "Polygon"}
        for relation in block.get("Relationships", []):
            assert set(relation["Ids"]) <= ids
    entity_types = {b["EntityTypes"][0] for b in blocks if b["BlockType"] == "KEY_VALUE_SET"}
    assert entity_types == {"KEY", "VALUE"}
    assert (await get(emulator.url, "/_emulator/stats"))["loops_created"] == 0


@pytest.mark.parametrize("emulator", [{"activation_rate": 1.0}], indirect=True)
async def test_textract_refuses_a_name_in_use_with_the_services_message(emulator: Any) -> None:
    async with client(emulator.url, "textract") as tx, client(emulator.url, A2I) as a2i:
        await a2i.start_human_loop(**start_args("shared"))
        await analyze(tx, "a.png", "mine")
        for name in ("mine", "shared"):
            with pytest.raises(tx.exceptions.InvalidParameterException) as caught:
                await analyze(tx, "b.png", name)
            assert caught.value.response["Error"]["Message"] == NAME_IN_USE.format(name)
            assert error_of(caught.value) == ("InvalidParameterException", 400)
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["name_conflicts"] == 2 and stats["loops_created"] == 2


INVALID_ANALYSES: dict[str, dict[str, Any]] = {
    "unknown feature type": {"FeatureTypes": ["PICTURES"]},
    "no feature types": {"FeatureTypes": []},
    "no S3 object": {"Document": {}},
    "loop name with capitals": {"HumanLoopConfig": loop_config("Capital")},
    "flow ARN malformed": {"HumanLoopConfig": loop_config("ok", "arn:nope")},
    "flow definition missing": {
        "HumanLoopConfig": loop_config("ok", FLOW.replace("reviews", "missing-x"))
    },
    "flow definition failed": {
        "HumanLoopConfig": loop_config("ok", FLOW.replace("reviews", "failed-x"))
    },
    "unknown content classifier": {
        "HumanLoopConfig": loop_config("ok", DataAttributes={"ContentClassifiers": ["Nope"]})
    },
}


@pytest.mark.parametrize("change", INVALID_ANALYSES.values(), ids=INVALID_ANALYSES.keys())
async def test_textract_refuses_invalid_parameters(emulator: Any, change: dict[str, Any]) -> None:
    async with client(emulator.url, "textract", parameter_validation=False) as tx:
        with pytest.raises(tx.exceptions.InvalidParameterException) as caught:
            await analyze(tx, "doc.png", **change)
    if "HumanLoopConfig" in change and "-x" in change["HumanLoopConfig"]["FlowDefinitionArn"]:
        assert "flow definition" in caught.value.response["Error"]["Message"]


# -- Rekognition ----------------------------------------------------------------------------


@pytest.mark.parametrize("emulator", [{"activation_rate": 1.0}], indirect=True)
async def test_rekognition_labels_loops_and_errors(emulator: Any) -> None:
    image = {"S3Object": {"Bucket": "uploads", "Name": "cat.jpg", "Version": "v2"}}
    async with client(emulator.url, "rekognition") as rk:
        response = await rk.detect_moderation_labels(
            Image=image, HumanLoopConfig=loop_config("rk-1")
        )
        labels = response["ModerationLabels"]
        assert labels and response["ModerationModelVersion"]
        assert {label["ParentName"] for label in labels} == {"", labels[0]["Name"]}
        assert all(0 <= label["Confidence"] <= 100 for label in labels)
        output = response["HumanLoopActivationOutput"]
        assert output["HumanLoopArn"].endswith(":human-loop/rk-1")
        assert output["HumanLoopActivationReasons"] == ["ConditionsEvaluation"]
        confident = await rk.detect_moderation_labels(Image=image, MinConfidence=95)
        assert confident["ModerationLabels"] == []
        assert "HumanLoopActivationOutput" not in confident

        with pytest.raises(rk.exceptions.InvalidParameterException) as caught:
            await rk.detect_moderation_labels(Image=image, HumanLoopConfig=loop_config("rk-1"))
        assert caught.value.response["Error"]["Message"] == NAME_IN_USE.format("rk-1")
        missing = FLOW.replace("reviews", "missing-flow")
        with pytest.raises(rk.exceptions.ResourceNotFoundException) as caught:
            await rk.detect_moderation_labels(
                Image=image, HumanLoopConfig=loop_config("rk-2", missing)
            )
        assert "does not exist" in caught.value.response["Error"]["Message"]
    loops = await get(emulator.url, "/_emulator/loops")
    assert [(x["task"], x["s3"]["Version"]) for x in loops] == [("rekognition", "v2")]


# -- quotas and errors shared by the built-in task types ------------------------------------


@pytest.mark.parametrize(
    "emulator", [{"max_in_progress": 1, "activation_rate": 1.0}], indirect=True
)
async def test_the_in_progress_cap_answers_each_services_quota_error(emulator: Any) -> None:
    async with (
        client(emulator.url, A2I) as a2i,
        client(emulator.url, "textract") as tx,
        client(emulator.url, "rekognition") as rk,
    ):
        await a2i.start_human_loop(**start_args("first"))
        with pytest.raises(a2i.exceptions.ServiceQuotaExceededException) as caught:
            await a2i.start_human_loop(**start_args("second"))
        assert error_of(caught.value) == ("ServiceQuotaExceededException", 402)
        with pytest.raises(tx.exceptions.HumanLoopQuotaExceededException) as caught:
            await analyze(tx, "x.png", "third")
        for field in ("ResourceType", "QuotaCode", "ServiceCode"):
            assert caught.value.response[field]
        with pytest.raises(rk.exceptions.HumanLoopQuotaExceededException):
            await rk.detect_moderation_labels(
                Image={"S3Object": {"Bucket": "img", "Name": "y.jpg"}},
                HumanLoopConfig=loop_config("fourth"),
            )
        await a2i.stop_human_loop(HumanLoopName="first")  # frees the slot
        await analyze(tx, "x.png", "third")
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["quota_refusals"] == 3 and stats["in_progress"] == 1


@pytest.mark.parametrize(
    ("emulator", "code"),
    [
        ({"quota": 1.0, "burst": 1}, "ProvisionedThroughputExceededException"),
        ({"quota": 1.0, "burst": 1, "throttle_code": "ThrottlingException"}, "ThrottlingException"),
    ],
    indirect=["emulator"],
)
async def test_builtin_throttling_uses_the_configured_code(emulator: Any, code: str) -> None:
    async with client(emulator.url, "textract") as tx, client(emulator.url, "rekognition") as rk:
        await analyze(tx, "a.png")
        with pytest.raises(getattr(tx.exceptions, code)):
            await analyze(tx, "a.png")
        image = {"S3Object": {"Bucket": "img", "Name": "y.jpg"}}
        await rk.detect_moderation_labels(Image=image)  # a bucket per operation
        with pytest.raises(getattr(rk.exceptions, code)):
            await rk.detect_moderation_labels(Image=image)


@pytest.mark.parametrize("emulator", [{"fault_rate": 1.0}], indirect=True)
async def test_faults_answer_each_services_server_error(emulator: Any) -> None:
    async with (
        client(emulator.url, A2I) as a2i,
        client(emulator.url, "textract") as tx,
        client(emulator.url, "rekognition") as rk,
    ):
        with pytest.raises(a2i.exceptions.InternalServerException) as caught:
            await a2i.start_human_loop(**start_args("x"))
        assert error_of(caught.value) == ("InternalServerException", 500)
        with pytest.raises(tx.exceptions.InternalServerError):
            await analyze(tx, "a.png", "y")
        with pytest.raises(rk.exceptions.InternalServerError):
            await rk.detect_moderation_labels(Image={"S3Object": {"Bucket": "img", "Name": "y"}})
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["faults"] == 3 and stats["loops_created"] == 0


async def test_builtin_services_refuse_magic_keys(emulator: Any) -> None:
    async with client(emulator.url, "textract", key="denied") as tx:
        with pytest.raises(tx.exceptions.AccessDeniedException):
            await analyze(tx, "a.png", "x")
    async with client(emulator.url, "rekognition", key="denied") as rk:
        with pytest.raises(rk.exceptions.AccessDeniedException):
            await rk.detect_moderation_labels(Image={"S3Object": {"Bucket": "img", "Name": "y"}})
    async with client(emulator.url, "sagemaker", key="unknown") as sm:
        with pytest.raises(sm.exceptions.ClientError) as caught:
            await sm.describe_flow_definition(FlowDefinitionName="reviews")
        assert error_of(caught.value) == ("UnrecognizedClientException", 403)


@pytest.mark.parametrize("emulator", [{"not_a2i_customer": True}], indirect=True)
async def test_builtin_services_refuse_an_account_a2i_no_longer_accepts(emulator: Any) -> None:
    async with client(emulator.url, "textract") as tx:
        await analyze(tx, "a.png")  # analysis alone still works
        with pytest.raises(tx.exceptions.InvalidParameterException) as caught:
            await analyze(tx, "a.png", "x")
    assert "no longer accepts new customers" in caught.value.response["Error"]["Message"]


# -- SageMaker DescribeFlowDefinition -------------------------------------------------------


async def test_flow_definitions_follow_the_naming_convention(emulator: Any) -> None:
    async with client(emulator.url, "sagemaker", region="eu-west-1") as sm:
        private = await sm.describe_flow_definition(FlowDefinitionName="reviews")
        public = await sm.describe_flow_definition(FlowDefinitionName="public-reviews")
        failed = await sm.describe_flow_definition(FlowDefinitionName="failed-reviews")
        textract = await sm.describe_flow_definition(FlowDefinitionName="textract-forms")
        with pytest.raises(sm.exceptions.ResourceNotFound):
            await sm.describe_flow_definition(FlowDefinitionName="missing-reviews")

    assert private["FlowDefinitionArn"] == (
        "arn:aws:sagemaker:eu-west-1:123456789012:flow-definition/reviews"
    )
    assert private["FlowDefinitionStatus"] == "Active"
    human = private["HumanLoopConfig"]
    assert human["WorkteamArn"] == (
        "arn:aws:sagemaker:eu-west-1:123456789012:workteam/private-crowd/reviewers"
    )
    assert human["TaskCount"] == 1 and "PublicWorkforceTaskPrice" not in human
    assert private["OutputConfig"]["S3OutputPath"] == "s3://a2i-output"
    assert private["RoleArn"].startswith("arn:aws:iam::123456789012:role/")
    assert private["CreationTime"].year == 2024
    assert "HumanLoopRequestSource" not in private

    public_human = public["HumanLoopConfig"]
    assert public_human["WorkteamArn"] == (
        "arn:aws:sagemaker:eu-west-1:394669845002:workteam/public-crowd/default"
    )
    assert public_human["TaskCount"] == 3
    assert set(public_human["PublicWorkforceTaskPrice"]["AmountInUsd"]) == {
        "Dollars",
        "Cents",
        "TenthFractionsOfACent",
    }
    assert failed["FlowDefinitionStatus"] == "Failed" and failed["FailureReason"]
    assert textract["HumanLoopRequestSource"]["AwsManagedHumanLoopRequestSource"].startswith(
        "AWS/Textract/AnalyzeDocument"
    )


# -- protocols ------------------------------------------------------------------------------


async def test_the_pinned_botocore_speaks_json_1_1_to_textract(emulator: Any) -> None:
    sent: list[dict[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(dict(request.headers))

    async with client(emulator.url, "textract") as tx:
        assert tx.meta.service_model.protocol == "json"
        tx.meta.events.register("before-send.textract.AnalyzeDocument", capture)
        await analyze(tx, "a.png")
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in sent[0].items()}
    assert headers["x-amz-target"] == "Textract.AnalyzeDocument"
    assert headers["content-type"] == "application/x-amz-json-1.1"


@pytest.mark.parametrize("emulator", [{"activation_rate": 1.0}], indirect=True)
async def test_textract_over_rpc_v2_cbor(emulator: Any) -> None:
    cbor2 = pytest.importorskip("cbor2")
    url = emulator.url + "/service/Textract/operation/AnalyzeDocument"
    headers = {
        "smithy-protocol": "rpc-v2-cbor",
        "Content-Type": "application/cbor",
        "Accept": "application/cbor",
    }
    body = {
        "Document": document("cbor.png"),
        "FeatureTypes": ["FORMS"],
        "HumanLoopConfig": loop_config("over-cbor"),
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=cbor2.dumps(body), headers=headers) as response:
            assert response.status == 200
            assert response.headers["smithy-protocol"] == "rpc-v2-cbor"
            answer = cbor2.loads(await response.read())
        async with http.post(url, data=cbor2.dumps(body), headers=headers) as response:
            assert response.status == 400
            error = cbor2.loads(await response.read())
    assert answer["HumanLoopActivationOutput"]["HumanLoopArn"].endswith("/over-cbor")
    assert {b["BlockType"] for b in answer["Blocks"]} >= {"PAGE", "KEY_VALUE_SET"}
    assert error["__type"] == "InvalidParameterException"
    assert error["message"] == NAME_IN_USE.format("over-cbor")
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["calls"] == {"AnalyzeDocument": 2}
