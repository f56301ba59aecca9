"""The command line as a user meets it: exit codes, messages, no tracebacks, no secrets."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from helpers import FLOW, emulator_get, final_outcomes, submit_args, write_manifest

pytestmark = pytest.mark.anyio

SECRET = "Maria Example, IBAN DE89370400440532013000"
ENV = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": "cli",
    "AWS_SECRET_ACCESS_KEY": "cli-secret-value",
    "A2IBATCH_DEBUG": "1",
}


async def cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = await anyio.run_process(
        [sys.executable, "-m", "a2ibatch", *args], env=ENV, check=False, input=stdin
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_submit_then_status_then_rerun(emulator: Any, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 50)
    ledger = tmp_path / "l.jsonl"
    code, out, err = await cli(*submit_args(emulator.url, manifest, ledger))
    assert code == 0, err
    # Off a terminal, stdout is one JSON object: the summary.
    summary = orjson.loads(out)
    assert summary["summary"]["started"] == 50 and summary["exit_code"] == 0
    code, out, _ = await cli("status", str(ledger), "--json")
    assert code == 0
    assert orjson.loads(out)["items"]["started"] == 50
    calls = (await emulator_get(emulator.url, "/_emulator/stats"))["calls"]
    code, out, _ = await cli(*submit_args(emulator.url, manifest, ledger))
    assert code == 0 and orjson.loads(out)["summary"]["skipped"] == 50
    assert (await emulator_get(emulator.url, "/_emulator/stats"))["calls"] == calls


async def test_bad_lines_exit_1_without_traceback_or_content(emulator: Any, tmp_path: Path) -> None:
    extra = [
        orjson.dumps({"id": "item-00000", "input": {"who": SECRET}}),
        b'{"id": "torn", "input": {"who": "' + SECRET.encode() + b'"',
        orjson.dumps({"id": "p", "input": {"who": SECRET}, "name": "NOT VALID " + SECRET}),
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 5, extra=extra)
    ledger = tmp_path / "l.jsonl"
    code, out, err = await cli(*submit_args(emulator.url, manifest, ledger, "--log-level", "debug"))
    assert code == 1
    assert "Traceback" not in out + err
    assert SECRET not in out + err
    assert "cli-secret-value" not in out + err
    assert SECRET not in ledger.read_text()
    records = [orjson.loads(x) for x in ledger.read_bytes().splitlines()]
    invalid = [r for r in records if r.get("status") == "invalid"]
    assert sorted(r["line"] for r in invalid) == [6, 7, 8]
    # The duplicate line did not undo the state of the line it repeats.
    code, out, _ = await cli("status", str(ledger), "--json")
    assert orjson.loads(out)["items"]["started"] == 5


async def test_dry_run_prints_problems_and_sends_nothing(emulator: Any, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 20, extra=[b"[1]"])
    ledger = tmp_path / "l.jsonl"
    code, out, _ = await cli(*submit_args(emulator.url, manifest, ledger, "--dry-run"))
    assert code == 1
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert rows[0]["to_send"] == 20 and rows[0]["invalid"] == 1
    assert rows[1] == {"line": 21, "id": None, "status": "invalid", "reason": rows[1]["reason"]}
    assert not ledger.exists()
    assert sum((await emulator_get(emulator.url, "/_emulator/stats"))["calls"].values()) == 0


def bare_submit(manifest: str, *extra: str, flow: str = FLOW) -> list[str]:
    """`a2ibatch submit` arguments with nothing set but the required ones and `extra`."""
    return ["submit", manifest, "--task", "custom", "--flow-definition-arn", flow,
            "--ledger", "l", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (bare_submit("missing.jsonl"), 2, "cannot open manifest"),
        (
            ["submit", "m.jsonl", "--task", "custom", "--ledger", "l"],
            2,
            "--flow-definition-arn (or A2IBATCH_FLOW_DEFINITION_ARN",
        ),
        (bare_submit("m.jsonl", flow="nope"), 2, "flow definition ARN"),
        (bare_submit("m.jsonl", "--name-prefix", "BAD"), 2, "prefix"),
        (bare_submit("m.jsonl", "--endpoint-url", "http://192.0.2.1:80"), 2, "plain-http"),
        (["status", "nowhere.jsonl"], 2, "no ledger"),
        (["submit", "m.jsonl", "--task", "nonsense"], 2, "invalid choice"),
    ],
)
async def test_usage_and_configuration_errors_exit_2(
    tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    write_manifest(tmp_path / "m.jsonl", "custom", 1)
    os.chdir(tmp_path)
    got, out, err = await cli(*args)
    assert got == code
    assert needle in out + err
    assert "Traceback" not in out + err


async def test_access_denied_exits_3_with_the_fix(emulator: Any, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 30)
    ledger = tmp_path / "l.jsonl"
    env = {**ENV, "AWS_ACCESS_KEY_ID": "denied"}
    result = await anyio.run_process(
        [
            sys.executable,
            "-m",
            "a2ibatch",
            *submit_args(emulator.url, manifest, ledger, "--no-preflight"),
        ],
        env=env,
        check=False,
    )
    text = (result.stdout + result.stderr).decode()
    assert result.returncode == 3
    assert "AmazonAugmentedAIFullAccess" in text
    assert "Traceback" not in text


async def test_preflight_refuses_an_unknown_flow_definition(emulator: Any, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 3)
    args = submit_args(emulator.url, manifest, tmp_path / "l.jsonl")
    args[args.index(FLOW)] = FLOW.replace("reviews", "missing-reviews")
    code, out, err = await cli(*args)
    assert code == 3
    assert "missing-reviews" in out + err
    assert (await emulator_get(emulator.url, "/_emulator/stats"))["loops_created"] == 0


async def test_emulate_prints_its_address_first(tmp_path: Path) -> None:
    async with await anyio.open_process(
        [sys.executable, "-m", "a2ibatch", "emulate", "--port", "0"], env=ENV
    ) as process:
        assert process.stdout is not None
        first = b""
        with anyio.fail_after(20):
            while not first.endswith(b"\n"):
                first += await process.stdout.receive(1)
        assert first.startswith(b"listening on http://127.0.0.1:")
        process.terminate()
        assert await process.wait() == 0


async def test_demo_runs_a_small_job(tmp_path: Path) -> None:
    code, out, err = await cli("demo", "--items", "200", "--out", str(tmp_path), "--no-progress")
    assert code == 0, err
    assert "inputs with more than one loop: 0" in out
    assert len(final_outcomes(tmp_path / "custom-ledger.jsonl")) == 200


@pytest.mark.parametrize("emulator", [{"quota": 40.0, "latency_ms": 20.0}], indirect=True)
async def test_ctrl_c_finishes_calls_in_flight_then_exits_130(
    emulator: Any, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 400)
    ledger = tmp_path / "l.jsonl"
    command = [sys.executable, "-m", "a2ibatch", *submit_args(emulator.url, manifest, ledger)]
    async with await anyio.open_process(command, env=ENV) as process:
        with anyio.fail_after(30):
            while not ledger.exists() or b'"outcome"' not in ledger.read_bytes():
                await anyio.sleep(0.1)
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            code = await process.wait()
        assert process.stdout is not None
        chunks = [chunk async for chunk in process.stdout]
        out = b"".join(chunks).decode()
    assert code == 130
    assert "stopped" in out
    records = [orjson.loads(x) for x in ledger.read_bytes().splitlines()]
    assert records[-1]["event"] == "summary" and records[-1]["stopped"] is True
    done = sum(1 for r in records if r.get("event") == "outcome")
    assert 0 < done < 400
    # Every call that was in flight finished: no intent is left without its outcome.
    intents = {r["id"] for r in records if r.get("event") == "intent"}
    outcomes = {r["id"] for r in records if r.get("event") == "outcome"}
    assert intents == outcomes
    code, _, err = await cli(*submit_args(emulator.url, manifest, ledger))
    assert code == 0, err
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["loops_created"] == 400 and stats["inputs_with_multiple_loops"] == 0


async def test_a_ledger_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 3)
    args = submit_args("http://127.0.0.1:9", manifest, Path("/dev/full"), "--no-preflight")
    code, out, err = await cli(*args)
    assert code == 2
    assert "not a regular file" in out + err
