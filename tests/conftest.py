"""Shared fixtures.

Every async test runs on asyncio (aiobotocore is asyncio-only).  Servers are real: the
project's emulator for A2I, Textract, Rekognition and SageMaker, and moto's server for S3,
both on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

# Clients in tests never see a real account: fixed dummy credentials and region.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def moto_s3_url() -> Iterator[str]:
    """Endpoint URL of a moto server (S3 and friends) shared by the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
async def s3(moto_s3_url: str) -> AsyncIterator[Any]:
    """An aioboto3 S3 client of the moto server, in us-east-1."""
    import aioboto3

    async with aioboto3.Session().client(
        "s3", endpoint_url=moto_s3_url, region_name="us-east-1"
    ) as client:
        yield client


@pytest.fixture
async def emulator(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh in-process emulator; parametrize indirectly with EmulatorConfig kwargs."""
    from a2ibatch.emulator import EmulatorConfig, serve

    kwargs = getattr(request, "param", {}) or {}
    async with serve(EmulatorConfig(**kwargs)) as emu:
        yield emu
