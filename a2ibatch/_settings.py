"""Settings: flags, then `A2IBATCH_*` environment variables, then a TOML file, then defaults.

`load_settings` merges those sources for the CLI, and for any library caller who wants the
same precedence.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._errors import ConfigError, setting
from ._models import CONTENT_CLASSIFIERS, TEXTRACT_FEATURE_TYPES, TaskType
from ._naming import DEFAULT_PREFIX, check_prefix
from ._regions import arn_region, flow_list, flows_by_region
from ._text import printable, redact_url

ENV_PREFIX = "A2IBATCH_"
FLOW_DEFINITION_ARN_PREFIX = "arn:"


@dataclass(frozen=True)
class AwsSettings:
    """Where and how to reach AWS (or the emulator)."""

    endpoint_url: str | None = None
    #: the endpoint of every S3 call (manifest, preflight, results, ledger); None: botocore's
    #: ``AWS_ENDPOINT_URL_S3``, else `endpoint_url`
    s3_endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    #: allow a plain-http endpoint that is not a loopback address (requests would travel
    #: unencrypted and, for a non-AWS host, to someone else)
    allow_insecure_endpoint: bool = False

    def __post_init__(self) -> None:
        for url in (self.endpoint_url, self.s3_endpoint_url):
            if url:
                check_endpoint(url, self.allow_insecure_endpoint)


@dataclass(frozen=True)
class SubmitSettings:
    """Everything one submit job needs.  Build it directly, or with `load_settings`."""

    task: TaskType
    #: the human review workflow: a flow definition ARN, or several, at most one per region
    #: (each item then goes to the flow definition of its region); a sequence of one ARN is
    #: kept as that string, so a job of one flow is the same job however it was given
    flow_definition_arn: str | Sequence[str]
    #: the ledger: a file, a directory (a path ending in "/", or one that exists) or
    #: ``s3://bucket/prefix/``; with `shards`, a directory or an S3 prefix
    ledger: Path | str
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
    #: give up (exit 3) when the endpoint stays unreachable this long (calls wait meanwhile)
    outage_limit: float = 300.0
    #: refuse a manifest of more lines than this (a guard against feeding the wrong file)
    max_lines: int | None = None
    #: the job is run as this many shards; an item belongs to shard stable_hash(id) mod shards
    shards: int = 1
    #: which shard this run is (0-based); required with more than one shard
    shard_index: int | None = None
    #: where a ledger in S3 keeps its local working copy (None: a temporary folder)
    work_dir: Path | None = None
    #: a ledger in S3: how long its lease lasts unrenewed (a lost container's shard is taken
    #: over after this)
    lease_seconds: float = 60.0
    #: a ledger in one local file: how often the job saves its resume point (the ledger's
    #: index and the manifest's settled prefix, so that a rerun need not read them again)
    resume_interval: float = 30.0
    #: on a graceful stop, how long calls in flight may take to finish
    grace_period: float = 30.0
    #: checks before spending (flow definition, region, CORS, PII rule, cost)
    preflight: bool = True
    #: read each start call's applied quota from Service Quotas (where the account allows
    #: it) and start at it, instead of finding it by being throttled
    service_quotas: bool = True
    #: refuse a job whose estimated cost (USD) is above this unless `confirm_cost`
    max_cost: float | None = None
    confirm_cost: bool = False
    aws: AwsSettings = field(default_factory=AwsSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", _task(self.task))
        object.__setattr__(self, "ledger", normalise_ledger(self.ledger))
        check_prefix(self.name_prefix)
        flows = flow_list(self.flow_definition_arn)
        object.__setattr__(self, "flow_definition_arn", flows[0] if len(flows) == 1 else flows)
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"{setting('rate')} must be a positive number of requests per second")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"{setting('concurrency')} must be at least 1")
        if self.max_attempts < 1:
            raise ConfigError(f"{setting('max_attempts')} must be at least 1")
        for name in (
            "checkpoint_interval",
            "quota_pause",
            "quota_wait_limit",
            "outage_limit",
            "grace_period",
            "resume_interval",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(f"{setting(name)} must be a number of seconds, at least 0")
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
            raise ConfigError(
                f"{setting('max_failure_ratio')} must be a fraction between 0 and 1 "
                "(a percentage between 0% and 100%)"
            )
        if not isinstance(self.shards, int) or self.shards < 1:
            raise ConfigError(f"{setting('shards')} must be a whole number, at least 1")
        if self.shards > 1:
            if self.shard_index is None:
                raise ConfigError(
                    f"{setting('shards')} {self.shards} needs {setting('shard_index')} (0 to "
                    f"{self.shards - 1}); on AWS Batch and Kubernetes it comes from "
                    "AWS_BATCH_JOB_ARRAY_INDEX or JOB_COMPLETION_INDEX"
                )
            if isinstance(self.ledger, Path) and not self.ledger.is_dir():
                raise ConfigError(
                    f"with {setting('shards')}, {setting('ledger')} must be a location that "
                    "holds one ledger per shard: a directory (a path ending in '/') or "
                    "s3://bucket/prefix/"
                )
        if self.shard_index is not None and not 0 <= self.shard_index < self.shards:
            raise ConfigError(
                f"{setting('shard_index')} must be from 0 to {self.shards - 1}, the shards "
                f"of {setting('shards')} {self.shards}"
            )
        if self.max_lines is not None and self.max_lines < 1:
            raise ConfigError(f"{setting('max_lines')} must be at least 1")
        if self.max_failures is not None and self.max_failures < 1:
            raise ConfigError(f"{setting('max_failures')} must be at least 1")

    @property
    def flow_definition_arns(self) -> tuple[str, ...]:
        """The job's flow definitions (one, or one per region), as given."""
        arn = self.flow_definition_arn
        return (arn,) if isinstance(arn, str) else tuple(arn)

    @property
    def flows(self) -> dict[str, str]:
        """Region -> the job's flow definition ARN there."""
        arns = self.flow_definition_arns
        return flows_by_region(arns) if len(arns) > 1 else {arn_region(arns[0]): arns[0]}


def normalise_ledger(value: object) -> Path | str:
    """A ledger location as given: ``s3://...`` and paths ending in "/" (directories, which
    a `Path` would lose the slash of) stay text; every other path is a `Path`."""
    text = str(value)
    if text.startswith("s3://"):
        if not text.endswith("/"):
            text += "/"
        return text
    if text.endswith("/"):
        return text
    return Path(text)


def _task(value: object) -> TaskType:
    try:
        return TaskType(str(value))
    except ValueError:
        raise ConfigError(
            f"{setting('task')} must be one of {', '.join(t.value for t in TaskType)}"
        ) from None


def check_endpoint(url: str, allow_insecure: bool) -> None:
    """Refuse a plain-http endpoint off this machine unless the user insists."""
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"an endpoint URL must be http(s)://HOST[:PORT], not {printable(redact_url(url))}"
        )
    if parts.scheme == "https" or allow_insecure:
        return
    host = parts.hostname
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(
            f"refusing plain-http endpoint {printable(redact_url(url))}: requests and "
            "credentials would travel unencrypted; use https, a loopback address, or "
            f"{setting('allow_insecure_endpoint', True)}"
        )


def parse_max_failures(text: str) -> tuple[int | None, float | None]:
    """``N`` or ``N%`` into (count, ratio)."""
    text = str(text).strip()
    try:
        if text.endswith("%"):
            return None, float(text[:-1]) / 100.0
        return int(text), None
    except ValueError:
        raise ConfigError(
            f"{setting('max_failures')} takes a count (100) or a percentage (5%)"
        ) from None


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
    file are refused, so a typo does not silently fall back to a default.  ``max_failures``
    may be given as text from any source: ``"100"`` or ``"5%"``.
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
    missing = [name for name in ("task", "flow_definition_arn", "ledger") if name not in values]
    if missing:
        named = ", ".join(
            f"{setting(name)} (or {ENV_PREFIX}{name.upper()}, or {name} in the config file)"
            for name in missing
        )
        raise ConfigError(f"missing required setting{'s' if len(missing) > 1 else ''}: {named}")
    if "shard_index" not in values and int(values.get("shards") or 1) > 1:
        env_index = env.get("AWS_BATCH_JOB_ARRAY_INDEX") or env.get("JOB_COMPLETION_INDEX")
        if env_index not in (None, ""):
            try:
                values["shard_index"] = int(str(env_index))
            except ValueError:
                raise ConfigError("the array index in the environment is not a number") from None
    raw = values.get("max_failures")
    if isinstance(raw, str):
        values["max_failures"], ratio = parse_max_failures(raw)
        if ratio is not None:
            values["max_failure_ratio"] = ratio
    for name in ("content_classifiers", "feature_types"):
        if name in values:
            values[name] = tuple(values[name])
    try:
        return SubmitSettings(aws=aws, **values)
    except TypeError:  # a value of the wrong type in the file
        kinds = ", ".join(f"{k}: {type(v).__name__}" for k, v in sorted(values.items()))
        raise ConfigError(f"a setting has a value of the wrong type ({kinds})") from None


def load_aws_settings(
    flags: Mapping[str, Any],
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> AwsSettings:
    """`AwsSettings` from the same sources and precedence as `load_settings` (flags, then
    `A2IBATCH_*` variables, then the ``[aws]`` table of a TOML file)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update({k: v for k, v in _read_toml(Path(config_file)).items() if k in _AWS_FIELDS})
    env = os.environ if environ is None else environ
    for name in _AWS_FIELDS:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw)
    for name, value in flags.items():
        if value is not None and name in _AWS_FIELDS:
            values[name] = value
    try:
        return AwsSettings(**values)
    except TypeError:
        raise ConfigError("an AWS setting has a value of the wrong type") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {printable(path)}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {printable(path)} is not valid TOML: {printable(exc)}"
        ) from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "aws" and isinstance(value, dict):
            for k, v in value.items():
                if k not in _AWS_FIELDS:
                    raise ConfigError(
                        f"config file {printable(path)}: unknown setting aws.{printable(k)}"
                    )
                flat[k] = v
        elif key in _SUBMIT_FIELDS:
            flat[key] = value
        else:
            raise ConfigError(f"config file {printable(path)}: unknown setting {printable(key)!r}")
    return flat


def _field_type(name: str) -> Any:
    cls = AwsSettings if name in _AWS_FIELDS else SubmitSettings
    return typing.get_type_hints(cls)[name]


def _coerce(name: str, raw: str) -> Any:
    """Turn an environment variable's text into the setting's type."""
    if name == "max_failures":
        return raw  # a count or a percentage: parsed with the other sources' values
    if name == "flow_definition_arn":  # one ARN, or several separated by commas
        arns = tuple(p.strip() for p in raw.split(",") if p.strip())
        return arns[0] if len(arns) == 1 else arns
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
