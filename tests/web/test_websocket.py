"""WebSockets through the gateway: token added, own Origin only, closed when the session ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import pytest
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.typing import Origin

from tests.support.asgi_server import ServerThread
from tests.support.stack import Stack


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(json.dumps({
        "authorization": websocket.headers.get("authorization", ""),
        "cookie": websocket.headers.get("cookie"),
    }))
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        elif message.get("bytes") is not None:
            await websocket.send_bytes(message["bytes"])


@pytest.fixture
def ws_stack(make_stack: Callable[..., Stack]) -> Iterator[Stack]:
    with ServerThread(Starlette(routes=[WebSocketRoute("/socket", echo)])) as upstream:
        yield make_stack(BFF_ROUTES=f"/ws={upstream.url}", BFF_WEBSOCKET_CHECK_INTERVAL="1")


def _cookie_header(stack: Stack, browser) -> str:
    return f"bff={browser.cookies['bff']}"


def test_websocket_echo_carries_the_token_and_closes_when_the_session_ends(ws_stack: Stack) -> None:
    browser = ws_stack.browser()
    ws_stack.login(browser)
    headers = {"Cookie": _cookie_header(ws_stack, browser), "User-Agent": browser.headers["User-Agent"]}

    async def scenario() -> int | None:
        url = ws_stack.url.replace("http", "ws") + "/ws/socket"
        async with connect(url, additional_headers=headers, origin=Origin(ws_stack.url)) as socket:
            hello = json.loads(await socket.recv())
            assert hello["authorization"].startswith("Bearer ")
            assert hello["cookie"] is None
            await socket.send("ping")
            assert await socket.recv() == "ping"
            await socket.send(b"\x00\x01")
            assert await socket.recv() == b"\x00\x01"
            await asyncio.to_thread(ws_stack.api, browser, "POST", "/bff/logout")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), timeout=10)
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(scenario()) == 1008


def test_websocket_from_a_foreign_origin_is_refused(ws_stack: Stack) -> None:
    browser = ws_stack.browser()
    ws_stack.login(browser)
    headers = {"Cookie": _cookie_header(ws_stack, browser), "User-Agent": browser.headers["User-Agent"]}

    async def scenario() -> None:
        url = ws_stack.url.replace("http", "ws") + "/ws/socket"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(url, additional_headers=headers, origin=Origin("https://evil.example")):
                pass
        assert refused.value.response.status_code == 403

    asyncio.run(scenario())


def test_websocket_without_a_session_is_refused(ws_stack: Stack) -> None:
    async def scenario() -> None:
        url = ws_stack.url.replace("http", "ws") + "/ws/socket"
        with pytest.raises(websockets.InvalidStatus):
            async with connect(url, origin=Origin(ws_stack.url)):
                pass

    asyncio.run(scenario())
