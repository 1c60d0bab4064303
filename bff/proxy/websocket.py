"""Relay one browser WebSocket to its upstream, both ways, while the session lives.

The upstream leg uses the ``websockets`` asyncio client (a dependency of
``uvicorn[standard]``). The browser's socket is accepted only after the upstream
accepted, with the subprotocol the upstream chose; close codes travel both ways.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import anyio
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.typing import Subprotocol

logger = logging.getLogger("bff.proxy")

# The browser leg (uvicorn) accepts messages up to 16 MiB; the upstream leg matches it.
MAX_MESSAGE = 16 * 1024 * 1024
POLICY_VIOLATION = 1008
TIMEOUT_DETAIL = "The upstream service did not answer in time."
UNREACHABLE_DETAIL = "The upstream service could not be reached."
# The client library writes these itself; the browser's copies describe the other leg.
_HANDSHAKE = frozenset({
    "host", "connection", "upgrade", "sec-websocket-key", "sec-websocket-version",
    "sec-websocket-extensions", "sec-websocket-protocol", "sec-websocket-accept",
    "content-length", "transfer-encoding",
})
# Codes that may appear in a Close frame (RFC 6455 section 7.4).
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


@dataclass(frozen=True)
class _End:
    by: Literal["browser", "upstream", "session"]
    code: int
    reason: str


def _sendable(code: int, fallback: int) -> int:
    return code if code in _SENDABLE or 3000 <= code <= 4999 else fallback


async def relay_websocket(
    scope: Scope, receive: Receive, send: Send, *, url: str,
    headers: Sequence[tuple[bytes, bytes]], session_alive: Callable[[], Awaitable[bool]],
    check_interval: float, open_timeout: float,
) -> None:
    """Connect upstream, accept the browser, relay until one side ends or the session does."""
    if (await receive())["type"] != "websocket.connect":
        return
    if url.startswith(("http://", "https://")):
        url = "ws" + url.removeprefix("http")
    extra = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in headers
        if name.decode("latin-1").lower() not in _HANDSHAKE
    ]
    offered = [Subprotocol(p) for p in scope.get("subprotocols", [])]
    try:
        upstream = await connect(
            url, additional_headers=extra, subprotocols=offered or None, proxy=None,
            open_timeout=open_timeout, user_agent_header=None, compression=None,
            max_size=MAX_MESSAGE, close_timeout=5,
        )
    except TimeoutError:
        await _deny(scope, send, 504, "upstream_timeout", TIMEOUT_DETAIL)
        return
    except (OSError, WebSocketException) as exc:
        logger.warning("upstream websocket failed: %s: %s", type(exc).__name__, exc)
        await _deny(scope, send, 502, "upstream_error", UNREACHABLE_DETAIL)
        return
    try:
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        end = await _relay(receive, send, upstream, session_alive, check_interval)
        await _finish(end, send, upstream)
    except OSError:  # the browser vanished while we were talking to it
        pass
    finally:
        with anyio.CancelScope(shield=True):
            await upstream.close()


async def _deny(scope: Scope, send: Send, status: int, error: str, detail: str) -> None:
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1011})  # the server answers 403
        return
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send({
        "type": "websocket.http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ],
    })
    await send({"type": "websocket.http.response.body", "body": body})


async def _relay(
    receive: Receive, send: Send, upstream: ClientConnection,
    session_alive: Callable[[], Awaitable[bool]], check_interval: float,
) -> _End:
    ends: list[_End] = []
    async with anyio.create_task_group() as group:

        def finish(end: _End) -> None:
            ends.append(end)
            group.cancel_scope.cancel()

        async def browser_to_upstream() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    finish(_End("browser", message.get("code", 1005), message.get("reason") or ""))
                    return
                if message["type"] != "websocket.receive":
                    continue
                text = message.get("text")
                try:
                    await upstream.send(text if text is not None else message.get("bytes") or b"")
                except ConnectionClosed as exc:
                    finish(_closed_by_upstream(exc))
                    return

        async def upstream_to_browser() -> None:
            while True:
                try:
                    data = await upstream.recv()
                except ConnectionClosed as exc:
                    finish(_closed_by_upstream(exc))
                    return
                key = "text" if isinstance(data, str) else "bytes"
                try:
                    await send({"type": "websocket.send", key: data})
                except OSError:  # the browser left; its disconnect message ends the relay
                    return

        async def watch_session() -> None:
            while True:
                await anyio.sleep(check_interval)
                try:
                    alive = await session_alive()
                except Exception:  # a store hiccup must not end the user's socket
                    logger.warning("session check failed; keeping the websocket", exc_info=True)
                    continue
                if not alive:
                    finish(_End("session", POLICY_VIOLATION, "session ended"))
                    return

        group.start_soon(browser_to_upstream)
        group.start_soon(upstream_to_browser)
        group.start_soon(watch_session)
    return ends[0]


def _closed_by_upstream(exc: ConnectionClosed) -> _End:
    if exc.rcvd is None:
        return _End("upstream", 1006, "")
    return _End("upstream", exc.rcvd.code, exc.rcvd.reason)


async def _finish(end: _End, send: Send, upstream: ClientConnection) -> None:
    if end.by != "upstream":
        await upstream.close(_sendable(end.code, 1000), end.reason)
    if end.by != "browser":
        code = _sendable(end.code, 1000 if end.code == 1005 else 1011)
        await send({"type": "websocket.close", "code": code, "reason": end.reason})
