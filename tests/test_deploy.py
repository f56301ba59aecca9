"""deploy/: the Dockerfile, the AWS Batch job definition, the Kubernetes Indexed Job and the
IAM policy, checked against the code they deploy.

What can run here runs: the job's command line goes through the real parser and settings
with the platform's index variable set, and then runs, shard by shard, through the image's
entry point (the console script the Dockerfile names), against the emulator and its S3.
The IAM policy is compared with the AWS operations the code calls, found in the code.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aioboto3
import anyio
import orjson
import pytest

from a2ibatch import ConfigError, SubmitSettings, TaskType
from a2ibatch._plan import shard_of
from a2ibatch.cli._app import build_parser
from a2ibatch.cli._submit import settings_from
from helpers import emulator_get

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BATCH = DEPLOY / "aws-batch" / "job-definition.json"
KUBERNETES = DEPLOY / "kubernetes" / "indexed-job.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
POLICY = DEPLOY / "iam-policy.json"
DOCS = ROOT / "docs" / "deploy.md"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

#: the platforms' index variables, as a2ibatch/_settings.py reads them
BATCH_INDEX = "AWS_BATCH_JOB_ARRAY_INDEX"
KUBERNETES_INDEX = "JOB_COMPLETION_INDEX"


# -- the files ------------------------------------------------------------------------------


def batch_definition() -> dict[str, Any]:
    definition: dict[str, Any] = json.loads(BATCH.read_text())
    return definition


def kubernetes_documents() -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml")
    return [d for d in yaml.safe_load_all(KUBERNETES.read_text()) if d is not None]


def kubernetes_job() -> dict[str, Any]:
    (job,) = [d for d in kubernetes_documents() if d["kind"] == "Job"]
    return job


def kubernetes_container() -> dict[str, Any]:
    (container,) = kubernetes_job()["spec"]["template"]["spec"]["containers"]
    return dict(container)


def batch_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in batch_definition()["containerProperties"]["environment"]}


def kubernetes_env() -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in kubernetes_container().get("env", [])}


#: (platform, the container's arguments, its environment, its index variable)
def platforms() -> Iterator[tuple[str, list[str], dict[str, str], str]]:
    yield (
        "aws-batch",
        batch_definition()["containerProperties"]["command"],
        batch_env(),
        BATCH_INDEX,
    )
    yield "kubernetes", kubernetes_container()["args"], kubernetes_env(), KUBERNETES_INDEX


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, (INSTRUCTION, rest), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def entry_point() -> list[str]:
    (entry,) = [json.loads(rest) for word, rest in dockerfile() if word == "ENTRYPOINT"]
    assert isinstance(entry, list)
    return [str(part) for part in entry]


def parse_submit(args: list[str]) -> argparse.Namespace:
    """The CLI's own parser over `args`; a usage error fails the test (not SystemExit)."""
    try:
        return build_parser().parse_args(args)
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"the CLI refuses {shlex.join(args)} (exit {exc.code})")


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# -- the manifests: well formed, one shard per index ----------------------------------------


def test_the_job_definition_and_the_indexed_job_are_well_formed() -> None:
    definition = batch_definition()
    assert definition["type"] == "container"
    container = definition["containerProperties"]
    assert {r["type"] for r in container["resourceRequirements"]} == {"VCPU", "MEMORY"}
    assert container["jobRoleArn"].startswith("arn:aws:iam::")
    # A lost container is retried (the ledger in S3 makes that safe), a usage error is not.
    retry = definition["retryStrategy"]
    assert retry["attempts"] > 1
    assert {"onExitCode": "2", "action": "EXIT"} in retry["evaluateOnExit"]
    assert definition["timeout"]["attemptDurationSeconds"] > 0

    documents = kubernetes_documents()
    assert [d["kind"] for d in documents] == ["ServiceAccount", "Job"]
    job = kubernetes_job()
    spec = job["spec"]
    assert job["apiVersion"] == "batch/v1" and spec["completionMode"] == "Indexed"
    shards = int(flag(kubernetes_container()["args"], "--shards"))
    assert spec["completions"] == spec["parallelism"] == shards
    assert spec.get("backoffLimitPerIndex", spec.get("backoffLimit", 0)) > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # what podFailurePolicy and per-index retries need
    account = documents[0]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]
    # The pod runs as the image's user: not root.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == user_of_the_image()
    # SIGTERM lets calls in flight finish for the grace period (30 s) before exit 130.
    assert pod["terminationGracePeriodSeconds"] > SubmitSettings.grace_period


def test_both_platforms_run_the_same_job_at_the_image_of_this_version() -> None:
    (_, batch, _, _), (_, kubernetes, _, _) = platforms()
    assert batch == kubernetes
    version = PYPROJECT["project"]["version"]
    images = [
        batch_definition()["containerProperties"]["image"],
        kubernetes_container()["image"],
    ]
    assert all(image.endswith(f"/a2ibatch:{version}") for image in images), images
    # The job's shard count is the array's size in the documented submit-job line.
    sizes = re.findall(r"--array-properties size=(\d+)", DOCS.read_text())
    assert sizes and {int(s) for s in sizes} == {int(flag(batch, "--shards"))}


@pytest.mark.parametrize("platform", ["aws-batch", "kubernetes"])
def test_the_index_variable_of_the_platform_is_the_shard_index(
    platform: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, args, env, variable = next(p for p in platforms() if p[0] == platform)
    assert "--shard-index" not in args  # it comes from the platform, the same in every pod
    for name in (
        BATCH_INDEX,
        KUBERNETES_INDEX,
        *(k for k in os.environ if k.startswith("A2IBATCH_")),
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    namespace = parse_submit(args)
    assert namespace.command == "submit"
    with pytest.raises(ConfigError, match="shard_index"):
        settings_from(namespace)  # without the platform's variable, no shard is chosen
    shards = int(flag(args, "--shards"))
    for index in range(shards):
        monkeypatch.setenv(variable, str(index))
        settings = settings_from(namespace)
        assert (settings.shards, settings.shard_index) == (shards, index)
        assert settings.task is TaskType(flag(args, "--task"))
        assert str(settings.ledger).startswith("s3://")  # containers vanish with their disk
    monkeypatch.setenv(variable, str(shards))
    with pytest.raises(ConfigError, match=f"from 0 to {shards - 1}"):
        settings_from(namespace)


# -- the image ------------------------------------------------------------------------------


def user_of_the_image() -> str:
    users = [rest for word, rest in dockerfile() if word == "USER"]
    assert users, "the image must not run as root"
    return users[-1].split(":")[0]


def test_the_image_installs_the_project_and_runs_its_console_script() -> None:
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", runs)
    assert user_of_the_image() not in ("root", "0")
    # The entry point is the project's console script, so the container's arguments are
    # the command line's.
    (script,) = entry_point()
    assert script in PYPROJECT["project"]["scripts"]
    assert PYPROJECT["project"]["scripts"][script] == "a2ibatch.cli:main"
    # What `pip install .` builds from is copied, and the build context (.dockerignore at
    # the root, the context's root) keeps it: the package, its metadata and its readme.
    copied = {
        source
        for word, rest in instructions
        if word == "COPY"
        for source in rest.split()[:-1]
        if not source.startswith("--")
    }
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"], "a2ibatch"}
    assert needed <= copied
    for source in copied:
        assert (ROOT / source).exists(), source
    kept = {
        line[1:].strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert needed <= kept


# -- the IAM policy -------------------------------------------------------------------------

#: S3 operations whose IAM action has another name (the others are "s3:" + the operation)
S3_ACTIONS = {"ListObjectsV2": "ListBucket", "GetBucketCors": "GetBucketCORS"}
#: code that never runs against AWS: the emulator, and the demo (which runs against it)
NOT_DEPLOYED = ("a2ibatch.emulator", "a2ibatch.cli._demo")


def module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def deployed_modules() -> dict[str, ast.Module]:
    """The modules the command line and the library can run: everything imported, at the
    top or inside a function, from ``a2ibatch``, ``python -m a2ibatch`` and ``a2ibatch.cli``
    on (a module nothing imports calls nothing)."""
    found: dict[str, ast.Module] = {}
    todo = ["a2ibatch", "a2ibatch.__main__", "a2ibatch.cli"]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if name in found or path is None or name.startswith(NOT_DEPLOYED):
            continue
        tree = found[name] = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("a2ibatch")]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parent = ".".join(parts[: len(parts) - node.level + 1])
                    base = f"{parent}.{base}" if base else parent
                if base.startswith("a2ibatch"):
                    todo.append(base)
                    todo += [f"{base}.{a.name}" for a in node.names]  # submodules, if any
    return found


def operations_in_the_code() -> dict[str, set[str]]:
    """Service -> the operations the deployed code calls: an operation's name as text
    (what the calls are counted and reported by) or its method (``client.get_object``),
    for every service a2ibatch opens clients for."""
    import botocore.session
    from botocore import xform_name

    from a2ibatch._aws import _ATTRIBUTES

    texts: set[str] = set()
    attributes: set[str] = set()
    for tree in deployed_modules().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts.add(node.value)
            elif isinstance(node, ast.Attribute):
                attributes.add(node.attr)
    session = botocore.session.get_session()
    found: dict[str, set[str]] = {}
    for service in _ATTRIBUTES:
        for operation in session.get_service_model(service).operation_names:
            method = xform_name(operation)
            if operation in texts or ("_" in method and (method in attributes or method in texts)):
                found.setdefault(service, set()).add(operation)
    return found


def service_of(operation: str) -> str:
    """The service (of those a2ibatch opens clients for, S3 aside) with this operation."""
    import botocore.session

    from a2ibatch._aws import _ATTRIBUTES

    session = botocore.session.get_session()
    (service,) = [
        s
        for s in _ATTRIBUTES
        if s != "s3" and operation in session.get_service_model(s).operation_names
    ]
    return service


def iam_action(service: str, operation: str) -> str:
    import botocore.session

    prefix = botocore.session.get_session().get_service_model(service).signing_name
    if service == "s3":
        operation = S3_ACTIONS.get(operation, operation)
    return f"{prefix}:{operation}"


def policy_actions() -> set[str]:
    policy = json.loads(POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    actions: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Resource"]
        listed = statement["Action"]
        actions.update([listed] if isinstance(listed, str) else listed)
    assert not any("*" in a for a in actions), "the policy names each action"
    return {a.lower() for a in actions}  # IAM action names are case-insensitive


def test_the_iam_policy_allows_exactly_the_calls_the_code_makes() -> None:
    modules = deployed_modules()
    assert {"a2ibatch._job", "a2ibatch.ledger._s3store", "a2ibatch.lifecycle._actions"} <= set(
        modules
    )
    operations = operations_in_the_code()
    # The scan sees the code's calls (the loop-starting ones at least), not nothing.
    assert {"StartHumanLoop", "ListHumanLoops"} <= operations["sagemaker-a2i-runtime"]
    assert {"GetObject", "PutObject"} <= operations["s3"]
    needed = {iam_action(s, op) for s, ops in operations.items() for op in ops}
    allowed = policy_actions()
    missing = sorted(a for a in needed if a.lower() not in allowed)
    assert not missing, f"deploy/iam-policy.json must allow {missing}"
    extra = sorted(allowed - {a.lower() for a in needed})
    assert not extra, f"deploy/iam-policy.json allows {extra}, which no code calls"


# -- the job, run as it is deployed ---------------------------------------------------------

ITEMS = 64


def s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


async def prepare(url: str, args: list[str], region: str) -> list[str]:
    """The buckets and manifest the job's command names, in the emulator's S3; its ids."""
    manifest_bucket, manifest_key = s3_uri(args[1])
    ledger_bucket, _ = s3_uri(flag(args, "--ledger"))
    scans = "amzn-s3-demo-scans"
    ids = [f"form-{i:04d}" for i in range(ITEMS)]
    lines = b"".join(
        orjson.dumps({"id": i, "document": f"s3://{scans}/2026-11/{i}.png"}) + b"\n" for i in ids
    )
    session = aioboto3.Session()
    async with session.client("s3", endpoint_url=url, region_name=region) as s3:
        for bucket in {manifest_bucket, ledger_bucket, scans}:
            await s3.create_bucket(Bucket=bucket)
        rule = {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}
        await s3.put_bucket_cors(Bucket=scans, CORSConfiguration={"CORSRules": [rule]})
        await s3.put_object(Bucket=manifest_bucket, Key=manifest_key, Body=lines)
    return ids


async def run_shard(
    url: str, args: list[str], env: Mapping[str, str], variable: str, index: int
) -> dict[str, Any]:
    """One container: the image's entry point with the platform's arguments and variables."""
    (script,) = entry_point()
    module, _, function = PYPROJECT["project"]["scripts"][script].partition(":")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("A2IBATCH_")}
    environ.pop(BATCH_INDEX, None)
    environ.pop(KUBERNETES_INDEX, None)
    environ.update(env)
    environ.update(
        {
            variable: str(index),
            "A2IBATCH_ENDPOINT_URL": url,  # the emulator in place of AWS
            "AWS_ACCESS_KEY_ID": "deploy",
            "AWS_SECRET_ACCESS_KEY": "deploy",
        }
    )
    code = f"import sys; from {module} import {function}; sys.exit({function}())"
    result = await anyio.run_process(
        [sys.executable, "-c", code, *args], env=environ, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    summary: dict[str, Any] = orjson.loads(result.stdout)
    return summary


@pytest.mark.anyio
async def test_the_deployed_command_runs_every_item_once_across_its_shards(
    emulator: Any,
) -> None:
    # The Batch array's children, all at once; then a pod of the Indexed Job (the same
    # arguments, another index variable) on the same location.
    _, args, env, variable = next(p for p in platforms() if p[0] == "aws-batch")
    region = env["AWS_REGION"]
    assert flag(args, "--flow-definition-arn").split(":")[3] == region
    ids = await prepare(emulator.url, args, region)
    shards = int(flag(args, "--shards"))
    summaries: list[dict[str, Any]] = [{} for _ in range(shards)]

    async def one(index: int) -> None:
        summaries[index] = await run_shard(emulator.url, args, env, variable, index)

    with anyio.fail_after(180):
        async with anyio.create_task_group() as tg:  # the array's containers run at once
            for index in range(shards):
                tg.start_soon(one, index)
    for index, summary in enumerate(summaries):
        counts = summary["summary"]
        mine = sum(1 for i in ids if shard_of(i, shards) == index)
        assert counts["started"] + counts["not_activated"] == mine, (index, counts)
        assert counts["other_shards"] == ITEMS - mine
        assert summary["exit_code"] == 0
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["inputs_with_multiple_loops"] == 0
    assert stats["calls"]["AnalyzeDocument"] == ITEMS  # each document analysed once
    # Every call the job made is one the IAM policy allows.
    allowed = policy_actions()
    for operation in stats["calls"]:
        action = iam_action(service_of(operation), operation)
        assert action.lower() in allowed, action
    # A pod of the Indexed Job for the last index finds its shard done: nothing is sent.
    _, pod_args, pod_env, pod_variable = next(p for p in platforms() if p[0] == "kubernetes")
    again = await run_shard(emulator.url, pod_args, pod_env, pod_variable, shards - 1)
    mine = sum(1 for i in ids if shard_of(i, shards) == shards - 1)
    assert again["summary"]["calls"] == 0 and again["summary"]["skipped"] == mine
    assert (await emulator_get(emulator.url, "/_emulator/stats"))["calls"] == stats["calls"]
