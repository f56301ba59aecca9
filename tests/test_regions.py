"""One job over several regions, over real HTTP against the emulator.

Each item goes to the flow definition of its region (a document's or image's bucket's, a
custom item's `region` field), through clients signed for that region; an item of a region
without a flow is refused before any paid call; reruns across regions send nothing twice;
the lifecycle commands follow the loops in each region; and the ledger's rules for a
change of the flow list hold.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from a2ibatch import (
    AwsSettings,
    ConfigError,
    Item,
    LedgerError,
    SubmitSettings,
    TaskType,
    delete_loops,
    dry_run,
    reconcile,
    results,
    status,
    stop_loops,
    submit,
    track,
)
from a2ibatch._naming import loop_name
from a2ibatch.ledger import load_ledger
from helpers import FLOW, TASKS, emulator_get, final_outcomes, ledger_records, settings
from test_emulator import client

pytestmark = pytest.mark.anyio

US, EU, AP = "us-east-1", "eu-west-1", "ap-southeast-2"
FLOWS = {region: FLOW.replace(US, region) for region in (US, EU, AP)}
BUCKETS = {US: "scans", EU: "scans-eu", AP: "scans-ap"}
CORS = {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
START = {
    TaskType.CUSTOM: "StartHumanLoop",
    TaskType.TEXTRACT: "AnalyzeDocument",
    TaskType.REKOGNITION: "DetectModerationLabels",
}


async def make_buckets(url: str, regions: tuple[str, ...] = (US, EU, AP)) -> None:
    """The input buckets, each in its region, with the CORS rule preflight wants."""
    for region in regions:
        async with client(url, "s3", region=region) as s3:
            if region == US:
                await s3.create_bucket(Bucket=BUCKETS[region])
            else:
                where = {"LocationConstraint": region}
                await s3.create_bucket(Bucket=BUCKETS[region], CreateBucketConfiguration=where)
            await s3.put_bucket_cors(Bucket=BUCKETS[region], CORSConfiguration=CORS)


def line(task: TaskType, region: str, i: int, *, bucket: str | None = None) -> dict[str, Any]:
    item_id = f"{region}-{i:03d}"
    where = bucket or BUCKETS[region]
    if task is TaskType.CUSTOM:
        return {"id": item_id, "input": {"n": i, "at": region}, "region": region}
    if task is TaskType.TEXTRACT:
        return {"id": item_id, "document": f"s3://{where}/forms/{item_id}.png"}
    return {"id": item_id, "image": f"s3://{where}/images/{item_id}.jpg"}


def write(path: Path, task: TaskType, counts: dict[str, int]) -> Path:
    """A manifest of `counts[region]` items of each region, the regions interleaved."""
    rows = [line(task, r, i) for i in range(max(counts.values())) for r in counts if i < counts[r]]
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def job(
    task: TaskType, url: str, tmp_path: Path, manifest: Path, *regions: str, **extra: Any
) -> SubmitSettings:
    arns = tuple(FLOWS[r] for r in regions or (US, EU))
    return settings(task, url, tmp_path, manifest, flow_definition_arn=arns, **extra)


def payload(task: TaskType, row: dict[str, Any]) -> str:
    if task is TaskType.CUSTOM:
        return orjson.dumps(row["input"]).decode()
    return f"{row.get('document') or row.get('image')}\n"


async def stats(url: str) -> dict[str, Any]:
    found: dict[str, Any] = await emulator_get(url, "/_emulator/stats")
    return found


def by_region(found: dict[str, Any], operation: str) -> dict[str, int]:
    calls = found["calls_by_region"]
    return {region: ops[operation] for region, ops in calls.items() if operation in ops}


def drop_outcomes(path: Path, ids: set[str]) -> None:
    """The ledger as a kill leaves it after these items' calls went out: their intents
    stay, their outcomes (and the run's summary) are lost."""
    kept = [
        r
        for r in ledger_records(path)
        if not (r["event"] == "outcome" and r["id"] in ids) and r["event"] != "summary"
    ]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in kept))
    Path(f"{path}.resume").unlink(missing_ok=True)


# -- one job, two regions ------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
async def test_each_item_goes_to_the_flow_of_its_region(
    emulator: Any, tmp_path: Path, task: TaskType
) -> None:
    await make_buckets(emulator.url)
    manifest = write(tmp_path / "m.jsonl", task, {US: 6, EU: 5, AP: 3})
    s = job(task, emulator.url, tmp_path, manifest, US, EU, preflight=True)
    summary = await submit(s)
    assert summary.counts["invalid"] == 3 and summary.exit_code == 1
    sent = summary.counts["started"] + summary.counts["not_activated"]
    assert sent == 11

    rows = {r["id"]: r for r in map(orjson.loads, manifest.read_bytes().splitlines())}
    outcomes = final_outcomes(s.ledger)
    for item_id, outcome in outcomes.items():
        assert item_id is not None
        region = item_id.rsplit("-", 1)[0]
        if region == AP:  # no flow there: refused before any call, naming the region only
            assert outcome["status"] == "invalid"
            message = outcome["error"]["message"]
            assert AP in message and "no flow definition" in message
            assert BUCKETS[AP] not in message and item_id not in message
            continue
        assert outcome["region"] == region
        assert outcome["status"] in ("started", "not_activated")
        # The name is the one a job of that region's flow alone gives the item.
        own = loop_name("a2ib", FLOWS[region], task.value, item_id, payload(task, rows[item_id]))
        assert outcome["loop_name"] == own
        if outcome["status"] == "started":
            assert outcome["human_loop_arn"].split(":")[3] == region

    loops = await emulator_get(emulator.url, "/_emulator/loops")
    started = {o["loop_name"]: o for o in outcomes.values() if o["status"] == "started"}
    assert {x["name"] for x in loops} == set(started)
    for loop in loops:
        assert loop["region"] == started[loop["name"]]["region"]
        assert loop["flow_definition_arn"] == FLOWS[loop["region"]]
    found = await stats(emulator.url)
    assert by_region(found, START[task]) == {US: 6, EU: 5}  # one call an item, none in AP
    assert AP not in found["calls_by_region"]
    assert by_region(found, "DescribeFlowDefinition") == {US: 1, EU: 1}  # preflight, each
    assert found["inputs_with_multiple_loops"] == 0

    records = ledger_records(s.ledger)
    assert records[0]["flow_definition_arn"] == [FLOWS[US], FLOWS[EU]]
    intents = [r for r in records if r["event"] == "intent"]
    assert len(intents) == 11 and all(r["region"] == r["id"].rsplit("-", 1)[0] for r in intents)

    again = await submit(s)  # a rerun: everything sent is done, nothing is sent again
    assert again.counts["skipped"] == 11
    assert again.counts["invalid"] + again.counts["skipped_invalid"] == 3
    assert (await stats(emulator.url))["calls_by_region"] == found["calls_by_region"]


async def test_a_job_of_one_flow_is_written_as_before(emulator: Any, tmp_path: Path) -> None:
    manifest = write(tmp_path / "m.jsonl", TaskType.CUSTOM, {US: 4})
    s = job(TaskType.CUSTOM, emulator.url, tmp_path, manifest, US)
    assert s.flow_definition_arn == FLOWS[US]  # a list of one is the ARN itself
    await submit(s)
    records = ledger_records(s.ledger)
    assert records[0]["flow_definition_arn"] == FLOWS[US]
    assert not any("region" in r for r in records if r["event"] in ("intent", "outcome"))
    # A line naming another region than the only flow's is refused.
    other = tmp_path / "other.jsonl"
    other.write_bytes(orjson.dumps(line(TaskType.CUSTOM, EU, 0)) + b"\n")
    elsewhere = await submit(job(TaskType.CUSTOM, emulator.url, tmp_path, other, US))
    assert elsewhere.counts["invalid"] == 1
    (refused,) = [o for o in final_outcomes(s.ledger).values() if o["status"] == "invalid"]
    assert EU in refused["error"]["message"] and US in refused["error"]["message"]


@pytest.mark.parametrize("emulator", [{"activation_rate": 1.0}], indirect=True)
@pytest.mark.parametrize("task", TASKS)
async def test_a_rerun_after_a_kill_sends_nothing_twice_in_any_region(
    emulator: Any, tmp_path: Path, task: TaskType
) -> None:
    await make_buckets(emulator.url, (US, EU))
    manifest = write(tmp_path / "m.jsonl", task, {US: 5, EU: 5})
    s = job(task, emulator.url, tmp_path, manifest)
    await submit(s)
    loops = await emulator_get(emulator.url, "/_emulator/loops")
    assert len(loops) == 10
    lost = {f"{US}-001", f"{US}-003", f"{EU}-000", f"{EU}-004"}
    drop_outcomes(Path(s.ledger), lost)
    before = await stats(emulator.url)

    rerun = await submit(s)
    assert rerun.counts["recovered"] == 4 and rerun.counts["skipped"] == 6
    after = await stats(emulator.url)
    assert after["loops_created"] == 10 and after["inputs_with_multiple_loops"] == 0
    looked = {
        r: after["calls_by_region"][r].get("DescribeHumanLoop", 0)
        - before["calls_by_region"][r].get("DescribeHumanLoop", 0)
        for r in (US, EU)
    }
    assert looked[US] >= 2 and looked[EU] >= 2  # each checked in its own region
    outcomes = final_outcomes(s.ledger)
    for item_id in lost:
        outcome = outcomes[item_id]
        assert outcome["status"] == "started" and outcome["recovered"] is True
        assert outcome["region"] == item_id.rsplit("-", 1)[0]


# -- regions that cannot be read -----------------------------------------------------------


async def test_a_bucket_that_does_not_exist_refuses_only_its_items(
    emulator: Any, tmp_path: Path
) -> None:
    await make_buckets(emulator.url, (US, EU))
    rows = [line(TaskType.TEXTRACT, US, 0), line(TaskType.TEXTRACT, EU, 0)]
    rows += [line(TaskType.TEXTRACT, EU, i, bucket="no-such-scans") for i in (1, 2)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    s = job(TaskType.TEXTRACT, emulator.url, tmp_path, manifest)
    summary = await submit(s)
    assert summary.counts["invalid"] == 2
    outcomes = final_outcomes(s.ledger)
    for item_id in (f"{EU}-001", f"{EU}-002"):
        message = outcomes[item_id]["error"]["message"]
        assert "NoSuchBucket" in message and "no-such-scans" not in message
    assert by_region(await stats(emulator.url), "AnalyzeDocument") == {US: 1, EU: 1}


async def denying_s3() -> tuple[web.AppRunner, str]:
    """An S3 endpoint that answers every request AccessDenied, as a bucket policy would."""

    async def deny(request: web.Request) -> web.Response:
        body = (
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
            "<Message>Access Denied</Message><RequestId>1</RequestId></Error>"
        )
        return web.Response(status=403, text=body, content_type="application/xml")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", deny)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_access_denied_to_a_buckets_region_is_recorded_not_raised(
    emulator: Any, tmp_path: Path
) -> None:
    manifest = write(tmp_path / "m.jsonl", TaskType.REKOGNITION, {US: 2, EU: 2})
    runner, s3_url = await denying_s3()
    try:
        aws = AwsSettings(endpoint_url=emulator.url, s3_endpoint_url=s3_url, region=US)
        s = job(TaskType.REKOGNITION, emulator.url, tmp_path, manifest, aws=aws)
        summary = await submit(s)
    finally:
        await runner.cleanup()
    assert summary.counts["invalid"] == 4 and summary.aborted is None
    for outcome in final_outcomes(s.ledger).values():
        message = outcome["error"]["message"]
        assert "AccessDenied" in message and "GetBucketLocation" in message
        assert "scans" not in message
    assert "DetectModerationLabels" not in (await stats(emulator.url))["calls"]


# -- a change of the flow list -------------------------------------------------------------


async def test_flows_added_and_left_out_and_a_changed_one_refused(
    emulator: Any, tmp_path: Path
) -> None:
    manifest = write(tmp_path / "m.jsonl", TaskType.CUSTOM, {US: 3, EU: 3})

    first = await submit(job(TaskType.CUSTOM, emulator.url, tmp_path, manifest, US))
    assert first.counts["started"] == 3 and first.counts["invalid"] == 3
    assert by_region(await stats(emulator.url), "StartHumanLoop") == {US: 3}

    # Adding eu-west-1's flow: its lines, refused for want of one, are sent now (the resume
    # point of the first run, whose mark covered them, is not used by other flows).
    second = await submit(job(TaskType.CUSTOM, emulator.url, tmp_path, manifest, US, EU))
    assert second.counts["started"] == 3 and second.counts["skipped"] == 3
    assert second.resumed_after_line is None
    assert by_region(await stats(emulator.url), "StartHumanLoop") == {US: 3, EU: 3}

    # Leaving us-east-1 out: its items are done, and stay done.
    third = await submit(job(TaskType.CUSTOM, emulator.url, tmp_path, manifest, EU))
    assert third.counts["skipped"] == 6 and third.counts["calls"] == 0

    # Another ARN for a region the ledger knows would rename its items: refused.
    changed = FLOWS[EU].replace("reviews", "other-reviews")
    s = settings(
        "custom", emulator.url, tmp_path, manifest, flow_definition_arn=(FLOWS[US], changed)
    )
    with pytest.raises(LedgerError) as caught:
        await submit(s)
    assert (
        EU in str(caught.value) and changed in str(caught.value) and FLOWS[EU] in str(caught.value)
    )

    ledger = load_ledger(tmp_path / "ledger.jsonl", loops=True)
    assert ledger.flows == {US: FLOWS[US], EU: FLOWS[EU]}
    assert {loop.id: loop.region for loop in ledger.loops.values()} == {
        f"{r}-{i:03d}": r for r in (US, EU) for i in range(3)
    }
    report = await status(tmp_path / "ledger.jsonl")
    assert report.flows == {US: FLOWS[US], EU: FLOWS[EU]}
    assert report.regions == {US: {"started": 3}, EU: {"started": 3}}


async def test_a_pending_item_is_never_sent_to_another_region(
    emulator: Any, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.jsonl"  # custom items without a region: the only flow's
    manifest.write_bytes(b"".join(orjson.dumps({"id": f"c{i}", "input": {"n": i}}) + b"\n"
                                  for i in range(4)))  # fmt: skip
    await submit(job(TaskType.CUSTOM, emulator.url, tmp_path, manifest, US))
    drop_outcomes(tmp_path / "ledger.jsonl", {"c1", "c2"})
    calls = (await stats(emulator.url))["calls"]

    moved = await submit(job(TaskType.CUSTOM, emulator.url, tmp_path, manifest, EU))
    assert moved.counts["invalid"] == 2 and moved.counts["skipped"] == 2
    assert (await stats(emulator.url))["calls"] == calls  # nothing sent, in any region
    outcomes = final_outcomes(tmp_path / "ledger.jsonl")
    for item_id in ("c1", "c2"):
        assert outcomes[item_id]["status"] == "invalid"
        assert "may have reached region us-east-1" in outcomes[item_id]["error"]["message"]

    back = await submit(job(TaskType.CUSTOM, emulator.url, tmp_path, manifest, US, EU))
    assert back.counts["invalid"] == 2  # several flows: a custom item must name its region
    home = await submit(job(TaskType.CUSTOM, emulator.url, tmp_path, manifest, US))
    assert home.counts["recovered"] == 2 and home.counts["skipped"] == 2
    found = await stats(emulator.url)
    assert found["loops_created"] == 4 and found["inputs_with_multiple_loops"] == 0


async def test_items_of_a_library_caller_name_their_region(emulator: Any, tmp_path: Path) -> None:
    items = [
        Item(id="a", input_content='{"x": 1}', region=US),
        Item(id="b", input_content='{"x": 2}', region=EU),
        Item(id="c", input_content='{"x": 3}'),
    ]
    s = job(TaskType.CUSTOM, emulator.url, tmp_path, tmp_path / "unused.jsonl")
    summary = await submit(s, items=items)
    assert summary.counts["started"] == 2 and summary.counts["invalid"] == 1
    outcomes = final_outcomes(s.ledger)
    assert (outcomes["a"]["region"], outcomes["b"]["region"]) == (US, EU)
    assert "needs field 'region'" in outcomes["c"]["error"]["message"]


# -- the lifecycle across regions ----------------------------------------------------------


@pytest.mark.parametrize("emulator", [{"complete_after": 0.5}], indirect=True)
async def test_track_results_reconcile_and_delete_follow_each_region(
    emulator: Any, tmp_path: Path
) -> None:
    manifest = write(tmp_path / "m.jsonl", TaskType.CUSTOM, {US: 4, EU: 3})
    s = job(TaskType.CUSTOM, emulator.url, tmp_path, manifest)
    await submit(s)
    aws = AwsSettings(endpoint_url=emulator.url, region=US)
    report = await track(s.ledger, aws=aws, watch=True, interval=0.5, timeout=60)
    assert report.done and report.counts == {"Completed": 7} and report.described == 0
    assert set(by_region(await stats(emulator.url), "ListHumanLoops")) == {US, EU}

    written = await results(s.ledger, tmp_path / "answers.jsonl", aws=aws)
    assert written.written == 7 and written.missing == 0 and not written.errors
    rows = [orjson.loads(x) for x in (tmp_path / "answers.jsonl").read_bytes().splitlines()]
    for row in rows:
        assert row["human_loop_arn"].split(":")[3] == row["id"].rsplit("-", 1)[0]
        assert row["input"] == {"n": int(row["id"][-3:]), "at": row["id"].rsplit("-", 1)[0]}

    differences = await reconcile(s.ledger, aws=aws)
    assert differences.ok and differences.ledger_loops == 7 and differences.service_loops == 7
    assert differences.to_dict()["flow_definition_arn"] == [FLOWS[US], FLOWS[EU]]

    deleted = await delete_loops(s.ledger, aws=aws)
    assert deleted.acted == 7 and not deleted.errors
    assert by_region(await stats(emulator.url), "DeleteHumanLoop") == {US: 4, EU: 3}
    assert (await reconcile(s.ledger, aws=aws)).ok  # deleted by us: expected to be gone


async def test_stop_stops_the_loops_of_every_region(emulator: Any, tmp_path: Path) -> None:
    manifest = write(tmp_path / "m.jsonl", TaskType.CUSTOM, {US: 2, EU: 3})
    s = job(TaskType.CUSTOM, emulator.url, tmp_path, manifest)
    await submit(s)
    stopped = await stop_loops(s.ledger, aws=AwsSettings(endpoint_url=emulator.url, region=US))
    assert stopped.acted == 5 and not stopped.errors
    assert by_region(await stats(emulator.url), "StopHumanLoop") == {US: 2, EU: 3}
    loops = await emulator_get(emulator.url, "/_emulator/loops")
    assert {x["status"] for x in loops} <= {"Stopping", "Stopped"}


# -- the dry run, settings, and the ledger's rules -----------------------------------------


async def test_the_dry_run_counts_each_region(emulator: Any, tmp_path: Path) -> None:
    await make_buckets(emulator.url, (US, EU))
    manifest = write(tmp_path / "m.jsonl", TaskType.TEXTRACT, {US: 4, EU: 2, AP: 1})
    report = await dry_run(job(TaskType.TEXTRACT, emulator.url, tmp_path, manifest))
    assert report.to_send == 6 and report.invalid == 1 and report.regions == {EU: 2, US: 4}
    assert report.to_dict()["regions"] == {EU: 2, US: 4}
    assert "AnalyzeDocument" not in (await stats(emulator.url))["calls"]


def test_flow_definitions_at_most_one_a_region() -> None:
    base: dict[str, Any] = {"task": "custom", "ledger": "l.jsonl"}
    one = SubmitSettings(**base, flow_definition_arn=[FLOWS[US]])
    assert one.flow_definition_arn == FLOWS[US] and one.flow_definition_arns == (FLOWS[US],)
    two = SubmitSettings(**base, flow_definition_arn=[FLOWS[US], FLOWS[EU], FLOWS[US]])
    assert two.flow_definition_arn == (FLOWS[US], FLOWS[EU])
    assert two.flows == {US: FLOWS[US], EU: FLOWS[EU]}
    with pytest.raises(ConfigError, match="two flow definitions of region us-east-1"):
        SubmitSettings(**base, flow_definition_arn=[FLOWS[US], FLOW.replace("reviews", "x")])
    with pytest.raises(ConfigError, match="names no region"):
        SubmitSettings(**base, flow_definition_arn=[FLOWS[US], FLOW.replace(US, "")])
    bad: Any
    for bad in ([], [3], 7):
        with pytest.raises(ConfigError, match="flow_definition_arn must be"):
            SubmitSettings(**base, flow_definition_arn=bad)


def test_the_flow_list_from_a_config_file_and_the_environment(tmp_path: Path) -> None:
    from a2ibatch import load_settings

    config = tmp_path / "job.toml"
    config.write_text(
        f'task = "textract"\nledger = "l.jsonl"\nflow_definition_arn = ["{FLOWS[US]}", '
        f'"{FLOWS[EU]}"]\n'
    )
    loaded = load_settings({}, config_file=config, environ={})
    assert loaded.flow_definition_arns == (FLOWS[US], FLOWS[EU])
    env = {"A2IBATCH_FLOW_DEFINITION_ARN": f"{FLOWS[EU]}, {FLOWS[AP]}"}
    assert load_settings({}, config_file=config, environ=env).flows == {
        EU: FLOWS[EU],
        AP: FLOWS[AP],
    }
    flags = {"flow_definition_arn": [FLOWS[US]]}
    assert load_settings(flags, config_file=config, environ=env).flow_definition_arn == FLOWS[US]


def test_the_ledger_allows_new_regions_and_refuses_a_changed_one(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    job_record = {"event": "job", "run": "r", "task": "custom", "name_prefix": "a2ib",
                  "manifest": "m", "versions": {}, "at": "2026-01-01T00:00:00.000Z"}  # fmt: skip
    records = [
        {**job_record, "flow_definition_arn": FLOWS[US]},
        {"event": "intent", "id": "a", "line": 1, "loop_name": "n-a", "at": "x"},
        {**job_record, "flow_definition_arn": [FLOWS[US], FLOWS[EU]]},
        {"event": "intent", "id": "b", "line": 2, "loop_name": "n-b", "region": EU, "at": "x"},
    ]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    index = load_ledger(path)
    assert index.flows == {US: FLOWS[US], EU: FLOWS[EU]}
    assert (index.region_of("a"), index.region_of("b"), index.region_of("c")) == (US, EU, None)
    assert index.lookup("b") == (None, True)
    index.check_compatible("custom", [FLOWS[US], FLOWS[EU], FLOWS[AP]], "a2ib")  # adds one
    index.check_compatible("custom", FLOWS[AP], "a2ib")  # leaves two out, adds one
    for arns in ([FLOWS[US], FLOWS[EU].replace("reviews", "new")], FLOWS[US] + "2"):
        with pytest.raises(LedgerError, match="flow definition"):
            index.check_compatible("custom", arns, "a2ib")
    with pytest.raises(LedgerError, match="name prefix"):
        index.check_compatible("custom", FLOWS[US], "other")


def test_a_resume_point_keeps_each_items_region(tmp_path: Path) -> None:
    """The index a resume point saves keeps the flows, the region codes and each id's
    region; a rerun reading on after it (a run that adds a region) ends as a full read."""
    from a2ibatch.ledger import LedgerFile, keeper_for, load_resume, read_ledger

    path = tmp_path / "ledger.jsonl"
    job_record = {"event": "job", "run": "r", "task": "custom", "name_prefix": "a2ib",
                  "manifest": "m", "versions": {}, "at": "2026-01-01T00:00:00.000Z"}  # fmt: skip

    def intent(item_id: str, region: str | None) -> dict[str, Any]:
        found = {"event": "intent", "id": item_id, "line": 1, "loop_name": f"n-{item_id}"}
        return {**found, "at": "x", **({} if region is None else {"region": region})}

    def outcome(item_id: str, region: str) -> dict[str, Any]:
        return {"event": "outcome", "id": item_id, "line": 1, "status": "started",
                "loop_name": f"n-{item_id}", "human_loop_arn": None, "activation": None,
                "attempts": 1, "error": None, "recovered": False, "at": "x",
                "region": region}  # fmt: skip

    before = [
        {**job_record, "flow_definition_arn": FLOWS[US]},
        intent("a", None),
        outcome("a", US),
        {**job_record, "flow_definition_arn": [FLOWS[EU], FLOWS[US]]},
        intent("b", EU),
        outcome("b", EU),
        intent("c", EU),  # pending: a kill after its call went out
        intent("d", US),
    ]
    after = [
        {**job_record, "flow_definition_arn": [FLOWS[US], FLOWS[EU], FLOWS[AP]]},
        intent("e", AP),
        outcome("e", AP),
        outcome("d", US),
    ]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in before))
    file = LedgerFile.open(str(path), write=False)
    assert file is not None
    try:
        keeper_for(str(path), read_ledger(file, path=str(path)))._save(None)
    finally:
        file.close()
    with path.open("ab") as f:
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in after))
    file = LedgerFile.open(str(path), write=False)
    assert file is not None
    try:
        loaded = load_resume(file)
        full = read_ledger(file, path=str(path))
    finally:
        file.close()
    assert loaded is not None
    index, _ = loaded
    assert index.read_to == full.read_to and index.read_to > 0
    regions = {item_id: full.region_of(item_id) for item_id in "abcdef"}
    assert regions == {"a": US, "b": EU, "c": EU, "d": US, "e": AP, "f": None}
    assert {item_id: index.region_of(item_id) for item_id in "abcdef"} == regions
    assert index.lookup("c") == full.lookup("c") == (None, True)
    assert index.region_counts() == full.region_counts()
    assert index.flows == full.flows == {US: FLOWS[US], EU: FLOWS[EU], AP: FLOWS[AP]}
    assert index.regions == full.regions and index.run_flows == full.run_flows


def test_a_resume_point_from_before_regions_still_loads(tmp_path: Path) -> None:
    """A resume point without the regions' fields: its ledger had one flow."""
    from a2ibatch.ledger import RESUME_SUFFIX, LedgerFile, keeper_for, load_resume, read_ledger

    path = tmp_path / "ledger.jsonl"
    job_record = {"event": "job", "run": "r", "task": "custom", "name_prefix": "a2ib",
                  "manifest": "m", "versions": {}, "at": "2026-01-01T00:00:00.000Z",
                  "flow_definition_arn": FLOWS[US]}  # fmt: skip
    intent = {"event": "intent", "id": "a", "line": 1, "loop_name": "n-a", "at": "x"}
    path.write_bytes(orjson.dumps(job_record) + b"\n" + orjson.dumps(intent) + b"\n")
    file = LedgerFile.open(str(path), write=False)
    assert file is not None
    try:
        keeper = keeper_for(str(path), read_ledger(file, path=str(path)))
        keeper._save(None)
        point = Path(str(path) + RESUME_SUFFIX)
        head, _, body = point.read_bytes().partition(b"\n")
        meta = orjson.loads(head)
        for name in ("flows", "regions", "run_flows"):
            del meta["index"][name]
        point.write_bytes(orjson.dumps(meta) + b"\n" + body)
        loaded = load_resume(file)
    finally:
        file.close()
    assert loaded is not None
    index, _ = loaded
    assert index.flows == {US: FLOWS[US]} and index.run_flows == (FLOWS[US],)
    assert index.region_of("a") == US and index.lookup("a") == (None, True)


# -- ledger locations ----------------------------------------------------------------------


async def test_shards_and_a_ledger_in_s3_across_regions(emulator: Any, tmp_path: Path) -> None:
    await make_buckets(emulator.url, (US, EU))
    async with client(emulator.url, "s3") as s3:
        await s3.create_bucket(Bucket="ledgers")
    manifest = write(tmp_path / "m.jsonl", TaskType.TEXTRACT, {US: 10, EU: 10})
    location = "s3://ledgers/jobs/regions/"
    summaries = [
        await submit(
            job(
                TaskType.TEXTRACT,
                emulator.url,
                tmp_path,
                manifest,
                ledger=location,
                shards=2,
                shard_index=k,
                work_dir=tmp_path / f"w{k}",
            )
        )
        for k in range(2)
    ]
    assert sum(s.counts["started"] + s.counts["not_activated"] for s in summaries) == 20
    before = await stats(emulator.url)
    again = await submit(
        job(TaskType.TEXTRACT, emulator.url, tmp_path, manifest, ledger=location,
            work_dir=tmp_path / "w2")
    )  # fmt: skip
    assert again.counts["skipped"] == 20 and again.counts["calls"] == 0
    assert (await stats(emulator.url))["calls_by_region"] == before["calls_by_region"]
    report = await status(location, aws=AwsSettings(endpoint_url=emulator.url, region=US))
    assert set(report.flows) == {US, EU}
    assert sum(sum(by.values()) for by in report.regions.values()) == 20


async def test_a_lost_container_s_loops_are_listed_in_every_region(
    emulator: Any, tmp_path: Path
) -> None:
    """The names a ledger in S3 lost with its container are found in each region's flow."""
    from contextlib import AsyncExitStack

    from a2ibatch._counters import Counters
    from a2ibatch._lanes import open_lanes, recovered_in_lanes
    from a2ibatch._retry import RetryPolicy
    from a2ibatch._tasks import adapter_for
    from a2ibatch.ledger import LedgerFile
    from test_emulator import start_args

    for region in (US, EU):
        async with client(emulator.url, "sagemaker-a2i-runtime", region=region) as a2i:
            await a2i.start_human_loop(**start_args(f"a2ib-{region}", flow=FLOWS[region]))
            await a2i.start_human_loop(**start_args(f"other-{region}", flow=FLOWS[region]))
    path = tmp_path / "ledger.jsonl"
    at = "2020-01-01T00:00:00.000Z"
    record = {"event": "intent", "id": "x", "line": 1, "loop_name": "n", "at": at}
    path.write_bytes(orjson.dumps(record) + b"\n")  # no summary last: the run did not end
    s = job(TaskType.CUSTOM, emulator.url, tmp_path, tmp_path / "m.jsonl")
    file = LedgerFile.open(str(path), write=False)
    assert file is not None
    try:
        async with AsyncExitStack() as stack:
            lanes = await open_lanes(
                stack, s, adapter_for("custom"), Counters(), RetryPolicy(), None
            )
            names = await recovered_in_lanes(lanes, "a2ib", file)
    finally:
        file.close()
    assert names == {f"a2ib-{US}", f"a2ib-{EU}"}
