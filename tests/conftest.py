"""Shared fixtures: every async test runs on asyncio (aiobotocore is asyncio-only)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
