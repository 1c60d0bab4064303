"""Fixtures for gateway tests that need a forged provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bff.app import create_app
from bff.config import load_settings
from tests.support.asgi_server import ServerThread
from tests.support.forged_provider import ForgedProvider, Rig, serve_forged
from tests.support.stack import SECRET, Infra


@pytest.fixture
def rig(infra: Infra) -> Iterator[Rig]:
    """A gateway whose provider answers whatever tokens the test forges."""
    infra.redis.client().flushall()
    provider = ForgedProvider()
    server = serve_forged(provider)
    with server:
        settings = load_settings({
            "BFF_ISSUER": provider.issuer, "BFF_CLIENT_ID": provider.client_id,
            "BFF_CLIENT_SECRET": "s" * 16, "BFF_PUBLIC_URL": "http://127.0.0.1:1",
            "BFF_SESSION_SECRET": SECRET, "BFF_REDIS_URL": infra.redis.url,
            "BFF_CLOCK_SKEW": "30",
        })
        with ServerThread(create_app(settings)) as gateway:
            yield Rig(provider=provider, gateway=gateway, redis=infra.redis,
                      provider_app=server.server.config.app)
