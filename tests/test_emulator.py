"""The emulator's A2I runtime API, introspection endpoints and command line, over real HTTP.

Every call goes through real aioboto3 clients pointed at the emulator's URL, with botocore's
retries off so that each test sees the raw answer.  The other ``test_emulator_*`` modules
cover the built-in task types and protocols, and misbehaviour (quotas, faults, lost answers).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC
from typing import Any

import aioboto3
import aiohttp
import anyio
import orjson
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

pytestmark = pytest.mark.anyio

FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/reviews"
OTHER_FLOW = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/other-reviews"
A2I = "sagemaker-a2i-runtime"


# -- helpers shared by the emulator tests ---------------------------------------------------


@asynccontextmanager
async def client(
    url: str, service: str, *, key: str = "testing", region: str = "us-east-1", **config: Any
) -> AsyncIterator[Any]:
    """An aioboto3 client of `service` at the emulator, one attempt per call by default."""
    settings: dict[str, Any] = {"retries": {"total_max_attempts": 1, "mode": "standard"}}
    settings.update(config)
    session = aioboto3.Session(
        aws_access_key_id=key, aws_secret_access_key="testing", region_name=region
    )
    async with session.client(service, endpoint_url=url, config=Config(**settings)) as c:
        yield c


async def get(url: str, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url + path) as response:
        assert response.status == 200, await response.text()
        return orjson.loads(await response.read())


async def post(url: str, path: str, body: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + path, data=orjson.dumps(body)) as response,
    ):
        return response.status, orjson.loads(await response.read())


def start_args(name: str, content: Any = None, flow: str = FLOW) -> dict[str, Any]:
    content = {"name": name} if content is None else content
    return {
        "HumanLoopName": name,
        "FlowDefinitionArn": flow,
        "HumanLoopInput": {"InputContent": orjson.dumps(content).decode()},
    }


def error_of(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


# -- lifecycle ------------------------------------------------------------------------------


@pytest.mark.parametrize("emulator", [{"complete_after": 0.2}], indirect=True)
async def test_a_loop_starts_completes_and_is_deleted(emulator: Any) -> None:
    async with client(emulator.url, A2I) as a2i:
        started = await a2i.start_human_loop(**start_args("claim-1"))
        arn = "arn:aws:sagemaker:us-east-1:123456789012:human-loop/claim-1"
        assert started["HumanLoopArn"] == arn

        first = await a2i.describe_human_loop(HumanLoopName="claim-1")
        assert first["HumanLoopStatus"] == "InProgress"
        assert first["HumanLoopArn"] == arn and first["FlowDefinitionArn"] == FLOW
        assert abs(first["CreationTime"].timestamp() - time.time()) < 5
        assert "HumanLoopOutput" not in first
        # Not finished yet: cannot be deleted.
        with pytest.raises(a2i.exceptions.ValidationException):
            await a2i.delete_human_loop(HumanLoopName="claim-1")

        await asyncio.sleep(0.3)
        done = await a2i.describe_human_loop(HumanLoopName="claim-1")
        assert done["HumanLoopStatus"] == "Completed"
        created = done["CreationTime"].astimezone(UTC)
        stamp = created.strftime("%Y/%m/%d/%H/%M/%S")
        assert done["HumanLoopOutput"]["OutputS3Uri"] == (
            f"s3://a2i-output/reviews/{stamp}/claim-1/output.json"
        )

        await a2i.delete_human_loop(HumanLoopName="claim-1")
        with pytest.raises(a2i.exceptions.ResourceNotFoundException) as caught:
            await a2i.describe_human_loop(HumanLoopName="claim-1")
        assert error_of(caught.value) == ("ResourceNotFoundException", 404)
        with pytest.raises(a2i.exceptions.ResourceNotFoundException):
            await a2i.delete_human_loop(HumanLoopName="claim-1")
        listed = await a2i.list_human_loops(FlowDefinitionArn=FLOW)
        assert listed["HumanLoopSummaries"] == []
        # A deleted loop's name stays taken.
        with pytest.raises(a2i.exceptions.ConflictException):
            await a2i.start_human_loop(**start_args("claim-1"))
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 1 and stats["loops_deleted"] == 1
    assert stats["in_progress"] == 0


@pytest.mark.parametrize("emulator", [{"stopping_seconds": 0.2}], indirect=True)
async def test_a_stopped_loop_is_stopping_then_stopped(emulator: Any) -> None:
    async with client(emulator.url, A2I) as a2i:
        await a2i.start_human_loop(**start_args("to-stop"))
        await a2i.stop_human_loop(HumanLoopName="to-stop")
        described = await a2i.describe_human_loop(HumanLoopName="to-stop")
        assert described["HumanLoopStatus"] == "Stopping"
        await a2i.stop_human_loop(HumanLoopName="to-stop")  # again: harmless
        with pytest.raises(a2i.exceptions.ValidationException):
            await a2i.delete_human_loop(HumanLoopName="to-stop")
        await asyncio.sleep(0.3)
        described = await a2i.describe_human_loop(HumanLoopName="to-stop")
        assert described["HumanLoopStatus"] == "Stopped"
        assert "HumanLoopOutput" not in described
        await a2i.delete_human_loop(HumanLoopName="to-stop")
        with pytest.raises(a2i.exceptions.ResourceNotFoundException):
            await a2i.stop_human_loop(HumanLoopName="to-stop")
        with pytest.raises(a2i.exceptions.ResourceNotFoundException):
            await a2i.stop_human_loop(HumanLoopName="never-started")
    assert (await get(emulator.url, "/_emulator/stats"))["in_progress"] == 0


@pytest.mark.parametrize("emulator", [{"complete_after": 0.0, "failure_rate": 1.0}], indirect=True)
async def test_a_failed_loop_has_a_reason_and_cannot_be_stopped(emulator: Any) -> None:
    async with client(emulator.url, A2I) as a2i:
        await a2i.start_human_loop(**start_args("will-fail"))
        described = await a2i.describe_human_loop(HumanLoopName="will-fail")
        assert described["HumanLoopStatus"] == "Failed"
        assert described["FailureReason"] and described["FailureCode"]
        with pytest.raises(a2i.exceptions.ValidationException):
            await a2i.stop_human_loop(HumanLoopName="will-fail")
        listed = await a2i.list_human_loops(FlowDefinitionArn=FLOW)
        assert listed["HumanLoopSummaries"][0]["FailureReason"]
        await a2i.delete_human_loop(HumanLoopName="will-fail")


async def test_the_arn_carries_the_region_of_the_signature(emulator: Any) -> None:
    async with client(emulator.url, A2I, region="eu-west-1") as a2i:
        flow = FLOW.replace("us-east-1", "eu-west-1")
        started = await a2i.start_human_loop(**start_args("abroad", flow=flow))
    assert started["HumanLoopArn"] == "arn:aws:sagemaker:eu-west-1:123456789012:human-loop/abroad"


# -- name reuse -----------------------------------------------------------------------------


@pytest.mark.parametrize("emulator", [{}, {"same_input_reuse": "same-arn"}], indirect=True)
async def test_a_name_in_use(emulator: Any) -> None:
    same_arn = emulator.config.same_input_reuse == "same-arn"
    async with client(emulator.url, A2I) as a2i:
        first = await a2i.start_human_loop(**start_args("taken", {"n": 1}))
        if same_arn:
            again = await a2i.start_human_loop(**start_args("taken", {"n": 1}))
            assert again["HumanLoopArn"] == first["HumanLoopArn"]
        else:
            with pytest.raises(a2i.exceptions.ConflictException) as caught:
                await a2i.start_human_loop(**start_args("taken", {"n": 1}))
            assert error_of(caught.value) == ("ConflictException", 409)
        # Other input, or the same input under another flow definition: always a conflict.
        with pytest.raises(a2i.exceptions.ConflictException):
            await a2i.start_human_loop(**start_args("taken", {"n": 2}))
        with pytest.raises(a2i.exceptions.ConflictException):
            await a2i.start_human_loop(**start_args("taken", {"n": 1}, OTHER_FLOW))
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 1 and stats["name_conflicts"] == 3
    assert stats["inputs_with_multiple_loops"] == 0


async def test_inputs_with_several_loops_are_counted(emulator: Any) -> None:
    async with client(emulator.url, A2I) as a2i:
        for i in range(3):
            await a2i.start_human_loop(**start_args(f"dup-{i}", {"same": True}))
        await a2i.start_human_loop(**start_args("pair-a", {"pair": 1}))
        await a2i.start_human_loop(**start_args("pair-b", {"pair": 1}))
        await a2i.start_human_loop(**start_args("single", {"single": 1}))
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 6
    assert stats["inputs"] == 3
    assert stats["inputs_with_multiple_loops"] == 2
    assert stats["max_loops_per_input"] == 3


# -- validation -----------------------------------------------------------------------------


def _with(**changes: Any) -> dict[str, Any]:
    args = start_args("valid-name")
    args.update(changes)
    return args


INVALID_STARTS = {
    "upper-case name": _with(HumanLoopName="Bad_Name"),
    "name ends with a hyphen": _with(HumanLoopName="bad-"),
    "name of 64 characters": _with(HumanLoopName="a" * 64),
    "input is not JSON": _with(HumanLoopInput={"InputContent": "{not json"}),
    "input over 3 MiB": _with(HumanLoopInput={"InputContent": '"' + "x" * 3_145_727 + '"'}),
    "no input content": _with(HumanLoopInput={}),
    "flow ARN of another service": _with(
        FlowDefinitionArn="arn:aws:s3:us-east-1:123456789012:flow-definition/reviews"
    ),
    "flow ARN without a name": _with(
        FlowDefinitionArn="arn:aws:sagemaker:us-east-1:123456789012:flow-definition/"
    ),
    "unknown content classifier": _with(DataAttributes={"ContentClassifiers": ["FreeOfBugs"]}),
}


@pytest.mark.parametrize("args", INVALID_STARTS.values(), ids=INVALID_STARTS.keys())
async def test_invalid_starts_are_refused_with_validation_exception(
    emulator: Any, args: dict[str, Any]
) -> None:
    # Client-side validation off: the server itself must refuse.
    async with client(emulator.url, A2I, parameter_validation=False) as a2i:
        with pytest.raises(a2i.exceptions.ValidationException) as caught:
            await a2i.start_human_loop(**args)
    assert error_of(caught.value) == ("ValidationException", 400)
    assert caught.value.response["Error"]["Message"]
    assert (await get(emulator.url, "/_emulator/stats"))["loops_created"] == 0


async def test_a_valid_start_with_every_field(emulator: Any) -> None:
    args = start_args("a-0-b--c9", {"deep": {"list": [1, 2, 3]}})
    args["DataAttributes"] = {
        "ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"]
    }
    async with client(emulator.url, A2I) as a2i:
        started = await a2i.start_human_loop(**args)
    assert started["HumanLoopArn"].endswith("/a-0-b--c9")


@pytest.mark.parametrize(
    ("flow_name", "words"),
    [("missing-reviews", "does not exist"), ("failed-reviews", "not active")],
)
async def test_an_unusable_flow_definition_is_refused(
    emulator: Any, flow_name: str, words: str
) -> None:
    flow = FLOW.replace("reviews", flow_name)
    async with client(emulator.url, A2I) as a2i:
        with pytest.raises(a2i.exceptions.ValidationException) as caught:
            await a2i.start_human_loop(**start_args("x", flow=flow))
    message = caught.value.response["Error"]["Message"]
    assert "flow definition" in message and words in message


async def test_describe_validates_the_name(emulator: Any) -> None:
    async with client(emulator.url, A2I) as a2i:
        with pytest.raises(a2i.exceptions.ValidationException):
            await a2i.describe_human_loop(HumanLoopName="Not_Valid")


# -- listing --------------------------------------------------------------------------------


async def test_list_human_loops_pages_filters_and_sorts(emulator: Any) -> None:
    names = [f"loop-{i}" for i in range(7)]
    async with client(emulator.url, A2I) as a2i:
        for name in names:
            await a2i.start_human_loop(**start_args(name))
            await asyncio.sleep(0.002)  # distinct creation milliseconds
        await a2i.start_human_loop(**start_args("elsewhere", flow=OTHER_FLOW))

        pages: list[list[str]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"FlowDefinitionArn": FLOW, "MaxResults": 3}
            if token:
                kwargs["NextToken"] = token
            page = await a2i.list_human_loops(**kwargs)
            pages.append([s["HumanLoopName"] for s in page["HumanLoopSummaries"]])
            token = page.get("NextToken")
            if not token:
                break
        assert pages == [names[0:3], names[3:6], names[6:7]]

        paginator = a2i.get_paginator("list_human_loops")
        descending = [
            s["HumanLoopName"]
            async for page in paginator.paginate(
                FlowDefinitionArn=FLOW, SortOrder="Descending", PaginationConfig={"PageSize": 2}
            )
            for s in page["HumanLoopSummaries"]
        ]
        assert descending == names[::-1]

        full = (await a2i.list_human_loops(FlowDefinitionArn=FLOW))["HumanLoopSummaries"]
        assert [s["HumanLoopName"] for s in full] == names
        assert all(s["HumanLoopStatus"] == "InProgress" for s in full)
        assert all(s["FlowDefinitionArn"] == FLOW for s in full)
        fourth = full[3]["CreationTime"]
        after = await a2i.list_human_loops(FlowDefinitionArn=FLOW, CreationTimeAfter=fourth)
        assert [s["HumanLoopName"] for s in after["HumanLoopSummaries"]] == names[3:]
        # Half open, as the reference words it: loops that began at After, and before Before.
        before = await a2i.list_human_loops(FlowDefinitionArn=FLOW, CreationTimeBefore=fourth)
        assert [s["HumanLoopName"] for s in before["HumanLoopSummaries"]] == names[:3]
        other = await a2i.list_human_loops(FlowDefinitionArn=OTHER_FLOW)
        assert [s["HumanLoopName"] for s in other["HumanLoopSummaries"]] == ["elsewhere"]

    async with client(emulator.url, A2I, parameter_validation=False) as a2i:
        for bad in (
            {"MaxResults": 101},
            {"MaxResults": 0},
            {"SortOrder": "Sideways"},
            {"NextToken": "not-a-token"},
        ):
            with pytest.raises(a2i.exceptions.ValidationException):
                await a2i.list_human_loops(FlowDefinitionArn=FLOW, **bad)


# -- credentials and the account ------------------------------------------------------------


async def test_magic_access_keys_refuse_every_call(emulator: Any) -> None:
    async with client(emulator.url, A2I, key="denied") as a2i:
        with pytest.raises(ClientError) as caught:
            await a2i.start_human_loop(**start_args("x"))
        assert error_of(caught.value) == ("AccessDeniedException", 403)
        with pytest.raises(ClientError) as caught:
            await a2i.describe_human_loop(HumanLoopName="x")
        assert error_of(caught.value) == ("AccessDeniedException", 403)
    async with client(emulator.url, A2I, key="unknown") as a2i:
        with pytest.raises(ClientError) as caught:
            await a2i.list_human_loops(FlowDefinitionArn=FLOW)
        assert error_of(caught.value) == ("UnrecognizedClientException", 403)
    assert (await get(emulator.url, "/_emulator/stats"))["loops_created"] == 0


@pytest.mark.parametrize("emulator", [{"not_a2i_customer": True}], indirect=True)
async def test_an_account_a2i_no_longer_accepts(emulator: Any) -> None:
    async with client(emulator.url, A2I) as a2i:
        with pytest.raises(a2i.exceptions.ValidationException) as caught:
            await a2i.start_human_loop(**start_args("x"))
    message = caught.value.response["Error"]["Message"]
    assert "maintenance mode" in message and "no longer accepts new customers" in message


# -- introspection --------------------------------------------------------------------------


async def test_introspection_endpoints(emulator: Any) -> None:
    before = await get(emulator.url, "/_emulator/accepted")
    assert before["first"] is None and before["last"] is None
    async with client(emulator.url, A2I) as a2i:
        began = time.time()
        await a2i.start_human_loop(**start_args("seen-1", {"a": 1}))
        between = time.time()
        await a2i.start_human_loop(**start_args("seen-2", {"a": 2}))
        ended = time.time()
        await a2i.describe_human_loop(HumanLoopName="seen-1")

    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["calls"] == {"StartHumanLoop": 2, "DescribeHumanLoop": 1}
    for key in ("throttled", "faults", "lost_responses", "slow_responses", "name_conflicts"):
        assert stats[key] == 0
    assert stats["loops_created"] == 2 and stats["in_progress"] == 2
    assert stats["inputs"] == 2 and stats["inputs_with_multiple_loops"] == 0
    assert stats["max_loops_per_input"] == 1

    loops = await get(emulator.url, "/_emulator/loops")
    assert [loop["name"] for loop in loops] == ["seen-1", "seen-2"]
    first = loops[0]
    assert first["arn"].endswith(":human-loop/seen-1")
    assert first["flow_definition_arn"] == FLOW
    assert first["status"] == "InProgress" and first["task"] == "custom"
    assert orjson.loads(first["input_content"]) == {"a": 1}
    assert first["input_key"] != loops[1]["input_key"]
    assert abs(first["created_at"] - time.time()) < 5

    histogram = await get(emulator.url, "/_emulator/accepted")
    assert sum(row["accepted"] for row in histogram["seconds"]) == 2
    assert all(row["throttled"] == 0 for row in histogram["seconds"])
    # when the first and the last start call arrived (a benchmark's start-up ends at the first)
    margin = 0.002  # the emulator keeps milliseconds
    assert began - margin <= histogram["first"] <= between + margin
    assert between - margin <= histogram["last"] <= ended + margin

    config = await get(emulator.url, "/_emulator/config")
    assert config["quota"] is None and config["burst"] == 5
    status, changed = await post(emulator.url, "/_emulator/config", {"quota": 50, "burst": 2})
    assert status == 200 and changed["quota"] == 50.0 and changed["burst"] == 2
    assert emulator.config.quota == 50.0
    for bad in ({"quota": "fast"}, {"nonsense": 1}, {"port": 1}, {"fault_rate": 2}, [1]):
        status, answer = await post(emulator.url, "/_emulator/config", bad)
        assert status == 400 and answer["error"]
    assert emulator.config.quota == 50.0

    status, _ = await post(emulator.url, "/_emulator/reset", {})
    assert status == 200
    stats = await get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 0 and stats["calls"] == {}
    assert await get(emulator.url, "/_emulator/loops") == []
    async with aiohttp.ClientSession() as http, http.get(emulator.url + "/_emulator/x") as r:
        assert r.status == 404


async def test_unknown_requests_get_clean_errors(emulator: Any) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(emulator.url + "/nowhere") as response:
            assert response.status == 404
            assert response.headers["x-amzn-ErrorType"] == "UnknownOperationException"
        headers = {"X-Amz-Target": "Textract.DetectDocumentText"}
        async with http.post(emulator.url + "/", data=b"{}", headers=headers) as response:
            assert response.status == 400
            assert (await response.json(content_type=None))["__type"] == "UnknownOperationException"
        async with http.post(emulator.url + "/human-loops", data=b"[") as response:
            assert response.status == 400
            assert response.headers["x-amzn-ErrorType"] == "SerializationException"


# -- command line and child process ---------------------------------------------------------


def test_flags_round_trip_through_the_config() -> None:
    from a2ibatch.emulator import EmulatorConfig
    from a2ibatch.emulator._cli import add_arguments, config_from_args, to_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args([])) == EmulatorConfig()
    config = EmulatorConfig(
        quota=12.5,
        quotas={"ListHumanLoops": 2.0, "AnalyzeDocument": 0.5},
        burst=3,
        network_ms=2.0,
        network_jitter_ms=0.5,
        processing_ms=4.0,
        processing_jitter_ms=1.0,
        activation_rate=0.25,
        fault_rate=0.1,
        lost_response_rate=0.05,
        slow_rate=0.05,
        slow_ms=900.0,
        complete_after=2.0,
        max_in_progress=7,
        same_input_reuse="same-arn",
        throttle_code="ThrottlingException",
        seed=3,
        output_bucket="reviews-out",
        service_quotas_access="deny",
        s3=False,
        not_a2i_customer=True,
    )
    assert config_from_args(parser.parse_args(to_args(config))) == config
    # The processing time's old names still work, as flags and as fields.
    old = config_from_args(parser.parse_args(["--latency-ms", "7", "--jitter-ms", "2"]))
    assert (old.processing_ms, old.processing_jitter_ms) == (7.0, 2.0)
    assert EmulatorConfig(latency_ms=7.0, jitter_ms=2.0) == old
    for wrong in (
        ["--fault-rate", "1.5"],
        ["--port", "-1"],
        ["--burst", "0"],
        ["--quota", "x"],
        ["--quota-for", "NoSuchOperation=3"],
        ["--quota-for", "StartHumanLoop"],
        ["--quota-for", "StartHumanLoop=0"],
        ["--service-quotas-access", "maybe"],
    ):
        with pytest.raises(SystemExit):  # a usage error, not a traceback
            parser.parse_args(wrong)
    with pytest.raises(ValueError, match="must not exceed 1"):
        config_from_args(parser.parse_args(["--lost-response-rate", "0.6", "--slow-rate", "0.6"]))


async def test_the_module_prints_its_url_and_stops_on_sigterm() -> None:
    command = [sys.executable, "-m", "a2ibatch.emulator", "--port", "0", "--quota", "20"]
    async with await anyio.open_process(command) as process:
        assert process.stdout is not None
        with anyio.fail_after(30):
            first = b""
            while not first.endswith(b"\n"):
                first += await process.stdout.receive(1)
        line = first.decode().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ")
        assert (await get(url, "/_emulator/config"))["quota"] == 20.0
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await process.wait() == 0


async def test_run_subprocess_yields_a_working_url() -> None:
    from a2ibatch.emulator import EmulatorConfig, run_subprocess

    with run_subprocess(EmulatorConfig(max_in_progress=1, seed=5)) as url:
        async with client(url, A2I) as a2i:
            await a2i.start_human_loop(**start_args("only"))
            with pytest.raises(a2i.exceptions.ServiceQuotaExceededException):
                await a2i.start_human_loop(**start_args("too-many"))
        assert (await get(url, "/_emulator/config"))["seed"] == 5
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(url, "/_emulator/stats")  # the child is gone
