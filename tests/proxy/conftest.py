"""Fixtures: a real upstream and the stand-in gateway, each served by uvicorn on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from bff.config import Route
from bff.proxy import Forwarder

from .gateway import GatewayOptions, StandInGateway
from .servers import LiveServer, closed_port, serve
from .upstreams import Upstream


@dataclass
class RunningUpstream:
    app: Upstream
    server: LiveServer


@dataclass
class RunningGateway:
    app: StandInGateway
    server: LiveServer

    @property
    def options(self) -> GatewayOptions:
        return self.app.options


@pytest.fixture
async def upstream() -> AsyncIterator[RunningUpstream]:
    app = Upstream()
    async with serve(app) as server:
        try:
            yield RunningUpstream(app, server)
        finally:
            app.release_all()


@pytest.fixture
async def blackhole() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never says a word."""
    release = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        release.set()
        server.close()
        await server.wait_closed()


def gateway_routes(upstream: str, blackhole: str) -> list[Route]:
    return [
        Route(prefix="/api", upstream=f"{upstream}/base"),
        Route(prefix="/api/v2", upstream=f"{upstream}/v2"),
        Route(prefix="/keep", upstream=upstream, strip_prefix=False),
        Route(prefix="/user", upstream=upstream, pass_user_headers=True),
        Route(prefix="/small", upstream=upstream, max_body_size=1000),
        Route(prefix="/slow", upstream=upstream, timeout=0.3),
        Route(prefix="/down", upstream=f"http://127.0.0.1:{closed_port()}"),
        Route(prefix="/public", upstream=upstream, token="none"),
        Route(prefix="/blackhole", upstream=blackhole, timeout=0.3),
    ]


@pytest.fixture
async def gateway(upstream: RunningUpstream, blackhole: str) -> AsyncIterator[RunningGateway]:
    forwarder = Forwarder.create()
    app = StandInGateway(gateway_routes(upstream.server.base_url, blackhole), forwarder)
    try:
        async with serve(app) as server:
            yield RunningGateway(app, server)
    finally:
        await forwarder.aclose()


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.server.base_url, timeout=10) as client:
        yield client
