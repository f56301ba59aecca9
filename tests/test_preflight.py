"""Checks before spending, over HTTP: flow definitions from the emulator, buckets from moto.

The emulator knows flow definitions by name: "missing-..." does not exist, "failed-..." is
Failed, "public-..." is reviewed by the public Mechanical Turk work team (3 workers per
item at $0.036 per task), anything else by a private team (1 worker, no price).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aioboto3
import orjson
import pytest

from a2ibatch import AwsSettings, PreflightError, SubmitSettings, TaskType, submit
from a2ibatch._plan import job_planner, tally
from a2ibatch._preflight import A2I_CORS_RULE, PreflightReport, preflight
from a2ibatch.manifest import read_manifest_batches
from helpers import emulator_get

pytestmark = pytest.mark.anyio


def as_cli(error: Exception) -> str:
    """The message as the command line shows it: settings spelled as flags."""
    from a2ibatch.cli._app import build_parser, spelling

    assert isinstance(error, PreflightError)
    return error.render(spelling(build_parser(emulate_flags=False)))


PII = "FreeOfPersonallyIdentifiableInformation"
ADULT = "FreeOfAdultContent"


def flow(name: str, region: str = "us-east-1") -> str:
    return f"arn:aws:sagemaker:{region}:123456789012:flow-definition/{name}"


def job(url: str, tmp_path: Path, name: str = "reviews", **overrides: Any) -> SubmitSettings:
    values: dict[str, Any] = {
        "task": TaskType.CUSTOM,
        "flow_definition_arn": flow(name),
        "ledger": tmp_path / "ledger.jsonl",
        "manifest": str(tmp_path / "manifest.jsonl"),
        "aws": AwsSettings(endpoint_url=url, region="us-east-1"),
    }
    values.update(overrides)
    return SubmitSettings(**values)


async def make_bucket(
    moto_s3_url: str, *, region: str = "us-east-1", cors: list[dict[str, Any]] | None = None
) -> str:
    """A fresh bucket in `region`, with `cors` rules if given (None: no CORS at all)."""
    name = f"in-{uuid.uuid4().hex[:12]}"
    async with aioboto3.Session().client(
        "s3", endpoint_url=moto_s3_url, region_name=region
    ) as client:
        if region == "us-east-1":
            await client.create_bucket(Bucket=name)
        else:
            await client.create_bucket(
                Bucket=name, CreateBucketConfiguration={"LocationConstraint": region}
            )
        if cors is not None:
            await client.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": cors})
    return name


# -- flow definition ---------------------------------------------------------------------


async def test_a_private_active_flow_definition_passes(emulator: Any, tmp_path: Path) -> None:
    report = await preflight(job(emulator.url, tmp_path), items=25, buckets=())
    assert isinstance(report, PreflightReport)
    info = report.flow_definition
    assert (info.status, info.region, info.name) == ("Active", "us-east-1", "reviews")
    assert not info.public_workforce and info.task_count == 1
    assert info.output_path == "s3://a2i-output"
    assert report.estimated_cost is None  # a private team has no price per task
    assert report.warnings == []
    assert report.to_dict()["flow_definition"]["name"] == "reviews"


async def test_a_missing_flow_definition_is_refused_with_its_arn(
    emulator: Any, tmp_path: Path
) -> None:
    s = job(emulator.url, tmp_path, "missing-reviews")
    with pytest.raises(PreflightError) as caught:
        await preflight(s, items=1, buckets=())
    message = str(caught.value)
    assert str(s.flow_definition_arn) in message
    assert "does not exist" in message and "flow_definition_arn" in message
    assert "--flow-definition-arn" in as_cli(caught.value) and "--" not in message


async def test_a_failed_flow_definition_is_refused(emulator: Any, tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match=r"is Failed .*not Active") as caught:
        await preflight(job(emulator.url, tmp_path, "failed-reviews"), items=1, buckets=())
    assert caught.value.code == "FlowDefinitionNotActive"
    assert caught.value.exit_code == 3


async def test_a_flow_definition_in_another_region_is_refused(
    emulator: Any, tmp_path: Path
) -> None:
    s = job(emulator.url, tmp_path, flow_definition_arn=flow("reviews", "eu-west-1"))
    with pytest.raises(PreflightError, match="region='eu-west-1'") as caught:
        await preflight(s, items=1, buckets=())
    assert "us-east-1" in str(caught.value)
    assert "--region eu-west-1" in as_cli(caught.value)


# -- work team and cost ------------------------------------------------------------------


async def test_the_public_workforce_without_the_pii_classifier_is_refused(
    emulator: Any, tmp_path: Path
) -> None:
    s = job(emulator.url, tmp_path, "public-reviews", content_classifiers=(ADULT,))
    with pytest.raises(PreflightError) as caught:
        await preflight(s, items=10, buckets=())
    assert PII in str(caught.value) and "Mechanical Turk" in str(caught.value)
    assert caught.value.code == "PublicWorkforceWithoutPiiClassifier"


async def test_items_that_drop_the_pii_classifier_are_refused_for_the_public_workforce(
    emulator: Any, tmp_path: Path
) -> None:
    # The job says PII-free, but two lines set classifiers of their own without it: those
    # two tasks would never reach a worker.
    s = job(emulator.url, tmp_path, "public-reviews", content_classifiers=(PII, ADULT))
    own: dict[tuple[str, ...], int] = {(ADULT,): 2, (PII, ADULT): 5}
    with pytest.raises(PreflightError, match="2 item") as caught:
        await preflight(s, items=10, buckets=(), item_classifiers=own)
    assert caught.value.code == "PublicWorkforceWithoutPiiClassifier"
    # Every item declaring PII-free for itself is enough, whatever the job's default.
    bare = job(emulator.url, tmp_path, "public-reviews")
    every: dict[tuple[str, ...], int] = {(PII, ADULT): 10}
    report = await preflight(bare, items=10, buckets=(), item_classifiers=every)
    assert report.warnings == []
    with pytest.raises(PreflightError):  # one item left on the job's default
        await preflight(bare, items=11, buckets=(), item_classifiers=every)


async def test_submit_refuses_a_manifest_whose_lines_drop_the_pii_classifier(
    emulator: Any, tmp_path: Path
) -> None:
    manifest = tmp_path / "manifest.jsonl"
    lines = [{"id": f"a{i}", "input": {"n": i}} for i in range(3)]
    lines.append({"id": "b", "input": {}, "content_classifiers": []})  # "none for this item"
    manifest.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    s = job(emulator.url, tmp_path, "public-reviews", content_classifiers=(PII,))
    with pytest.raises(PreflightError, match="1 item"):
        await submit(s)
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert "StartHumanLoop" not in stats["calls"]  # refused before the first loop


async def test_the_public_workforce_with_pii_classifier_passes_and_is_priced(
    emulator: Any, tmp_path: Path
) -> None:
    s = job(emulator.url, tmp_path, "public-reviews", content_classifiers=(PII,))
    report = await preflight(s, items=100, buckets=())
    info = report.flow_definition
    assert info.public_workforce and info.task_count == 3
    assert info.price_per_task == pytest.approx(0.036)
    assert report.estimated_cost == pytest.approx(100 * 3 * 0.036)
    assert len(report.warnings) == 1 and ADULT in report.warnings[0]

    both = job(emulator.url, tmp_path, "public-reviews", content_classifiers=(PII, ADULT))
    assert (await preflight(both, items=100, buckets=())).warnings == []


async def test_a_cost_above_max_cost_is_refused_unless_confirmed(
    emulator: Any, tmp_path: Path
) -> None:
    values: dict[str, Any] = {"content_classifiers": (PII, ADULT), "max_cost": 10.0}
    s = job(emulator.url, tmp_path, "public-reviews", **values)
    with pytest.raises(PreflightError, match="confirm_cost=True") as caught:
        await preflight(s, items=1000, buckets=())  # 1000 x 3 x $0.036 = $108
    assert "$108.00" in str(caught.value) and "max_cost $10.00" in str(caught.value)
    cli = as_cli(caught.value)
    assert "--max-cost $10.00" in cli and "pass --yes to accept" in cli
    assert caught.value.code == "MaxCost"

    under = await preflight(s, items=50, buckets=())  # $5.40
    assert under.estimated_cost == pytest.approx(5.4)
    confirmed = job(emulator.url, tmp_path, "public-reviews", confirm_cost=True, **values)
    assert (await preflight(confirmed, items=1000, buckets=())).estimated_cost == pytest.approx(
        108.0
    )
    unknown = await preflight(s, items=None, buckets=())
    assert unknown.estimated_cost is None
    assert any("cost limit (max_cost) was not applied" in w for w in unknown.warnings)


# -- input buckets -----------------------------------------------------------------------


async def test_buckets_with_the_a2i_cors_rule_in_the_region_pass(
    emulator: Any, tmp_path: Path, moto_s3_url: str, s3: Any
) -> None:
    good = await make_bucket(moto_s3_url, cors=[dict(A2I_CORS_RULE)])
    other = await make_bucket(
        moto_s3_url,
        cors=[{"AllowedMethods": ["PUT"], "AllowedOrigins": ["*"]}, dict(A2I_CORS_RULE)],
    )
    s = job(emulator.url, tmp_path, "textract-reviews", task=TaskType.TEXTRACT)
    report = await preflight(s, items=3, buckets={good, other}, s3_client=s3)
    assert report.buckets == sorted([good, other])
    assert report.warnings == []


async def test_a_bucket_without_cors_is_refused_with_the_rule_to_add(
    emulator: Any, tmp_path: Path, moto_s3_url: str, s3: Any
) -> None:
    bare = await make_bucket(moto_s3_url)
    put_only = await make_bucket(
        moto_s3_url, cors=[{"AllowedMethods": ["PUT"], "AllowedOrigins": ["*"]}]
    )
    s = job(emulator.url, tmp_path, "textract-reviews", task=TaskType.TEXTRACT)
    for bucket in (bare, put_only):
        with pytest.raises(PreflightError) as caught:
            await preflight(s, items=3, buckets=[bucket], s3_client=s3)
        message = str(caught.value)
        assert f"bucket {bucket}" in message
        assert f"put-bucket-cors --bucket {bucket}" in message
        rules = message.split("--cors-configuration '", 1)[1].rsplit("'", 1)[0]
        assert orjson.loads(rules) == {"CORSRules": [dict(A2I_CORS_RULE)]}


async def test_a_bucket_in_another_region_or_missing_is_refused(
    emulator: Any, tmp_path: Path, moto_s3_url: str, s3: Any
) -> None:
    far = await make_bucket(moto_s3_url, region="eu-west-1", cors=[dict(A2I_CORS_RULE)])
    s = job(emulator.url, tmp_path, "rekognition-reviews", task=TaskType.REKOGNITION)
    with pytest.raises(PreflightError, match=f"bucket {far} is in region eu-west-1"):
        await preflight(s, items=1, buckets=[far], s3_client=s3)
    ghost = f"gone-{uuid.uuid4().hex[:12]}"
    with pytest.raises(PreflightError, match=f"bucket {ghost} does not exist"):
        await preflight(s, items=1, buckets=[ghost], s3_client=s3)


async def test_a_bucket_allowing_get_from_some_origins_only_is_a_warning(
    emulator: Any, tmp_path: Path, moto_s3_url: str, s3: Any
) -> None:
    narrow = await make_bucket(
        moto_s3_url, cors=[{"AllowedMethods": ["GET"], "AllowedOrigins": ["https://x.example"]}]
    )
    s = job(emulator.url, tmp_path, "textract-reviews", task=TaskType.TEXTRACT)
    report = await preflight(s, items=1, buckets=[narrow], s3_client=s3)
    assert len(report.warnings) == 1 and narrow in report.warnings[0]


async def test_s3_checks_follow_the_s3_endpoint_variable(
    emulator: Any, tmp_path: Path, moto_s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = await make_bucket(moto_s3_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3_url)
    s = job(emulator.url, tmp_path, "textract-reviews", task=TaskType.TEXTRACT)
    with pytest.raises(PreflightError, match=f"bucket {bare} has no CORS"):
        await preflight(s, items=1, buckets=[bare])


async def test_custom_jobs_skip_bucket_checks(emulator: Any, tmp_path: Path) -> None:
    report = await preflight(job(emulator.url, tmp_path), items=1, buckets=["anything"])
    assert report.buckets == []


# -- scanning the manifest ---------------------------------------------------------------


async def test_scan_manifest_counts_valid_items_and_collects_buckets(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    lines = [
        {"id": "a", "document": "s3://scans-one/a.png"},
        {"id": "b", "document": "s3://scans-two/b.png"},
        {"id": "c", "document": "s3://scans-one/c.png"},
        {"id": "d"},  # invalid: no document
        {"id": "e", "document": "s3://scans-two/e.png", "content_classifiers": [PII]},
        {"id": "f", "document": "s3://scans-two/f.png", "content_classifiers": [PII]},
    ]
    manifest.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    s = job("http://127.0.0.1:9", tmp_path, task=TaskType.TEXTRACT)
    scan = await tally(
        job_planner(s, None, unique=False),
        read_manifest_batches(s.manifest, s.task),
        details=True,
    )
    assert (scan.to_send, scan.invalid) == (5, 1)
    assert scan.buckets == {"scans-one", "scans-two"} and scan.classifiers == {(PII,): 2}
