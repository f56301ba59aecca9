"""The command line's start-up: commands other than `emulate` never import the emulator.

Its import (aiohttp's web server) was a third of the start-up of every command, and a
dry run is measured start-up included (``benchmarks/bench_dry_run.py``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from a2ibatch.cli._app import build_parser
from helpers import FLOW

#: runs the CLI's main in a fresh interpreter, then tells whether the emulator was imported
PROBE = """
import sys
from a2ibatch.cli import _app
try:
    code = _app.main(sys.argv[1:])
except SystemExit as stop:  # --help, a usage error
    code = stop.code
sys.stderr.write(f"\\nexit {code} emulator {'a2ibatch.emulator' in sys.modules}\\n")
"""


def run_cli(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=False
    )
    return result.stdout + result.stderr


def test_a_dry_run_does_not_import_the_emulator(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(orjson.dumps({"id": "a", "document": "s3://scans/a.png"}) + b"\n")
    out = run_cli(
        "submit",
        str(manifest),
        "--task",
        "textract",
        "--flow-definition-arn",
        FLOW,
        "--ledger",
        str(tmp_path / "l.jsonl"),
        "--dry-run",
        "--region",
        "us-east-1",
    )
    assert '"to_send":1' in out  # off a terminal: the report as JSON
    assert "exit 0 emulator False" in out


def test_the_emulate_command_keeps_its_flags() -> None:
    out = run_cli("emulate", "--help")
    assert "--quota" in out and "--latency-ms" in out
    assert "exit 0 emulator True" in out
    assert build_parser().parse_args(["emulate", "--quota", "5"]).quota == 5
    with pytest.raises(SystemExit):  # the flags are left out only when asked
        build_parser(emulate_flags=False).parse_args(["emulate", "--quota", "5"])


@pytest.mark.parametrize(("words", "imported"), [(["em"], True), (["status", "--help"], False)])
def test_only_words_that_may_name_emulate_import_it(words: list[str], imported: bool) -> None:
    # ("em" is refused as a command here, but some Python versions may accept prefixes)
    assert f"emulator {imported}" in run_cli(*words)
