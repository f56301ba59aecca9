"""The emulator's settings: one frozen value, validated once, replaced (never mutated) at run time.

Every knob has a default that behaves like a healthy service with no quota, so
``EmulatorConfig()`` is a fast, well-behaved emulator and each test turns on only the
misbehaviour it is about.

Time a call takes is two things (see docs/emulator.md, "The latency model"): the network,
``network_ms`` each way (before the service sees the call, and again before the client sees
the answer), and the service's own work, ``processing_ms``, spent *after* the call was
admitted or throttled.  ``latency_ms`` and ``jitter_ms`` are the older names of the
processing time and are still accepted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any, Final, Literal, get_args

SameInputReuse = Literal["conflict", "same-arn"]
ThrottleCode = Literal["ProvisionedThroughputExceededException", "ThrottlingException"]
Access = Literal["allow", "deny"]

SAME_INPUT_REUSE: tuple[str, ...] = get_args(SameInputReuse)
THROTTLE_CODES: tuple[str, ...] = get_args(ThrottleCode)
ACCESS: tuple[str, ...] = get_args(Access)

#: every emulated AWS operation, each with a token bucket of its own (`_engine` checks
#: that this list and its table of operations agree)
OPERATION_NAMES: Final = (
    "StartHumanLoop",
    "DescribeHumanLoop",
    "ListHumanLoops",
    "StopHumanLoop",
    "DeleteHumanLoop",
    "AnalyzeDocument",
    "DetectModerationLabels",
    "DescribeFlowDefinition",
    "ListServiceQuotas",
    "GetServiceQuota",
)

#: fields fixed for the life of a server (the socket is already bound)
FIXED_FIELDS = frozenset({"host", "port"})
#: old names still accepted by the constructor and ``POST /_emulator/config``
ALIASES: Final = {"latency_ms": "processing_ms", "jitter_ms": "processing_jitter_ms"}

_RATES = (
    "activation_rate",
    "fault_rate",
    "lost_response_rate",
    "slow_rate",
    "failure_rate",
)
_NON_NEGATIVE = (
    "network_ms",
    "network_jitter_ms",
    "processing_ms",
    "processing_jitter_ms",
    "slow_ms",
    "stopping_seconds",
)


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the emulated services behave.

    Rates are probabilities per call, drawn from one seeded random generator so that a run
    with a fixed ``seed`` and the same sequence of calls misbehaves the same way.
    """

    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    quota: float | None = None  # calls per second per operation; None: unlimited
    #: per-operation quotas (calls per second) that override `quota`
    quotas: Mapping[str, float] = field(default_factory=dict)
    burst: int = 5  # token-bucket capacity per operation
    network_ms: float = 0.0  # one-way network delay: before admission, and before the answer
    network_jitter_ms: float = 0.0  # each one-way delay varies uniformly by +/- this much
    processing_ms: float = 0.0  # the service's work, after admission (throttled calls skip it)
    processing_jitter_ms: float = 0.0  # processing varies uniformly by +/- this much
    activation_rate: float = 0.5  # share of Textract/Rekognition inputs that start a loop
    fault_rate: float = 0.0  # 5xx before anything happens
    lost_response_rate: float = 0.0  # start calls that take effect, then lose the answer
    slow_rate: float = 0.0  # start calls that take effect, then answer after slow_ms
    slow_ms: float = 0.0
    complete_after: float | None = None  # seconds InProgress -> Completed; None: never
    failure_rate: float = 0.0  # share of finishing loops that end Failed, not Completed
    stopping_seconds: float = 0.5  # how long a stopped loop shows Stopping before Stopped
    max_in_progress: int | None = None  # cap on InProgress loops per region; None: no cap
    same_input_reuse: SameInputReuse = "conflict"
    throttle_code: ThrottleCode = "ProvisionedThroughputExceededException"
    service_quotas_access: Access = "allow"  # "deny": Service Quotas says AccessDenied
    s3: bool = True  # serve S3 (moto's backend) and write each Completed loop's output.json
    output_bucket: str = "a2i-output"  # S3OutputPath of every flow definition: s3://BUCKET
    seed: int | None = None
    account_id: str = "123456789012"
    region: str = "us-east-1"  # when a request's signature names no region
    not_a2i_customer: bool = False  # the account is refused by A2I (maintenance mode)
    latency_ms: InitVar[float | None] = None  # alias of processing_ms
    jitter_ms: InitVar[float | None] = None  # alias of processing_jitter_ms

    def __post_init__(self, latency_ms: float | None, jitter_ms: float | None) -> None:
        for alias, value in (("latency_ms", latency_ms), ("jitter_ms", jitter_ms)):
            if value is not None:
                object.__setattr__(self, ALIASES[alias], value)
        object.__setattr__(self, "quotas", _checked_quotas(self.quotas))
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value!r}")
        for name in _NON_NEGATIVE:
            value = getattr(self, name)
            if not (value >= 0.0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if self.lost_response_rate + self.slow_rate > 1.0:
            raise ValueError("lost_response_rate + slow_rate must not exceed 1")
        if self.quota is not None and not (self.quota > 0 and math.isfinite(self.quota)):
            raise ValueError(f"quota must be > 0 calls per second, not {self.quota!r}")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, not {self.burst!r}")
        if self.complete_after is not None and not self.complete_after >= 0:
            raise ValueError(f"complete_after must be >= 0 seconds, not {self.complete_after!r}")
        if self.max_in_progress is not None and self.max_in_progress < 0:
            raise ValueError(f"max_in_progress must be >= 0, not {self.max_in_progress!r}")
        if self.same_input_reuse not in SAME_INPUT_REUSE:
            raise ValueError(f"same_input_reuse must be one of {SAME_INPUT_REUSE}")
        if self.throttle_code not in THROTTLE_CODES:
            raise ValueError(f"throttle_code must be one of {THROTTLE_CODES}")
        if self.service_quotas_access not in ACCESS:
            raise ValueError(f"service_quotas_access must be one of {ACCESS}")
        if not (len(self.account_id) == 12 and self.account_id.isdigit()):
            raise ValueError(f"account_id must be 12 digits, not {self.account_id!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, not {self.port!r}")

    def quota_for(self, operation: str) -> float | None:
        """The rate quota of `operation` in calls per second (None: unlimited)."""
        return self.quotas.get(operation, self.quota)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready mapping (what ``GET /_emulator/config`` shows)."""
        answer = dataclasses.asdict(self)
        answer["quotas"] = dict(self.quotas)
        return answer

    def updated(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """A copy with `changes` (decoded JSON) applied and checked.

        Raises ValueError for unknown or fixed fields and for values of the wrong type, so
        that a typo in a benchmark's mid-run change fails loudly instead of doing nothing.
        The old names ``latency_ms`` and ``jitter_ms`` set the processing time.
        """
        values: dict[str, Any] = {}
        for key, raw in changes.items():
            name = ALIASES.get(key, key)
            if name not in _FIELD_TYPES:
                raise ValueError(f"unknown setting {key!r}")
            if name in FIXED_FIELDS:
                raise ValueError(f"{key!r} cannot change while the server runs")
            values[name] = _coerce(name, raw)
        return dataclasses.replace(self, **values)


_FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in dataclasses.fields(EmulatorConfig)}
_STRING_TYPES: Final = frozenset({"str", "SameInputReuse", "ThrottleCode", "Access"})


def _checked_quotas(quotas: Mapping[str, Any]) -> dict[str, float]:
    """Per-operation quotas: known operation names, each a finite rate above 0."""
    checked: dict[str, float] = {}
    for operation, rate in quotas.items():
        if operation not in OPERATION_NAMES:
            raise ValueError(
                f"no operation {operation!r} to give a quota (one of {', '.join(OPERATION_NAMES)})"
            )
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise ValueError(f"the quota of {operation} must be a number, not {rate!r}")
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"the quota of {operation} must be > 0 calls per second")
        checked[operation] = float(rate)
    return checked


def _coerce(key: str, raw: Any) -> Any:
    """Check one decoded JSON value against the field's declared type."""
    kind = _FIELD_TYPES[key]
    optional = kind.endswith("| None")
    if raw is None:
        if optional:
            return None
        raise ValueError(f"{key!r} cannot be null")
    base = kind.removesuffix(" | None")
    if base == "float" and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if base == "int" and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if base == "bool" and isinstance(raw, bool):
        return raw
    if base in _STRING_TYPES and isinstance(raw, str):
        return raw
    if base == "Mapping[str, float]" and isinstance(raw, dict):
        return raw  # checked by the new config's own validation
    raise ValueError(f"{key!r} must be {kind}, not {raw!r}")
