"""The ledger's record format: every record type, the job header, and how they are encoded.

A ledger is JSON Lines.  Every record starts with its ``event`` key (so readers can skip
events they do not want without parsing them) and carries ``at``, the ISO-8601 UTC time with
millisecond precision.  The record types:

* ``job``: a run starts; the first one is the job's identity (`JobHeader`);
* ``intent``: a call for an item is about to be sent;
* ``outcome``: an item's fate in a run (`outcome_record`);
* ``summary``: a run ended (its counts);
* ``loop_status``, ``loop_action``: what the lifecycle commands learnt and did.

Readers ignore events and fields they do not know.  ``docs/ledger.md`` describes each field.
"""

from __future__ import annotations

import base64
import functools
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from .._models import Outcome, Status, TaskType
from .._regions import arn_region

JOB: Final = "job"
INTENT: Final = "intent"
OUTCOME: Final = "outcome"
SUMMARY: Final = "summary"
LOOP_STATUS: Final = "loop_status"
LOOP_ACTION: Final = "loop_action"

#: the sidecar holding full service responses lives next to the ledger, under this suffix
SIDECAR_SUFFIX: Final = ".responses.jsonl"

_DUMPS_OPTIONS: Final = orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def utc_timestamp(when: float | None = None) -> str:
    """ISO-8601 UTC time with millisecond precision, as every record's ``at`` uses.

    `when` is seconds since the epoch; the default is now.
    """
    millis = int((time.time() if when is None else when) * 1000)
    seconds, millis = divmod(millis, 1000)
    return f"{_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    """The whole-second part of a timestamp: formatted once per second, not per record."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def iso_time(value: Any) -> str | None:
    """A service timestamp (botocore gives datetimes) as ISO-8601 text."""
    if value is None or not hasattr(value, "isoformat"):
        return None if value is None else str(value)
    text: str = value.isoformat()
    return text.replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    """An ISO-8601 time of the ledger or the service (None when unreadable)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _json_default(value: Any) -> Any:
    """Serialize the few non-JSON types service responses and records carry."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if hasattr(value, "isoformat"):  # datetime in service answers
        return value.isoformat()
    raise TypeError(f"type {type(value).__name__} cannot be written to the ledger")


def dumps(record: Mapping[str, Any]) -> bytes:
    """One record as a newline-terminated JSON line."""
    return orjson.dumps(record, default=_json_default, option=_DUMPS_OPTIONS)


def event_record(event: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A record of `event` with `fields`, ``event`` first and ``at`` added when missing."""
    if not isinstance(event, str) or not event:
        raise ValueError("a ledger record needs an 'event' string")
    record = {"event": event, **fields}
    record.setdefault("at", utc_timestamp())
    return record


@dataclass(frozen=True)
class JobHeader:
    """The identity of a job: what its first ``job`` record says, and every run repeats.

    A ledger belongs to one job (task type, flow definitions, name prefix): loop names
    derive from these, so resuming under other values would break the exactly-once
    guarantee.  `flow_definition_arn` is one ARN (a string, as ever) or, for a job of flows
    in several regions, a tuple of them (a list in the record).
    """

    task: TaskType
    flow_definition_arn: str | tuple[str, ...]
    name_prefix: str
    manifest: str
    versions: Mapping[str, str]
    run: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_record(self) -> dict[str, Any]:
        """The ``job`` record that starts a run."""
        return {
            "event": JOB,
            "run": self.run,
            "task": TaskType(self.task).value,
            "flow_definition_arn": (
                arn if isinstance(arn := self.flow_definition_arn, str) else list(arn)
            ),
            "name_prefix": self.name_prefix,
            "manifest": self.manifest,
            "versions": dict(self.versions),
            "at": utc_timestamp(),
        }

    @property
    def flow_definition_arns(self) -> tuple[str, ...]:
        arn = self.flow_definition_arn
        return (arn,) if isinstance(arn, str) else arn

    @property
    def flows(self) -> dict[str, str]:
        """Region -> the flow definition ARN this run named there."""
        return {arn_region(arn): arn for arn in self.flow_definition_arns}

    def same_job(self, other: JobHeader) -> bool:
        """Whether `other` names the same job (the parts loop names derive from): the same
        task type and name prefix, and no region whose flow definition differs."""
        if (self.task, self.name_prefix) != (other.task, other.name_prefix):
            return False
        mine = self.flows
        return all(mine.get(region, arn) == arn for region, arn in other.flows.items())

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> JobHeader:
        """The header a ``job`` record describes; ValueError or KeyError when malformed."""
        versions = record.get("versions") or {}
        if not isinstance(versions, Mapping):
            raise ValueError("versions is not an object")
        fields = {name: record[name] for name in ("name_prefix", "manifest", "run")}
        for name, value in fields.items():
            if not isinstance(value, str):
                raise ValueError(f"{name} is not a string")
        return cls(
            task=TaskType(record["task"]),
            flow_definition_arn=flows_of(record),
            versions={str(k): str(v) for k, v in versions.items()},
            **fields,
        )


def flows_of(record: Mapping[str, Any]) -> str | tuple[str, ...]:
    """A ``job`` record's flow definitions: one ARN, or (a list) one per region."""
    value = record["flow_definition_arn"]
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(arn, str) for arn in value):
        return value[0] if len(value) == 1 else tuple(value)
    raise ValueError("flow_definition_arn is not a string or a list of strings")


def intent_line(item_id: str, line: int, loop_name: str, region: str | None = None) -> bytes:
    """The ``intent`` record of an item whose first call is about to be sent; `region` is
    the region it is sent to, in a job of flows in several regions (else left out)."""
    at = utc_timestamp()
    if region is None:
        record = {"event": INTENT, "id": item_id, "line": line, "loop_name": loop_name, "at": at}
    else:
        record = {
            "event": INTENT, "id": item_id, "line": line, "loop_name": loop_name,
            "region": region, "at": at,
        }  # fmt: skip
    return dumps(record)


def outcome_record(outcome: Outcome) -> dict[str, Any]:
    """The ``outcome`` record of `outcome`; the service response is left out (sidecar)."""
    activation = outcome.activation
    error = outcome.error
    record: dict[str, Any] = {
        "event": OUTCOME,
        "id": outcome.id,
        "line": outcome.line,
        "status": Status(outcome.status).value,
        "loop_name": outcome.loop_name,
        "human_loop_arn": outcome.human_loop_arn,
        "activation": (
            None
            if activation is None
            else {"reasons": list(activation.reasons), "conditions": activation.conditions}
        ),
        "attempts": outcome.attempts,
        "error": None if error is None else {"code": error.code, "message": error.message},
        "recovered": outcome.recovered,
        "at": outcome.at or utc_timestamp(),
    }
    if outcome.loop is not None:
        record["loop"] = dict(outcome.loop)
    if outcome.region is not None:
        record["region"] = outcome.region
    return record


def sidecar_line(outcome: Outcome) -> bytes:
    """The sidecar record of an outcome that carries the service's full response."""
    return dumps({"id": outcome.id, "loop_name": outcome.loop_name, "response": outcome.response})


def loop_status_record(
    *,
    item_id: str,
    loop_name: str,
    human_loop_arn: str | None,
    status: str,
    output_s3_uri: str | None,
    failure_reason: str | None,
    creation_time: str | None = None,
) -> dict[str, Any]:
    """A ``loop_status`` record: the service reported a new status for one of the job's loops."""
    record: dict[str, Any] = {
        "event": LOOP_STATUS,
        "id": item_id,
        "loop_name": loop_name,
        "human_loop_arn": human_loop_arn,
        "loop_status": status,
        "output_s3_uri": output_s3_uri,
        "failure_reason": failure_reason,
    }
    if creation_time is not None:
        record["creation_time"] = creation_time
    record["at"] = utc_timestamp()
    return record


def loop_action_record(*, item_id: str, loop_name: str, action: str, result: str) -> dict[str, Any]:
    """A ``loop_action`` record: a stop or delete and the service's answer to it."""
    return {
        "event": LOOP_ACTION,
        "action": action,
        "loop_name": loop_name,
        "id": item_id,
        "result": result,
        "at": utc_timestamp(),
    }
