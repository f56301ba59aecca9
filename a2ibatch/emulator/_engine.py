"""The path of every AWS call, whatever its protocol.

count -> latency -> credentials -> rate quota -> injected fault -> the operation ->
lost or slow answer.  A throttled or faulted call has no effect; a lost or slow answer
comes *after* the effect, which is exactly what makes those cases hard for a client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from . import _a2i, _builtin, _sagemaker
from ._auth import DENIED_KEY, UNKNOWN_KEY, Caller
from ._errors import A2I, DIALECTS, REKOGNITION, SAGEMAKER, TEXTRACT, Dialect
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
        if self.dialect.service in (TEXTRACT, REKOGNITION):
            return configured
        return "ThrottlingException"


def _op(name: str, service: str, handler: Handler, starts_loops: bool = False) -> Operation:
    return Operation(name, DIALECTS[service], handler, starts_loops)


OPERATIONS: Final[dict[str, Operation]] = {
    op.name: op
    for op in (
        _op("StartHumanLoop", A2I, _a2i.start_human_loop, starts_loops=True),
        _op("DescribeHumanLoop", A2I, _a2i.describe_human_loop),
        _op("ListHumanLoops", A2I, _a2i.list_human_loops),
        _op("StopHumanLoop", A2I, _a2i.stop_human_loop),
        _op("DeleteHumanLoop", A2I, _a2i.delete_human_loop),
        _op("AnalyzeDocument", TEXTRACT, _builtin.analyze_document, starts_loops=True),
        _op("DetectModerationLabels", REKOGNITION, _builtin.detect_moderation_labels, True),
        _op("DescribeFlowDefinition", SAGEMAKER, _sagemaker.describe_flow_definition),
    )
}
#: X-Amz-Target prefix of each JSON 1.1 service
TARGET_PREFIXES: Final = {
    "Textract": TEXTRACT,
    "RekognitionService": REKOGNITION,
    "SageMaker": SAGEMAKER,
}


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer; `drop` asks the transport to close without sending it."""

    body: dict[str, Any]
    drop: bool = False


async def handle(
    state: State, operation: Operation, params: dict[str, Any], caller: Caller
) -> Reply:
    """Run one call through the whole path; raises ServiceError for error answers."""
    stats = state.stats
    stats.count_call(operation.name)
    config = state.config
    if config.latency_ms or config.jitter_ms:
        delay = config.latency_ms
        if config.jitter_ms:
            delay += state.rng.uniform(-config.jitter_ms, config.jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)
        config = state.config  # it may have changed meanwhile
    dialect = operation.dialect
    key = caller.access_key
    if key == DENIED_KEY:
        raise dialect.access_denied()
    if key == UNKNOWN_KEY:
        raise dialect.unrecognized_client()
    # Milliseconds, as AWS keeps them: a CreationTime a client sends back as a filter
    # (CreationTimeAfter) then means exactly the loop it came from.
    now = round(time.time(), 3)
    if config.quota is not None and not state.quotas.allow(operation.name, time.monotonic()):
        stats.throttled += 1
        if operation.starts_loops:
            stats.count_start(now, accepted=False)
        raise dialect.throttled(operation.throttle_code(config.throttle_code))
    if operation.starts_loops:
        stats.count_start(now, accepted=True)
    if config.fault_rate and state.chance(config.fault_rate):
        stats.faults += 1
        raise dialect.server_fault()
    state.loops.tick(now)
    body = operation.handler(state, Call(params, caller, now))
    if operation.starts_loops and (config.lost_response_rate or config.slow_rate):
        draw = state.rng.random()
        if draw < config.lost_response_rate:
            stats.lost_responses += 1
            return Reply(body, drop=True)
        if draw < config.lost_response_rate + config.slow_rate:
            stats.slow_responses += 1
            await asyncio.sleep(config.slow_ms / 1000.0)
    return Reply(body)
