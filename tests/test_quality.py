"""The library's promises about its own code: typed, lint-clean, layered, small, silent."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import a2ibatch
from a2ibatch import emulator

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "a2ibatch"
#: modules of the submitter (everything but the emulator and the command line)
LIBRARY = [
    p
    for p in PACKAGE.rglob("*.py")
    if "emulator" not in p.parts and "cli" not in p.parts and p.name != "__main__.py"
]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, *, top_level_only: bool = False) -> list[tuple[str, list[str]]]:
    """(absolute module, names) of every ``from ... import`` in `path`."""
    tree = ast.parse(path.read_text())
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return found


def test_mypy_strict_over_the_package_and_the_tests() -> None:
    result = run("mypy", "--no-error-summary")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    result = run("ruff", "check", "a2ibatch", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_emulator_imports_nothing_of_the_submitter() -> None:
    for path in (PACKAGE / "emulator").rglob("*.py"):
        for module, _ in imports(path):
            assert not (
                module.startswith("a2ibatch.") and not module.startswith("a2ibatch.emulator")
            ), f"{path.name} imports {module}"


def test_the_command_line_uses_only_the_public_api() -> None:
    public = set(a2ibatch.__all__)
    for path in (PACKAGE / "cli").rglob("*.py"):
        for module, names in imports(path):
            if module == "a2ibatch":
                assert set(names) <= public, f"{path.name} imports {set(names) - public}"
            elif module.startswith("a2ibatch.emulator"):
                assert module == "a2ibatch.emulator", f"{path.name} imports {module}"
                assert set(names) <= set(emulator.__all__), f"{path.name}: {names}"
            elif module.startswith("a2ibatch.") and not module.startswith("a2ibatch.cli"):
                raise AssertionError(f"{path.name} imports the private {module}")


def test_imports_run_downwards_without_cycles() -> None:
    """Module-level imports between the package's modules form no cycle."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        targets = set()
        for module, names in imports(path, top_level_only=True):
            if module.startswith("a2ibatch"):
                for candidate in [f"{module}.{n}" for n in names] + [module]:
                    if (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                        ROOT / Path(*candidate.split(".")) / "__init__.py"
                    ).exists():
                        targets.add(candidate)
                        break
        graph[name] = {t for t in targets if t != name}

    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, " -> ".join([*visiting[visiting.index(node) :], node])
        visiting.append(node)
        for target in graph.get(node, ()):
            # a package's __init__ re-exports its own modules: that edge is not a cycle
            if not target.startswith(node + "."):
                visit(target)
        visiting.pop()
        done.add(node)

    for node in graph:
        visit(node)


def test_no_module_is_much_over_400_lines() -> None:
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 420, f"{path.relative_to(ROOT)} has {lines} lines: split its concepts"


def test_library_modules_do_not_print_or_exit() -> None:
    for path in LIBRARY:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("print", "exit"), f"{path.name} calls {node.func.id}"
            if isinstance(node, ast.Attribute) and node.attr == "exit":
                assert not (isinstance(node.value, ast.Name) and node.value.id == "sys"), path.name


def test_no_exec_and_no_class_swaps() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("exec", "eval", "compile"), path.name
            if isinstance(node, ast.Attribute) and node.attr == "__class__":
                assert not isinstance(node.ctx, ast.Store), f"{path.name} assigns __class__"


def test_an_unconfigured_library_is_silent_even_when_a_job_aborts(tmp_path: Path) -> None:
    """No output at all from a library call that stops early: the application decides."""
    script = textwrap.dedent(
        """
        import anyio, sys
        from a2ibatch import Item, JobAborted, SubmitSettings, AwsSettings, submit
        from a2ibatch.emulator import serve

        async def main() -> None:
            async with serve() as emu:
                settings = SubmitSettings(
                    task="custom",
                    flow_definition_arn="arn:aws:sagemaker:us-east-1:123456789012:"
                    "flow-definition/reviews",
                    ledger=sys.argv[1],
                    max_failures=2,
                    aws=AwsSettings(endpoint_url=emu.url, region="us-east-1"),
                )
                items = [Item(id=str(i), input_content="not json") for i in range(10)]
                try:
                    await submit(settings, items=items)
                except JobAborted as exc:
                    assert exc.code == "MaxFailures"
                else:
                    raise SystemExit("the job should have stopped")

        anyio.run(main, backend="asyncio")
        """
    )
    env_script = tmp_path / "job.py"
    env_script.write_text(script)
    result = subprocess.run(
        [sys.executable, str(env_script), str(tmp_path / "ledger.jsonl")],
        capture_output=True,
        text=True,
        check=False,
        env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
