"""Fixtures shared by the oidc tests: an HTTP client and a respx router standing in for the provider."""

from __future__ import annotations

import httpx
import pytest
import respx


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def router():
    with respx.mock(assert_all_called=False) as mock:
        yield mock
