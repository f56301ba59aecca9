"""The applied quota from Service Quotas, against the emulator over HTTP, and the controller
starting from it, in the simulated time of test_rate."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aioboto3
import anyio
import pytest

from a2ibatch import AwsSettings, Item, Job, Submitter, TaskType, _quotas, submit
from a2ibatch._admission import AdmissionCount
from a2ibatch._aws import client_kwargs
from a2ibatch._calls import Caller
from a2ibatch._counters import Counters
from a2ibatch._meters import Meters
from a2ibatch._quotas import AppliedQuota, applied_quota
from a2ibatch._rate import Phase, RateController, RateSettings
from a2ibatch.emulator._service_quotas import UNLIMITED_RATE
from helpers import FLOW, TASKS, emulator_get, settings, write_manifest
from test_rate import Service, Sim

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def quotas_client(url: str, region: str = "us-east-1") -> AsyncIterator[Any]:
    """A Service Quotas client made as a job makes its clients."""
    kwargs = client_kwargs(AwsSettings(endpoint_url=url, region=region), "service-quotas", 4)
    async with aioboto3.Session().client("service-quotas", **kwargs) as client:
        yield client


async def lookup(url: str, operation: str, **options: Any) -> tuple[AppliedQuota | None, Meters]:
    meters = Meters(Counters(), primary=operation)
    async with quotas_client(url) as quotas:
        return await applied_quota(Caller(meters), quotas, operation, **options), meters


@pytest.mark.parametrize(
    "emulator", [{"quota": 150.0, "quotas": {"AnalyzeDocument": 7.5}}], indirect=True
)
async def test_the_applied_quota_of_each_start_call(emulator: Any) -> None:
    start, _ = await lookup(emulator.url, "StartHumanLoop")
    assert start == AppliedQuota(
        "StartHumanLoop", 150.0, "sagemaker", "L-EFB97D75", "Rate of StartHumanLoop requests"
    )
    assert start.describe() == (
        "StartHumanLoop quota 150/s from Service Quotas (sagemaker L-EFB97D75)"
    )
    analyze, _ = await lookup(emulator.url, "AnalyzeDocument")
    assert analyze is not None and analyze.rate == 7.5 and analyze.service_code == "textract"
    moderation, _ = await lookup(emulator.url, "DetectModerationLabels")
    assert moderation is not None and moderation.rate == 150.0


@pytest.mark.parametrize("emulator", [{"quota": 20.0}], indirect=True)
async def test_pages_are_followed(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_quotas, "PAGE_SIZE", 2)  # StartHumanLoop on page 1, Delete on 3
    found, meters = await lookup(emulator.url, "DeleteHumanLoop")
    assert found is not None and found.quota_code == "L-A56075C8" and found.rate == 20.0
    assert meters.counters.calls == 3


@pytest.mark.parametrize("emulator", [{"service_quotas_access": "deny"}], indirect=True)
async def test_no_permission_means_unknown_not_a_stopped_job(
    emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A role without servicequotas:ListServiceQuotas: AccessDenied would stop a job if
    # any other call got it; here it only means the quota must be found by probing.
    with caplog.at_level(logging.INFO, logger="a2ibatch"):
        found, meters = await lookup(emulator.url, "StartHumanLoop")
    assert found is None
    assert meters.counters.calls == 1 and not meters.outage.closed
    assert "quota_unknown" in caplog.text and "AccessDeniedException" in caplog.text


async def test_an_unreachable_endpoint_is_given_up_on_quickly() -> None:
    # A VPC without a Service Quotas endpoint: no outage wait, no job stopped.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    found, meters = await lookup(f"http://127.0.0.1:{port}", "StartHumanLoop", within=3.0)
    assert found is None
    assert time.monotonic() - started < 3.5
    assert not meters.outage.closed


@pytest.mark.parametrize(
    "emulator", [{"quota": 150.0, "quotas": {"ListServiceQuotas": 1.0}, "burst": 1}], indirect=True
)
async def test_a_throttled_lookup_is_retried(emulator: Any) -> None:
    first, _ = await lookup(emulator.url, "StartHumanLoop")  # takes the one token
    second, meters = await lookup(emulator.url, "StartHumanLoop")
    assert first == second and second is not None and second.rate == 150.0
    assert meters.counters.throttled >= 1


async def test_an_operation_without_a_quota_is_unknown(emulator: Any) -> None:
    found, meters = await lookup(emulator.url, "GetObject")
    assert found is None and meters.counters.calls == 0


async def test_an_unlimited_emulator_leaves_the_ceiling(emulator: Any) -> None:
    found, _ = await lookup(emulator.url, "StartHumanLoop")
    assert found is not None and found.rate == UNLIMITED_RATE
    ctl = RateController(RateSettings(ceiling=1000.0))
    ctl.know_quota(found.rate)
    assert ctl.rate == ctl.settings.ceiling == 1000.0


@pytest.mark.parametrize("emulator", [{"quota": 150.0}], indirect=True)
async def test_the_controller_starts_at_the_quota_it_read(emulator: Any) -> None:
    # What the job set-up does: read the quota, start at it.  Against the same quota in
    # simulated time, the first second is at the quota and nothing is throttled.
    found, meters = await lookup(emulator.url, "StartHumanLoop")
    assert found is not None
    ctl = meters.rate("StartHumanLoop")
    ctl.know_quota(found.rate)
    assert ctl.phase is Phase.CUBIC and ctl.rate == 150.0
    sim = Sim(Service(150.0))
    sim.ctl.know_quota(found.rate)
    sim.run(10.0)
    assert sim.service.goodput(0.0, 1.0) >= 0.98 * 150.0
    assert max(sim.rates) <= 150.0
    assert sim.service.throttled_share() <= 0.002


# -- which listed quota is the rate of an operation ----------------------------------------


def quota(name: str, value: float = 10.0, **extra: Any) -> dict[str, Any]:
    return {"QuotaCode": "L-1", "QuotaName": name, "Value": value, **extra}


def metric(resource: str) -> dict[str, Any]:
    return {"UsageMetric": {"MetricDimensions": {"Resource": resource}}}


def test_a_rate_quota_is_matched_by_its_metric_or_its_name() -> None:
    rate_of = _quotas._rate_quota
    minute = {"PeriodValue": 1, "PeriodUnit": "MINUTE"}
    per_second = {"PeriodValue": 1, "PeriodUnit": "SECOND"}
    found = rate_of(quota("Anything", 600.0, Period=minute, **metric("X")), "s", "X")  # type: ignore[arg-type]
    assert found is not None and found.rate == 10.0  # 600 a minute
    named = "Transactions per second per account for synchronous AnalyzeDocument operations"
    found = rate_of(quota(named), "textract", "AnalyzeDocument")  # type: ignore[arg-type]
    assert found is not None and found.rate == 10.0
    for wrong in (
        quota("Maximum number of AnalyzeDocument pages"),  # not a rate
        quota("Rate of StartHumanLoop requests", Period=per_second, **metric("StartHumanLoop")),
        quota(named, 0.0),
        {"QuotaName": named},  # no value
    ):
        assert rate_of(wrong, "textract", "AnalyzeDocument") is None  # type: ignore[arg-type]


# -- counted: the sends between throttled sends ----------------------------------------------


def test_the_count_between_throttled_sends_is_the_quota_whatever_the_burst() -> None:
    # Sent at 200/s to a 120/s bucket of burst 50: the burst first hides the overshoot,
    # then every throttled send finds the bucket empty.
    count, tokens, rate, quota_rate = AdmissionCount(), 50.0, 200.0, 120.0
    for i in range(2000):
        t = i / rate
        tokens = min(50.0, tokens + quota_rate / rate) if i else tokens
        count.sends.append(t)
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            count.throttled(t, cut_at=-1.0, rate=rate)
    admitted, span = count.count()
    assert admitted / span == pytest.approx(quota_rate, rel=0.01)
    assert count.share() == pytest.approx(1 - quota_rate / rate, abs=0.05)


def test_a_cut_or_a_long_quiet_ends_the_episode() -> None:
    # After a cut the rate may be below the quota, and after 100 sends without a throttle
    # it may have been: the bucket may have filled, and those sends tell nothing.
    count = AdmissionCount()
    count.sends.extend(i / 100 for i in range(1000))
    for t in (0.5, 0.6, 0.7, 0.8):  # 9 admitted between each
        count.throttled(t, cut_at=0.0, rate=100.0)
    assert count.count() == pytest.approx((27, 0.3))
    for t in (2.0, 2.5):  # after a cut at 1.9: a new episode
        count.throttled(t, cut_at=1.9, rate=100.0)
    assert count.count() == pytest.approx((49, 0.5))
    count.throttled(3.4, cut_at=1.9, rate=100.0)  # 90 sends later: the same episode
    assert count.count() == pytest.approx((138, 1.4))
    for t in (4.5, 4.6):  # 110 sends later: a new one
        count.throttled(t, cut_at=1.9, rate=100.0)
    assert count.count() == pytest.approx((9, 0.1))


def test_sends_are_forgotten_once_no_count_needs_them() -> None:
    # Hours at the quota with no throttle since the first minute: memory stays flat.
    now = [0.0]
    ctl = RateController(RateSettings(ceiling=100.0, initial=100.0), clock=lambda: now[0])
    ctl.on_throttle(sent=0.0)
    ctl.on_throttle(sent=0.01)
    for _ in range(50_000):
        now[0] += ctl.reserve() + 0.001
    assert len(ctl._count.sends) <= 8192


# -- a job: which rate it used, and what its summary says -----------------------------------

START_OPERATION = {
    TaskType.CUSTOM: ("StartHumanLoop", "sagemaker L-EFB97D75"),
    TaskType.TEXTRACT: ("AnalyzeDocument", "textract L-E0D942BC"),
    TaskType.REKOGNITION: ("DetectModerationLabels", "rekognition L-8BA850D3"),
}


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("emulator", [{"quota": 60.0, "processing_ms": 10.0}], indirect=True)
async def test_a_job_starts_at_the_quota_it_read_and_says_so(
    task: TaskType, emulator: Any, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", task, 120)
    summary = await submit(settings(task, emulator.url, tmp_path, manifest))
    operation, code = START_OPERATION[task]
    assert summary.rates == (f"{operation} quota 60/s from Service Quotas ({code})",)
    assert summary.counts["started"] + summary.counts["not_activated"] == 120
    # No slow start and no probe past the quota: at most a throttle or two from the
    # arrivals' jitter, where finding the quota costs several.
    assert summary.counts["throttled"] <= 2
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["calls"]["ListServiceQuotas"] == 1
    assert summary.to_record()["rates"] == list(summary.rates)


@pytest.mark.parametrize("emulator", [{"quota": 60.0}], indirect=True)
async def test_shards_run_together_each_from_its_share_of_the_quota(
    emulator: Any, tmp_path: Path
) -> None:
    # Two shards of one job at once, over HTTP: each reads the quota and starts at half of
    # it (the share its controller anchors on, tests/test_rate.py); together they start
    # every item, barely throttled.
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 240)
    location = f"{tmp_path}/ledger/"
    jobs = [
        Job(settings("custom", emulator.url, tmp_path, manifest, ledger=location, shards=2,
                     shard_index=k))
        for k in range(2)
    ]  # fmt: skip
    summaries: list[Any] = []

    async def run(job: Job) -> None:
        summaries.append(await job.run())

    async with anyio.create_task_group() as group:
        for job in jobs:
            group.start_soon(run, job)
    line = "StartHumanLoop quota 60/s from Service Quotas (sagemaker L-EFB97D75), this shard"
    assert all(s.rates == (f"{line} from 1/2 of it",) for s in summaries)
    assert sum(s.counts["started"] for s in summaries) == 240
    assert sum(s.counts["throttled"] for s in summaries) <= 0.03 * 240
    for job in jobs:
        ctl = job.meters.rate("StartHumanLoop")
        assert (ctl.settings.ceiling, ctl.settings.initial) == (60.0, 30.0)
        assert ctl.rate <= 60.0


@pytest.mark.parametrize(
    "emulator", [{"quota": 60.0, "service_quotas_access": "deny"}], indirect=True
)
@pytest.mark.parametrize(
    ("shards", "advice"),
    [(1, ""), (2, "; shards that find it share it unevenly: give each --rate quota/2")],
    ids=["one job", "one of 2 shards"],
)
async def test_without_permission_a_job_finds_the_quota_and_says_why(
    emulator: Any, tmp_path: Path, shards: int, advice: str
) -> None:
    # A shard also says how to share the quota evenly: untold shards do not (_rate).
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 60)
    where = {"ledger": f"{tmp_path}/ledger/", "shards": 2, "shard_index": 1} if shards > 1 else {}
    summary = await submit(settings("custom", emulator.url, tmp_path, manifest, **where))
    assert summary.exit_code == 0
    started = summary.counts["started"]
    assert started == 60 if shards == 1 else 0 < started < 60  # the shard's part
    assert summary.rates == (
        "StartHumanLoop quota found by pacing (Service Quotas: AccessDeniedException)" + advice,
    )


@pytest.mark.parametrize("emulator", [{"quota": 60.0}], indirect=True)
async def test_a_given_rate_below_the_quota_stays_and_off_means_no_lookup(
    emulator: Any, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 30)
    s = settings("custom", emulator.url, tmp_path, manifest, rate=20.0)
    summary = await submit(s)
    assert summary.rates == (
        "StartHumanLoop at most 20/s (the rate given; StartHumanLoop quota 60/s from "
        "Service Quotas (sagemaker L-EFB97D75))",
    )
    off = settings(
        "custom", emulator.url, tmp_path, manifest, ledger=tmp_path / "b.jsonl",
        name_prefix="off", service_quotas=False,
    )  # fmt: skip
    summary = await submit(off)
    assert summary.rates == ("StartHumanLoop quota found by pacing (Service Quotas: not read)",)
    stats = await emulator_get(emulator.url, "/_emulator/stats")
    assert stats["calls"]["ListServiceQuotas"] == 1  # the first job's only


@pytest.mark.parametrize("emulator", [{"quota": 60.0}], indirect=True)
async def test_a_rerun_with_nothing_to_send_reads_no_quota(emulator: Any, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", "custom", 20)
    s = settings("custom", emulator.url, tmp_path, manifest)  # no preflight to count it
    await submit(s)
    before = await emulator_get(emulator.url, "/_emulator/stats")
    again = await submit(s)
    after = await emulator_get(emulator.url, "/_emulator/stats")
    assert after["calls"] == before["calls"] and again.counts["calls"] == 0
    assert again.rates == ()


@pytest.mark.parametrize("emulator", [{"quota": 40.0}], indirect=True)
async def test_a_submitter_reads_the_quota_once_before_its_first_send(
    emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings("custom", emulator.url, tmp_path, tmp_path / "unused.jsonl")
    items = [Item(id=f"s{i}", input_content=f'{{"n": {i}}}') for i in range(40)]
    with caplog.at_level(logging.INFO, logger="a2ibatch"):
        async with Submitter(s) as submitter:
            assert "ListServiceQuotas" not in emulator.stats()["calls"]  # nothing sent yet
            async with anyio.create_task_group() as tg:
                for item in items:
                    tg.start_soon(submitter.submit, item)
            stats = submitter.stats()
    assert stats.counts["started"] == 40 and stats.counts["throttled"] <= 2
    assert emulator.stats()["calls"]["ListServiceQuotas"] == 1
    assert "StartHumanLoop quota 40/s from Service Quotas" in caplog.text


@pytest.mark.parametrize("emulator", [{"quota": 50.0}], indirect=True)
async def test_each_region_of_a_job_reads_its_own_quota(emulator: Any, tmp_path: Path) -> None:
    # Quotas are per region: each region's lane asks Service Quotas signed for its region,
    # once, before its own first start call; a region with nothing to send never asks.
    flows = tuple(FLOW.replace("us-east-1", r) for r in ("us-east-1", "eu-west-1", "ap-south-1"))
    items = [
        Item(id=f"{region}-{i}", input_content=f'{{"n": {i}}}', region=region)
        for region in ("us-east-1", "eu-west-1")
        for i in range(20)
    ]
    s = settings("custom", emulator.url, tmp_path, tmp_path / "unused.jsonl",
                 flow_definition_arn=flows)  # fmt: skip
    summary = await submit(s, items=items)
    assert summary.counts["started"] == 40
    line = "StartHumanLoop quota 50/s from Service Quotas (sagemaker L-EFB97D75)"
    assert summary.rates == (f"eu-west-1: {line}", f"us-east-1: {line}")
    calls = emulator.stats()["calls_by_region"]
    asked = {region: n for region, ops in calls.items() if (n := ops.get("ListServiceQuotas"))}
    assert asked == {"us-east-1": 1, "eu-west-1": 1}
