"""Forwarder.websocket: relay both ways, bearer upstream, close codes, session end -> 1008."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from .conftest import RunningGateway, RunningUpstream

WAIT = 5.0


def ws_url(gateway: RunningGateway, path: str = "/api/ws") -> str:
    return gateway.server.url(path, scheme="ws")


async def closed_code(ws: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as caught:
        await asyncio.wait_for(ws.recv(), WAIT)
    assert caught.value.rcvd is not None
    return caught.value.rcvd.code


async def test_websocket_echoes_text_and_binary_through_the_proxy(gateway: RunningGateway) -> None:
    async with connect(ws_url(gateway), proxy=None) as ws:
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "hello"
        await ws.send(b"\x00\x01binary")
        assert await asyncio.wait_for(ws.recv(), WAIT) == b"\x00\x01binary"


async def test_websocket_upstream_sees_the_bearer_and_not_the_browser_credentials(
    gateway: RunningGateway,
) -> None:
    offered = [Subprotocol("chat.v1"), Subprotocol("chat.v0")]
    spoofed = {"Cookie": "bff=session", "Authorization": "Basic eDp5", "X-Forwarded-User": "mallory"}
    async with connect(ws_url(gateway), proxy=None, subprotocols=offered,
                       additional_headers=spoofed) as ws:
        assert ws.subprotocol == "chat.v1"
        await ws.send("whoami")
        reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    headers = {name: value for name, value in reply["headers"]}
    assert headers["authorization"] == "Bearer token-1"
    assert "cookie" not in headers
    assert "x-forwarded-user" not in headers
    assert headers["sec-websocket-protocol"] == "chat.v1, chat.v0"
    assert reply["subprotocol"] == "chat.v1"


async def test_upstream_close_code_reaches_the_browser(gateway: RunningGateway) -> None:
    async with connect(ws_url(gateway), proxy=None) as ws:
        await ws.send("close:4001")
        assert await closed_code(ws) == 4001
        assert ws.close_reason == "bye"


async def test_browser_close_code_reaches_the_upstream(
    gateway: RunningGateway, upstream: RunningUpstream,
) -> None:
    async with connect(ws_url(gateway), proxy=None) as ws:
        await ws.send("ping")
        await asyncio.wait_for(ws.recv(), WAIT)
        await ws.close(4002, "done")
    assert await asyncio.wait_for(upstream.app.ws_closes.get(), WAIT) == 4002


async def test_websocket_is_closed_with_1008_when_the_session_ends(
    gateway: RunningGateway, upstream: RunningUpstream,
) -> None:
    gateway.options.check_interval = 0.02
    async with connect(ws_url(gateway), proxy=None) as ws:
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "still here"
        gateway.options.session_alive = False
        assert await closed_code(ws) == 1008
    assert await asyncio.wait_for(upstream.app.ws_closes.get(), WAIT) == 1008


async def test_websocket_to_an_unreachable_upstream_is_refused_with_502(
    gateway: RunningGateway,
) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(ws_url(gateway, "/down/ws"), proxy=None):
            pass
    assert caught.value.response.status_code == 502
    assert json.loads(caught.value.response.body or b"{}")["error"] == "upstream_error"


async def test_websocket_to_a_silent_upstream_is_refused_with_504(gateway: RunningGateway) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(ws_url(gateway, "/blackhole/ws"), proxy=None):
            pass
    assert caught.value.response.status_code == 504
    assert json.loads(caught.value.response.body or b"{}")["error"] == "upstream_timeout"
