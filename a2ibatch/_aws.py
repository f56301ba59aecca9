"""AWS clients from AWS settings alone: one session, one client per service, botocore retries off.

Every client shares these settings: a single attempt per call (the one retry policy in
`_retry` decides every retry), a connection pool at least as large as the concurrency,
keep-alive, a fixed User-Agent naming a2ibatch, and the caller's endpoint (refused when it
is plain http off this machine).

S3 has one endpoint rule for every S3 call a2ibatch makes (manifest, preflight, results,
ledger): `AwsSettings.s3_endpoint_url` (``--s3-endpoint-url``), else botocore's own
``AWS_ENDPOINT_URL_S3``, else the job's endpoint URL (``--endpoint-url``; the emulator
serves S3 on the same endpoint as everything else).
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Mapping
from contextlib import AsyncExitStack
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

from ._errors import ConfigError, setting
from ._settings import AwsSettings, check_endpoint
from ._text import redact_url

if TYPE_CHECKING:  # the stubs are a development dependency (types-aiobotocore)
    from types_aiobotocore_rekognition import RekognitionClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sagemaker import SageMakerClient
    from types_aiobotocore_sagemaker_a2i_runtime import AugmentedAIRuntimeClient
    from types_aiobotocore_service_quotas import ServiceQuotasClient
    from types_aiobotocore_textract import TextractClient

A2I_SERVICE = "sagemaker-a2i-runtime"
#: botocore service name -> the `Clients` attribute that holds its client
_ATTRIBUTES: Final = {
    A2I_SERVICE: "a2i",
    "textract": "textract",
    "rekognition": "rekognition",
    "sagemaker": "sagemaker",
    "s3": "s3",
    "service-quotas": "quotas",
}


class Clients:
    """The open clients of one job or command, typed per service.

    Only the services asked for are open; reaching for another is a bug of ours
    (AttributeError).  `by_service` serves code that picks a client by name (the task
    adapters name their service).
    """

    a2i: AugmentedAIRuntimeClient
    textract: TextractClient
    rekognition: RekognitionClient
    sagemaker: SageMakerClient
    s3: S3Client
    quotas: ServiceQuotasClient

    def __init__(self, opened: Mapping[str, Any]) -> None:
        self.services = frozenset(opened)
        for service, client in opened.items():
            setattr(self, _ATTRIBUTES[service], client)

    def by_service(self, service: str) -> Any:
        return getattr(self, _ATTRIBUTES[service])

    @property
    def s3_if_open(self) -> S3Client | None:
        return self.s3 if "s3" in self.services else None


def versions() -> dict[str, str]:
    """Versions that shape a job's requests, recorded in the ledger's job record."""
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str]:
    # Reading installed packages' metadata takes milliseconds: once per process.
    found = {"python": platform.python_version()}
    for dist in ("a2ibatch", "aioboto3", "aiobotocore", "botocore"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # pragma: no cover - a source checkout
            found[dist] = "unknown"
    return found


@functools.cache
def user_agent() -> str:
    """The User-Agent of every call: a2ibatch and the versions under it.

    It names a2ibatch in CloudTrail's ``userAgent`` for every call a job makes.  Set whole,
    it is also fixed: botocore otherwise composes its header afresh for every request (twice),
    about a tenth of a call's CPU time.  A session's or config's ``user_agent_extra`` is still
    appended by botocore.
    """
    v = _versions()
    return (
        f"a2ibatch/{v['a2ibatch']} aiobotocore/{v['aiobotocore']} botocore/{v['botocore']} "
        f"Python/{v['python']} {platform.system()}/{platform.release()}"
    )


def endpoint_for(aws: AwsSettings, service: str) -> str | None:
    """The endpoint URL to pass for `service` (None: botocore's own resolution)."""
    if service == "s3":
        if aws.s3_endpoint_url:
            return aws.s3_endpoint_url
        if os.environ.get("AWS_ENDPOINT_URL_S3"):
            return None  # botocore reads it itself
    return aws.endpoint_url


def client_kwargs(
    aws: AwsSettings, service: str, pool: int, *, region: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for an aioboto3 client of `service`: one attempt, a big pool."""
    from aiobotocore.config import AioConfig

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3" if service == "s3" else ""):
        value = os.environ.get(name) if name else None
        if value:
            check_endpoint(value, aws.allow_insecure_endpoint)
    endpoint = endpoint_for(aws, service)
    options: dict[str, Any] = {
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        "max_pool_connections": pool,
        "connect_timeout": aws.connect_timeout,
        "read_timeout": aws.read_timeout,
        "tcp_keepalive": True,
        "user_agent": user_agent(),
    }
    if service == "s3" and (endpoint or os.environ.get("AWS_ENDPOINT_URL_S3")):
        options["s3"] = {"addressing_style": "path"}  # an emulator or gateway by address
    kwargs: dict[str, Any] = {"config": AioConfig(**options)}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    chosen = region or aws.region or os.environ.get("AWS_REGION")
    if chosen:
        kwargs["region_name"] = chosen
    return kwargs


def make_session(aws: AwsSettings, session: Any | None) -> Any:
    """The caller's aioboto3 session, or one for `aws.profile` and `aws.region`."""
    if session is not None:
        return session
    import aioboto3

    # botocore reads AWS_DEFAULT_REGION; AWS_REGION (what containers on AWS Batch, ECS and
    # Lambda set, and other SDKs read) is honoured too.
    region = aws.region or os.environ.get("AWS_REGION") or None
    try:
        return aioboto3.Session(profile_name=aws.profile, region_name=region)
    except Exception as exc:  # botocore.exceptions.ProfileNotFound and friends
        raise ConfigError(
            f"cannot set up the AWS session ({type(exc).__name__}); check "
            f"{setting('profile')} and AWS_PROFILE"
        ) from None


async def open_client(
    stack: AsyncExitStack, session: Any, service: str, kwargs: Mapping[str, Any]
) -> Any:
    """Enter one aioboto3 client, turning set-up problems into ConfigError."""
    try:
        return await stack.enter_async_context(session.client(service, **kwargs))
    except Exception as exc:  # NoRegionError, unknown endpoint, bad config
        name = type(exc).__name__
        if name == "NoRegionError":
            raise ConfigError(
                f"no AWS region: pass {setting('region')}, or set AWS_REGION or "
                "AWS_DEFAULT_REGION"
            ) from None
        where = kwargs.get("endpoint_url")
        at = f" at {redact_url(where)}" if isinstance(where, str) else ""
        raise ConfigError(f"cannot create the {service} client{at} ({name})") from None


async def open_clients(
    stack: AsyncExitStack,
    aws: AwsSettings,
    session: Any | None,
    services: Mapping[str, int],
    *,
    region: str | None = None,
) -> Clients:
    """Clients of `services` (service name -> connection pool size), entered on `stack`."""
    session = make_session(aws, session)
    opened: dict[str, Any] = {}
    for service, pool in services.items():
        kwargs = client_kwargs(aws, service, pool, region=region)
        opened[service] = await open_client(stack, session, service, kwargs)
    return Clients(opened)
