"""The rules of a job of several regions, as properties and through the command line.

Region names, bucket locations and flow lists (Hypothesis); the manifest's `region` field;
the region of real buckets of the emulator's S3 as `Routes` learns them; and the command
line's repeatable `--flow-definition-arn`.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from a2ibatch import ConfigError, Invalid, Item, S3Ref, TaskType
from a2ibatch._calls import Caller
from a2ibatch._counters import Counters
from a2ibatch._meters import Meters
from a2ibatch._regions import REGION_NAME, bucket_region, flow_list, flows_by_region
from a2ibatch._routes import Routes, Unroutable
from a2ibatch.manifest import read_manifest
from helpers import FLOW, emulator_get
from test_cli import cli
from test_emulator import client

pytestmark = pytest.mark.anyio

#: regions AWS has (and the shapes of their names: partitions, GovCloud, numbers)
REAL_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ap-east-1",
    "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
    "ap-southeast-4", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ca-central-1",
    "ca-west-1", "eu-central-1", "eu-central-2", "eu-west-1", "eu-west-2", "eu-west-3",
    "eu-south-1", "eu-south-2", "eu-north-1", "il-central-1", "me-south-1", "me-central-1",
    "mx-central-1", "sa-east-1", "us-gov-east-1", "us-gov-west-1", "cn-north-1",
    "cn-northwest-1",
)  # fmt: skip
REGIONS = st.sampled_from(REAL_REGIONS)
NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)


def arn(region: str, name: str = "reviews") -> str:
    return f"arn:aws:sagemaker:{region}:123456789012:flow-definition/{name}"


@given(REGIONS)
def test_a_bucket_location_names_its_region(region: str) -> None:
    assert REGION_NAME.fullmatch(region)
    assert bucket_region(region) == region  # a LocationConstraint is the region itself ...
    # ... but for us-east-1, which has none, and the legacy name of eu-west-1
    assert bucket_region(None) == bucket_region("") == "us-east-1"
    assert bucket_region("EU") == "eu-west-1"


@given(st.text(max_size=30))
def test_a_region_name_is_refused_unless_it_has_a_regions_shape(text: str) -> None:
    found = REGION_NAME.fullmatch(text)
    if text in REAL_REGIONS:
        assert found
    if found:
        head, *middle, number = text.split("-")
        assert len(head) == 2 and middle and number.isdigit()


@given(st.lists(st.tuples(REGIONS, NAMES), min_size=1, max_size=8))
def test_a_flow_list_is_one_flow_a_region(pairs: list[tuple[str, str]]) -> None:
    arns = [arn(region, name) for region, name in pairs]
    regions = {region for region, _ in pairs}
    clash = any(arn(r1, n1) != arn(r2, n2) for r1, n1 in pairs for r2, n2 in pairs if r1 == r2)
    if clash:
        with pytest.raises(ConfigError, match="two flow definitions of region"):
            flow_list(arns)
        return
    found = flow_list(arns)
    assert found == tuple(dict.fromkeys(arns))  # in order, each ARN once
    assert set(flows_by_region(found)) == regions
    assert all(flows_by_region(found)[a.split(":")[3]] == a for a in found)


@given(st.one_of(st.text(max_size=20), REGIONS, st.integers(), st.none(), st.lists(REGIONS)))
@example(value="1")  # a digit of the reason's own text
@example(value=-(2**63) - 1)  # past 64 bits
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_region_field_of_a_custom_line(tmp_path: Path, value: Any) -> None:
    import anyio

    # The standard library writes integers of any size (orjson stops at 64 bits); a line
    # with a string no region has gives the reason of every string that is not a region.
    path = tmp_path / f"{uuid.uuid4().hex}.jsonl"
    lines = [
        {"id": "a", "input": {"x": 1}, "region": value},
        {"id": "b", "input": {}, "region": "?"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    async def read() -> list[Item | Invalid]:
        return [e async for e in read_manifest(str(path), TaskType.CUSTOM)]

    entry, other = anyio.run(read, backend="asyncio")
    assert isinstance(other, Invalid)
    if value is None:
        assert isinstance(entry, Item) and entry.region is None
    elif isinstance(value, str) and REGION_NAME.fullmatch(value):
        assert isinstance(entry, Item) and entry.region == value
    else:
        assert isinstance(entry, Invalid) and "field 'region'" in entry.reason
        if isinstance(value, str):  # one fixed reason: the line's text is never echoed
            assert entry.reason == other.reason


async def test_a_built_in_line_may_not_name_a_region(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    row = {"id": "a", "document": "s3://scans/a.png", "region": "eu-west-1"}
    path.write_bytes(orjson.dumps(row) + b"\n")
    (entry,) = [e async for e in read_manifest(str(path), TaskType.TEXTRACT)]
    assert isinstance(entry, Invalid) and "field 'region' belongs to custom" in entry.reason


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(REGIONS.filter(lambda r: not r.startswith(("cn-", "us-gov-"))), min_size=1,
                max_size=4))  # fmt: skip
async def test_routes_learn_each_buckets_region_once(emulator: Any, regions: list[str]) -> None:
    """Buckets made in their regions (us-east-1 without a constraint) are routed there."""
    buckets: dict[str, str] = {}
    for region in regions:
        bucket = f"b-{uuid.uuid4().hex[:20]}"
        async with client(emulator.url, "s3", region=region) as s3:
            if region == "us-east-1":
                await s3.create_bucket(Bucket=bucket)
            else:
                where = {"LocationConstraint": region}
                await s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=where)
        buckets[bucket] = region
    flows = {region: arn(region) for region in set(regions)}
    before = (await emulator_get(emulator.url, "/_emulator/stats"))["s3_requests"]
    async with client(emulator.url, "s3") as s3:
        routes = Routes(TaskType.TEXTRACT, flows, s3=s3, caller=Caller(Meters(Counters())))
        items = [Item(id=f"{b}-{k}", s3=S3Ref(b, f"k{k}")) for b in buckets for k in range(3)]
        await routes.prepare(items)
        await routes.prepare(items)  # known: no second lookup
        after = (await emulator_get(emulator.url, "/_emulator/stats"))["s3_requests"]
        assert after - before == len(buckets)
        for item in items:
            assert item.s3 is not None
            assert routes.route(item) == buckets[item.s3.bucket]
        missing = Item(id="m", s3=S3Ref("never-made-bucket", "k"))
        await routes.prepare([missing])
        routed = routes.route(missing)
        assert isinstance(routed, Unroutable) and "NoSuchBucket" in routed.reason


# -- the command line ----------------------------------------------------------------------

EU_FLOW = FLOW.replace("us-east-1", "eu-west-1")


async def test_the_flag_repeats_once_per_region(emulator: Any, tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    where = ["us-east-1", "eu-west-1", "eu-west-1", "ap-south-1"]
    rows = [{"id": f"c{i}", "input": {"n": i}, "region": r} for i, r in enumerate(where)]
    manifest.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    ledger = tmp_path / "l.jsonl"
    base = ["submit", str(manifest), "--task", "custom", "--ledger", str(ledger),
            "--endpoint-url", emulator.url, "--region", "us-east-1", "--log-format", "json",
            "--flow-definition-arn", FLOW, "--flow-definition-arn", EU_FLOW]  # fmt: skip

    code, out, err = await cli(*base, "--dry-run", "--json")
    assert code == 1, err  # the ap-south-1 line has no flow
    report = orjson.loads(out.splitlines()[0])
    assert report["regions"] == {"eu-west-1": 2, "us-east-1": 1} and report["invalid"] == 1

    code, out, err = await cli(*base)
    assert code == 1 and "Traceback" not in err
    summary = orjson.loads(out)["summary"]
    assert summary["started"] == 3 and summary["invalid"] == 1

    code, out, _ = await cli("status", str(ledger))
    assert code == 0 and "eu-west-1" in out and EU_FLOW in out
    code, out, _ = await cli("status", str(ledger), "--json")
    assert orjson.loads(out.splitlines()[0])["regions"] == {
        "us-east-1": {"started": 1},
        "eu-west-1": {"started": 2},
    }

    code, _, err = await cli(*base, "--flow-definition-arn", FLOW.replace("reviews", "x"))
    assert code == 2 and "two flow definitions of region us-east-1" in err
    assert "Traceback" not in err

    code, out, _ = await cli("submit", "--help")
    assert code == 0 and "repeat it, once per" in out and "eu-west-1" in out
