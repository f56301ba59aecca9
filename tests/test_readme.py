"""The README's commands work as printed: its shell blocks and its library snippet are run
here, in order, against the emulator they start, so the README cannot drift from the code."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BIN = str(Path(sys.executable).parent) + "/"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def commands(block: str) -> list[str]:
    """The block's commands, backslash continuations joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.split("  #", 1)[0].strip()
        if line and not line.startswith("#"):
            found.append(line)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path


def test_the_two_set_up_commands_are_the_ones_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && " in README
    assert ".venv/bin/python -m pytest" in README and ".venv/bin/python -m pytest" in ci
    assert "pip install -e '.[emulator]' && .venv/bin/a2ibatch demo" in README


def test_a_job_start_to_finish_works_as_printed(folder: Path) -> None:
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "A2IBATCH_"))}
    background: list[subprocess.Popen[str]] = []
    outputs: list[tuple[str, str]] = []
    script = [cmd.replace("4566", port) for block in blocks("sh") for cmd in commands(block)]
    assert any("a2ibatch emulate" in cmd for cmd in script)
    try:
        for cmd in script:
            cmd = cmd.replace(".venv/bin/", BIN)
            if cmd.startswith("export "):
                for pair in shlex.split(cmd)[1:]:
                    key, _, value = pair.partition("=")
                    env[key] = value
                continue
            if cmd.endswith("&"):
                process = subprocess.Popen(
                    shlex.split(cmd[:-1]), cwd=folder, env=env, stdout=subprocess.PIPE, text=True
                )
                background.append(process)
                assert process.stdout is not None
                assert process.stdout.readline().startswith("listening on http://")
                continue
            result = subprocess.run(
                cmd, shell=True, cwd=folder, env=env, capture_output=True, text=True,
                timeout=300, check=False,
            )  # fmt: skip
            assert result.returncode == 0, (cmd, result.stdout, result.stderr)
            assert "Traceback" not in result.stdout + result.stderr
            outputs.append((cmd, result.stdout))
        # and what the walk promises: the rerun sent nothing, the answers are in the file
        submits = [orjson.loads(out) for cmd, out in outputs if " submit " in cmd]
        forms = [out for out in submits if out["ledger"] == "forms-ledger.jsonl"]
        assert len(forms) == 2 and forms[1]["summary"]["calls"] == 0
        assert forms[1]["summary"]["skipped"] == 40
        results = next(orjson.loads(out) for cmd, out in outputs if " results " in cmd)
        assert results["written"] == forms[0]["summary"]["started"] > 0
        assert (folder / "answers.csv").read_text().startswith("id,loop_name,")
        # Several regions: each half of the manifest in its own region, every loop followed.
        (regional,) = [out for out in submits if out["ledger"] == "regions-ledger.jsonl"]
        counts = regional["summary"]
        assert counts["started"] + counts["not_activated"] == 20 and counts["invalid"] == 0
        status = orjson.loads(next(out for cmd, out in outputs if "status regions" in cmd))
        assert set(status["flows"]) == {"us-east-1", "eu-west-1"}
        assert sum(sum(by.values()) for by in status["regions"].values()) == 20
        assert set(status["loops"]) == {"Completed"}

        # The library snippet, as printed, against the same emulator.
        (snippet,) = blocks("python")
        (folder / "snippet.py").write_text(snippet)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "snippet.py"], cwd=folder, env=env, capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 41 and lines[-1] == "40 0"  # 40 outcomes, then the rerun's summary
        assert time.monotonic() - started < 120
    finally:
        for process in background:
            process.terminate()
            process.wait(10)
