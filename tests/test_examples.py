"""The examples a service copies from: the SQS consumer (moto's SQS server, the emulator in a
child process, a consumer killed with SIGKILL and restarted) and the aiohttp web service."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aioboto3
import aiohttp
import anyio
import orjson
import pytest
from aiohttp import web

from a2ibatch import Submitter, TaskType
from a2ibatch.emulator import EmulatorConfig, run_subprocess
from helpers import FLOW, TASKS, emulator_get, final_outcomes, ledger_records, line_for
from test_submitter import submitter_settings

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """``examples/NAME.py`` as a module (the examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


sqs_consumer = load_example("sqs_consumer")
web_service = load_example("web_service")


@pytest.fixture
async def sqs(moto_s3_url: str) -> AsyncIterator[Any]:
    """An SQS client of moto's server (the session's moto server serves every service)."""
    async with aioboto3.Session().client(
        "sqs", endpoint_url=moto_s3_url, region_name="us-east-1"
    ) as client:
        yield client


async def make_queue(sqs: Any, name: str, **attributes: str) -> str:
    answer = await sqs.create_queue(QueueName=name, Attributes=attributes)
    return str(answer["QueueUrl"])


async def send_bodies(sqs: Any, queue_url: str, bodies: list[bytes]) -> None:
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(n), "MessageBody": body.decode()}
            for n, body in enumerate(bodies[start : start + 10])
        ]
        await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)


@pytest.mark.parametrize("emulator", [{"activation_rate": 1.0, "s3": False}], indirect=True)
@pytest.mark.parametrize("task", TASKS)
async def test_the_consumer_starts_one_loop_per_message_and_empties_the_queue(
    task: TaskType, emulator: Any, sqs: Any, tmp_path: Path
) -> None:
    dead = await make_queue(sqs, f"dead-{task.value}")
    dead_arn = (await sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    redrive = orjson.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 1}).decode()
    queue = await make_queue(
        sqs, f"items-{task.value}", VisibilityTimeout="1", RedrivePolicy=redrive
    )
    bodies = [orjson.dumps(line_for(task, i % 20)) for i in range(30)]  # 10 delivered twice
    await send_bodies(sqs, queue, [*bodies, b"not an item"])

    s = submitter_settings(task, emulator.url, tmp_path)
    async with Submitter(s) as submitter:
        with anyio.fail_after(60):
            report = await sqs_consumer.consume(submitter, sqs, queue, until_empty=True)
    assert (report.deleted, report.errors) == (30, 0) and report.unusable >= 1
    stats = emulator.stats()
    assert stats["loops_created"] == 20 and stats["inputs_with_multiple_loops"] == 0
    assert await sqs_consumer.queue_is_empty(sqs, queue)
    moved = await sqs.receive_message(QueueUrl=dead, MaxNumberOfMessages=10)
    assert [m["Body"] for m in moved.get("Messages", [])] == ["not an item"]
    assert len(final_outcomes(tmp_path / "ledger.jsonl")) == 20


def consumer_command(queue: str, moto: str, emulator: str, ledger: Path) -> list[str]:
    return [
        sys.executable, str(EXAMPLES / "sqs_consumer.py"), "--queue-url", queue,
        "--task", "custom", "--flow-definition-arn", FLOW, "--ledger", str(ledger),
        "--endpoint-url", emulator, "--sqs-endpoint-url", moto, "--region", "us-east-1",
        "--concurrency", "4", "--no-preflight", "--until-empty",
    ]  # fmt: skip


def outcome_lines(ledger: Path) -> int:
    if not ledger.exists():
        return 0
    return sum(b'"event":"outcome"' in line for line in ledger.read_bytes().splitlines())


async def test_a_consumer_killed_mid_run_and_restarted_leaves_one_loop_per_message(
    sqs: Any, moto_s3_url: str, tmp_path: Path
) -> None:
    queue = await make_queue(sqs, "killed-consumer", VisibilityTimeout="2")
    bodies = [orjson.dumps(line_for(TaskType.CUSTOM, i % 100)) for i in range(120)]
    await send_bodies(sqs, queue, bodies)
    ledger = tmp_path / "consumer-ledger.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("A2IBATCH_ENDPOINT_URL", None)
    with run_subprocess(EmulatorConfig(processing_ms=60, s3=False)) as url:
        command = consumer_command(queue, moto_s3_url, url, ledger)
        quiet = subprocess.DEVNULL
        first = await anyio.open_process(command, env=env, stdout=quiet, stderr=quiet)
        try:
            with anyio.fail_after(60):  # the consumer makes progress
                while outcome_lines(ledger) < 25 and first.returncode is None:
                    await anyio.sleep(0.02)
        finally:
            first.kill()  # SIGKILL: no clean-up of any kind
            await first.wait()
        assert first.returncode == -9
        recorded = outcome_lines(ledger)
        assert 25 <= recorded < 100  # killed mid-run
        assert not await sqs_consumer.queue_is_empty(sqs, queue)

        with anyio.fail_after(120):
            second = await anyio.run_process(command, env=env, check=False)
        assert second.returncode == 0, second.stderr.decode()[-2000:]
        report = orjson.loads(second.stdout.splitlines()[-1])
        stats = await emulator_get(url, "/_emulator/stats")

    assert stats["loops_created"] == 100 and stats["inputs_with_multiple_loops"] == 0
    assert await sqs_consumer.queue_is_empty(sqs, queue)
    assert report["errors"] == report["unusable"] == 0
    outcomes = final_outcomes(ledger)
    assert len(outcomes) == 100 and {o["status"] for o in outcomes.values()} == {"started"}
    started = [r for r in ledger_records(ledger) if r.get("status") == "started"]
    assert len(started) == 100  # the messages that came back were answered, not sent again


@pytest.mark.parametrize("emulator", [{"activation_rate": 1.0, "s3": False}], indirect=True)
@pytest.mark.parametrize("task", TASKS)
async def test_the_web_service_answers_with_the_loop(
    task: TaskType, emulator: Any, tmp_path: Path
) -> None:
    app = web_service.make_app(submitter_settings(task, emulator.url, tmp_path))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        documents = []
        for i in range(5):
            line = line_for(task, i)
            body = {"id": line["id"], "content": line["input"]} if "input" in line else line
            documents.append(body)
        answers: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as http:

            async def post(body: Any) -> None:
                async with http.post(f"{base}/documents", data=orjson.dumps(body)) as r:
                    assert r.status == 200
                    answers.append(orjson.loads(await r.read()))

            async with anyio.create_task_group() as tg:
                for body in documents * 3:  # each document posted three times at once
                    tg.start_soon(post, body)
            async with http.post(f"{base}/documents", data=b"{}") as bad:
                assert bad.status == 400
            async with http.get(f"{base}/health") as r:
                health = orjson.loads(await r.read())
    finally:
        await runner.cleanup()
    by_id: dict[str, set[str]] = {}
    for answer in answers:
        assert answer["status"] == "started" and answer["human_loop_arn"].endswith(
            answer["loop_name"]
        )
        by_id.setdefault(answer["id"], set()).add(answer["human_loop_arn"])
    assert len(by_id) == 5 and all(len(arns) == 1 for arns in by_id.values())
    assert emulator.stats()["loops_created"] == 5
    assert health["started"] == 5 and health["in_flight"] == 0
    assert ledger_records(tmp_path / "ledger.jsonl")[-1]["event"] == "summary"  # closed


def docs_web_snippet() -> dict[str, Any]:
    """The aiohttp example of docs/library.md, run as written."""
    text = (EXAMPLES.parent / "docs" / "library.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    (code,) = [b for b in blocks if "web.AppKey" in b]
    namespace: dict[str, Any] = {"__name__": "docs_library"}
    exec(compile(code, "docs/library.md", "exec"), namespace)
    return namespace


async def test_the_web_example_of_the_docs_runs_as_written(emulator: Any, tmp_path: Path) -> None:
    app = docs_web_snippet()["make_app"](
        submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path)
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        body = orjson.dumps({"id": "doc-1", "content": {"text": "complete?"}})
        async with aiohttp.ClientSession() as http:
            answers = []
            for _ in range(2):
                async with http.post(f"http://127.0.0.1:{port}/documents", data=body) as r:
                    answers.append(orjson.loads(await r.read()))
    finally:
        await runner.cleanup()
    assert answers[0] == answers[1] and answers[0]["status"] == "started"
    assert answers[0]["human_loop_arn"].startswith("arn:aws:sagemaker:us-east-1:123456789012:")
    assert emulator.stats()["loops_created"] == 1
