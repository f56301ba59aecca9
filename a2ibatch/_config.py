"""Settings: flags, then `A2IBATCH_*` environment variables, then a TOML file, then defaults.

Everything a job needs is one frozen value, so a library caller builds it directly and the
CLI builds it from its sources; nothing reads the environment behind the caller's back.
Credentials and region are not settings of ours: they come from the standard AWS chain
(`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...) unless given here explicitly.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._errors import ConfigError
from ._models import CONTENT_CLASSIFIERS, TEXTRACT_FEATURE_TYPES, TaskType
from ._naming import DEFAULT_PREFIX, check_prefix

ENV_PREFIX = "A2IBATCH_"
FLOW_DEFINITION_ARN_PREFIX = "arn:"


@dataclass(frozen=True)
class AwsSettings:
    """Where and how to reach AWS (or the emulator)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    #: allow a plain-http endpoint that is not a loopback address (requests would travel
    #: unencrypted and, for a non-AWS host, to someone else)
    allow_insecure_endpoint: bool = False

    def __post_init__(self) -> None:
        if self.endpoint_url:
            check_endpoint(self.endpoint_url, self.allow_insecure_endpoint)


@dataclass(frozen=True)
class SubmitSettings:
    """Everything one submit job needs.  Build it directly, or with `load_settings`."""

    task: TaskType
    flow_definition_arn: str
    ledger: Path
    manifest: str = "-"
    name_prefix: str = DEFAULT_PREFIX
    #: requests/second ceiling per API; the quota below it is found by the rate controller
    rate: float | None = None
    #: calls in flight; None sizes it from rate x latency
    concurrency: int | None = None
    max_attempts: int = 8
    content_classifiers: tuple[str, ...] = ()
    feature_types: tuple[str, ...] = ("FORMS", "TABLES")
    retry_failed: bool = False
    #: stop the job after this many failed items ...
    max_failures: int | None = None
    #: ... or once this fraction of decided items failed (0-1)
    max_failure_ratio: float | None = None
    checkpoint_interval: float = 1.0
    #: first pause when too many loops are in progress; it doubles up to 5 minutes
    quota_pause: float = 30.0
    #: give up (exit 3) when the in-progress quota stays full this long
    quota_wait_limit: float = 3600.0
    #: on a graceful stop, how long calls in flight may take to finish
    grace_period: float = 30.0
    #: checks before spending (flow definition, region, CORS, PII rule, cost)
    preflight: bool = True
    #: refuse a job whose estimated cost (USD) is above this unless `confirm_cost`
    max_cost: float | None = None
    confirm_cost: bool = False
    aws: AwsSettings = field(default_factory=AwsSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", _task(self.task))
        object.__setattr__(self, "ledger", Path(self.ledger))
        check_prefix(self.name_prefix)
        if not isinstance(self.flow_definition_arn, str) or ":flow-definition/" not in (
            self.flow_definition_arn
        ):
            raise ConfigError(
                "--flow-definition-arn must be a flow definition ARN "
                "(arn:aws:sagemaker:REGION:ACCOUNT:flow-definition/NAME)"
            )
        if self.rate is not None and not self.rate > 0:
            raise ConfigError("--rate must be a positive number of requests per second")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError("--concurrency must be at least 1")
        if self.max_attempts < 1:
            raise ConfigError("--max-attempts must be at least 1")
        bad = set(self.content_classifiers) - CONTENT_CLASSIFIERS
        if bad:
            raise ConfigError(
                f"unknown content classifier {sorted(bad)[0]!r}; "
                f"known: {', '.join(sorted(CONTENT_CLASSIFIERS))}"
            )
        bad = set(self.feature_types) - TEXTRACT_FEATURE_TYPES
        if bad or not self.feature_types:
            raise ConfigError(
                f"feature types must be some of {', '.join(sorted(TEXTRACT_FEATURE_TYPES))}"
            )
        if self.max_failure_ratio is not None and not 0 < self.max_failure_ratio <= 1:
            raise ConfigError("--max-failures as a percentage must be between 0% and 100%")


def _task(value: object) -> TaskType:
    try:
        return TaskType(str(value))
    except ValueError:
        raise ConfigError(f"--task must be one of {', '.join(t.value for t in TaskType)}") from None


def check_endpoint(url: str, allow_insecure: bool) -> None:
    """Refuse a plain-http endpoint off this machine unless the user insists."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"endpoint URL must be http(s)://HOST[:PORT], got {url!r}")
    if parts.scheme == "https" or allow_insecure:
        return
    host = parts.hostname
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(
            f"refusing plain-http endpoint {url}: requests and credentials would travel "
            "unencrypted; use https, a loopback address, or --allow-insecure-endpoint"
        )


def parse_max_failures(text: str) -> tuple[int | None, float | None]:
    """`--max-failures N` or `N%` into (count, ratio)."""
    text = text.strip()
    try:
        if text.endswith("%"):
            return None, float(text[:-1]) / 100.0
        return int(text), None
    except ValueError:
        raise ConfigError("--max-failures takes a count (100) or a percentage (5%)") from None


_AWS_FIELDS = {f.name for f in dataclasses.fields(AwsSettings)}
_SUBMIT_FIELDS = {f.name for f in dataclasses.fields(SubmitSettings)} - {"aws"}


def load_settings(
    flags: Mapping[str, Any],
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> SubmitSettings:
    """Merge the sources into one `SubmitSettings` (flags win, then env, then the file).

    `flags` holds only what the user gave (None values are ignored).  Unknown keys in the
    file are refused, so a typo does not silently fall back to a default.
    """
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_toml(Path(config_file)))
    env = os.environ if environ is None else environ
    for name in _SUBMIT_FIELDS | _AWS_FIELDS:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw)
    for name, value in flags.items():
        if value is not None:
            values[name] = value
    aws = AwsSettings(**{k: values.pop(k) for k in list(values) if k in _AWS_FIELDS})
    for required in ("task", "flow_definition_arn", "ledger"):
        if required not in values:
            flag = "--" + required.replace("_", "-")
            raise ConfigError(
                f"{flag} is required (or {ENV_PREFIX}{required.upper()}, or {required} in "
                "the config file)"
            )
    for name in ("content_classifiers", "feature_types"):
        if name in values:
            values[name] = tuple(values[name])
    try:
        return SubmitSettings(aws=aws, **values)
    except TypeError as exc:  # a value of the wrong type in the file
        raise ConfigError(f"invalid setting: {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "aws" and isinstance(value, dict):
            for k, v in value.items():
                if k not in _AWS_FIELDS:
                    raise ConfigError(f"config file {path}: unknown setting aws.{k}")
                flat[k] = v
        elif key in _SUBMIT_FIELDS:
            flat[key] = value
        else:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
    return flat


def _field_type(name: str) -> Any:
    cls = AwsSettings if name in _AWS_FIELDS else SubmitSettings
    return typing.get_type_hints(cls)[name]


def _coerce(name: str, raw: str) -> Any:
    """Turn an environment variable's text into the setting's type."""
    kind = _field_type(name)
    if isinstance(kind, types.UnionType):  # X | None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if typing.get_origin(kind) is tuple:
            return tuple(p.strip() for p in raw.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()} has an invalid value") from None
    return raw
