"""A Submitter's figures as OpenTelemetry metrics (the ``otel`` extra).

These run only where ``opentelemetry-api`` is installed (the SDK's reader where the SDK is);
the library itself works without either, which the first test checks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from a2ibatch import ConfigError, Submitter, TaskType
from test_submitter import item_for, submitter_settings

pytestmark = pytest.mark.anyio


async def test_without_opentelemetry_instrument_names_the_extra(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.metrics", None)  # as if not installed
    async with Submitter(submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path)) as sub:
        with pytest.raises(ConfigError, match=r"a2ibatch\[otel\]"):
            sub.instrument()
        assert (await sub.submit(item_for(TaskType.CUSTOM, 1))).status == "started"


class RecordingMeter:
    """The two Meter methods `instrument` uses, keeping each instrument's callbacks."""

    def __init__(self) -> None:
        self.instruments: dict[str, tuple[str, list[Callable[[Any], Iterable[Any]]]]] = {}

    def create_observable_counter(self, name: str, callbacks: Any, **_: Any) -> None:
        self.instruments[name] = ("counter", list(callbacks))

    def create_observable_gauge(self, name: str, callbacks: Any, **_: Any) -> None:
        self.instruments[name] = ("gauge", list(callbacks))

    def observe(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        options = pytest.importorskip("opentelemetry.metrics").CallbackOptions()
        _, callbacks = self.instruments[name]
        return [(o.value, dict(o.attributes or {})) for c in callbacks for o in c(options)]


async def test_observable_instruments_read_the_stats(emulator: Any, tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.metrics")
    meter = RecordingMeter()
    async with Submitter(submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path)) as sub:
        sub.instrument(meter)
        for i in (1, 2, 2):
            await sub.submit(item_for(TaskType.CUSTOM, i))
        items = dict((a["status"], v) for v, a in meter.observe("a2ibatch.items"))
        assert items["started"] == 2 and items["failed"] == 0
        answered = dict((a["state"], v) for v, a in meter.observe("a2ibatch.items.answered"))
        assert answered["done"] == 1
        assert meter.observe("a2ibatch.calls") == [(2.0, {"task": "custom"})]
        assert meter.observe("a2ibatch.in_flight") == [(0.0, {"task": "custom"})]
        assert meter.observe("a2ibatch.ledger.ids")[0][0] == 2.0
        assert meter.instruments["a2ibatch.rate"][0] == "gauge"
        assert meter.instruments["a2ibatch.calls"][0] == "counter"
    assert meter.observe("a2ibatch.calls") == []  # a closed Submitter reports nothing


async def test_an_sdk_reader_collects_them(emulator: Any, tmp_path: Path) -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.metrics")
    export = pytest.importorskip("opentelemetry.sdk.metrics.export")
    reader = export.InMemoryMetricReader()
    provider = sdk.MeterProvider(metric_readers=[reader])
    async with Submitter(submitter_settings(TaskType.CUSTOM, emulator.url, tmp_path)) as sub:
        sub.instrument(provider.get_meter("service"))
        await sub.submit(item_for(TaskType.CUSTOM, 1))
        data = reader.get_metrics_data()
    assert data is not None
    points = {
        (metric.name, tuple(sorted(point.attributes.items()))): point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }
    assert points[("a2ibatch.items", (("status", "started"), ("task", "custom")))] == 1
    assert points[("a2ibatch.concurrency", (("task", "custom"),))] > 0
    provider.shutdown()
