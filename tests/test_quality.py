"""The library's promises about its own code: strictly typed, lint-clean, layered."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "a2ibatch"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_mypy_strict() -> None:
    result = run("mypy", "--no-error-summary")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    result = run("ruff", "check", "a2ibatch")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_emulator_imports_nothing_of_the_submitter() -> None:
    for path in (PACKAGE / "emulator").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert not (node.level >= 2 or module.startswith("a2ibatch._")), (
                    f"{path.name} imports {module}"
                )


def test_library_modules_do_not_print_or_exit() -> None:
    for path in (p for p in PACKAGE.glob("_*.py") if not p.name.startswith("__")):
        source = path.read_text()
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("print", "exit"), f"{path.name} calls {node.func.id}"
            if isinstance(node, ast.Attribute) and node.attr == "exit":
                assert not (isinstance(node.value, ast.Name) and node.value.id == "sys"), path.name
