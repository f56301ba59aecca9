"""The path of every AWS call, whatever its protocol.

count -> network (in) -> credentials -> rate quota -> injected fault -> processing time ->
the operation -> lost or slow answer -> network (out).

A call is admitted or throttled the moment it arrives (after the one-way network delay),
as the services do; only an admitted call then spends the processing time, so a throttled
or faulted call answers after the network delays alone and has no effect.  A lost or slow
answer comes *after* the effect, which is exactly what makes those cases hard for a client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from . import _a2i, _builtin, _listing, _sagemaker, _service_quotas
from ._auth import DENIED_KEY, UNKNOWN_KEY, Caller
from ._config import OPERATION_NAMES, EmulatorConfig
from ._errors import (
    A2I,
    DIALECTS,
    REKOGNITION,
    SAGEMAKER,
    SERVICE_QUOTAS,
    TEXTRACT,
    Dialect,
    ServiceError,
)
from ._state import Call, State

Handler = Callable[[State, Call], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Operation:
    """One emulated API: its name, its service's error dialect, its handler."""

    name: str
    dialect: Dialect
    handler: Handler
    starts_loops: bool = False  # counted in the histogram; may lose or delay its answer

    def throttle_code(self, configured: str) -> str:
        service = self.dialect.service
        if service in (TEXTRACT, REKOGNITION):
            return configured
        if service == SERVICE_QUOTAS:
            return "TooManyRequestsException"
        return "ThrottlingException"


def _op(name: str, service: str, handler: Handler, starts_loops: bool = False) -> Operation:
    return Operation(name, DIALECTS[service], handler, starts_loops)


OPERATIONS: Final[dict[str, Operation]] = {
    op.name: op
    for op in (
        _op("StartHumanLoop", A2I, _a2i.start_human_loop, starts_loops=True),
        _op("DescribeHumanLoop", A2I, _a2i.describe_human_loop),
        _op("ListHumanLoops", A2I, _listing.list_human_loops),
        _op("StopHumanLoop", A2I, _a2i.stop_human_loop),
        _op("DeleteHumanLoop", A2I, _a2i.delete_human_loop),
        _op("AnalyzeDocument", TEXTRACT, _builtin.analyze_document, starts_loops=True),
        _op("DetectModerationLabels", REKOGNITION, _builtin.detect_moderation_labels, True),
        _op("DescribeFlowDefinition", SAGEMAKER, _sagemaker.describe_flow_definition),
        _op("ListServiceQuotas", SERVICE_QUOTAS, _service_quotas.list_service_quotas),
        _op("GetServiceQuota", SERVICE_QUOTAS, _service_quotas.get_service_quota),
    )
}
assert tuple(OPERATIONS) == OPERATION_NAMES, "the config's operation list is out of date"

#: X-Amz-Target prefix of each JSON 1.1 service
TARGET_PREFIXES: Final = {
    "Textract": TEXTRACT,
    "RekognitionService": REKOGNITION,
    "SageMaker": SAGEMAKER,
    "ServiceQuotasV20190624": SERVICE_QUOTAS,
}


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer; `drop` asks the transport to close without sending it."""

    body: dict[str, Any]
    drop: bool = False


def _one_way(state: State, config: EmulatorConfig) -> float:
    """One network crossing, in seconds (never below 0)."""
    delay = config.network_ms
    if config.network_jitter_ms:
        delay += state.rng.uniform(-config.network_jitter_ms, config.network_jitter_ms)
    return delay / 1000.0 if delay > 0 else 0.0


async def handle(
    state: State, operation: Operation, params: dict[str, Any], caller: Caller
) -> Reply:
    """Run one call through the whole path; raises ServiceError for error answers."""
    stats = state.stats
    stats.count_call(operation.name, caller.region)
    config = state.config
    # Drawn on arrival, before any other draw of this call, so that a seeded run draws in
    # the same order as it did when all of the time was spent before admission.
    work = config.processing_ms
    if config.processing_jitter_ms:
        work += state.rng.uniform(-config.processing_jitter_ms, config.processing_jitter_ms)
    if operation.dialect is DIALECTS[SERVICE_QUOTAS]:
        work = 0.0  # another service: the processing time is that of A2I's, Textract's ...
    network = bool(config.network_ms or config.network_jitter_ms)
    if network:
        await asyncio.sleep(_one_way(state, config))
        config = state.config  # it may have changed meanwhile
    dialect = operation.dialect
    try:
        key = caller.access_key
        if key == DENIED_KEY:
            raise dialect.access_denied()
        if key == UNKNOWN_KEY:
            raise dialect.unrecognized_client()
        # Milliseconds, as AWS keeps them: a CreationTime a client sends back as a filter
        # (CreationTimeAfter) then means exactly the loop it came from.
        now = round(time.time(), 3)
        if (config.quota is not None or config.quotas) and not state.quotas.allow(
            caller.region, operation.name, time.monotonic()
        ):
            stats.throttled += 1
            if operation.starts_loops:
                stats.count_start(now, accepted=False)
            raise dialect.throttled(operation.throttle_code(config.throttle_code))
        if operation.starts_loops:
            stats.count_start(now, accepted=True)
        if config.fault_rate and state.chance(config.fault_rate):
            stats.faults += 1
            raise dialect.server_fault()
        if work > 0:
            await asyncio.sleep(work / 1000.0)
            config = state.config
            now = round(time.time(), 3)
        state.loops.tick(now)
        body = operation.handler(state, Call(params, caller, now))
        if operation.starts_loops and (config.lost_response_rate or config.slow_rate):
            draw = state.rng.random()
            if draw < config.lost_response_rate:
                stats.lost_responses += 1
                return Reply(body, drop=True)  # no answer leaves: no network delay either
            if draw < config.lost_response_rate + config.slow_rate:
                stats.slow_responses += 1
                await asyncio.sleep(config.slow_ms / 1000.0)
    except ServiceError:
        if network:
            await asyncio.sleep(_one_way(state, state.config))
        raise
    if network:
        await asyncio.sleep(_one_way(state, state.config))
    return Reply(body)
