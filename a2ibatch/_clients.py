"""AWS clients for a job: one session, one client per service, botocore retries off.

Every client of a job shares these settings: a single attempt per call (the one retry policy
in `_retry` decides every retry), a connection pool at least as large as the concurrency,
keep-alive, and the caller's endpoint (refused when it is plain http off this machine).
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Mapping
from contextlib import AsyncExitStack
from importlib import metadata
from typing import Any

from ._config import SubmitSettings, check_endpoint
from ._errors import ConfigError


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
    """The User-Agent of a job's calls: a2ibatch and the versions under it.

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


def client_kwargs(settings: SubmitSettings, pool: int) -> dict[str, Any]:
    """Keyword arguments for every aioboto3 client of a job: one attempt, a big pool."""
    from aiobotocore.config import AioConfig

    aws = settings.aws
    endpoint = aws.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        check_endpoint(endpoint, aws.allow_insecure_endpoint)
    kwargs: dict[str, Any] = {
        "config": AioConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=pool,
            connect_timeout=aws.connect_timeout,
            read_timeout=aws.read_timeout,
            tcp_keepalive=True,
            user_agent=user_agent(),
        )
    }
    if aws.endpoint_url:
        kwargs["endpoint_url"] = aws.endpoint_url
    if aws.region:
        kwargs["region_name"] = aws.region
    return kwargs


def make_session(settings: SubmitSettings, session: Any | None) -> Any:
    if session is not None:
        return session
    import aioboto3

    try:
        return aioboto3.Session(profile_name=settings.aws.profile, region_name=settings.aws.region)
    except Exception as exc:  # botocore.exceptions.ProfileNotFound and friends
        raise ConfigError(f"cannot set up AWS session: {exc}") from None


async def open_client(
    stack: AsyncExitStack, session: Any, service: str, kwargs: Mapping[str, Any]
) -> Any:
    """Enter one aioboto3 client, turning set-up problems into ConfigError."""
    try:
        return await stack.enter_async_context(session.client(service, **kwargs))
    except Exception as exc:  # NoRegionError, unknown endpoint, bad config
        name = type(exc).__name__
        if name == "NoRegionError":
            raise ConfigError("no AWS region: pass --region or set AWS_REGION") from None
        raise ConfigError(f"cannot create the {service} client: {exc}") from None
