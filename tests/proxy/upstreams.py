"""A stand-in upstream service: a raw ASGI app whose endpoints exercise the proxy.

HTTP (any prefix before the last segment is ignored, so ``/base/echo`` is ``echo``):
    echo        JSON of what arrived: method, path, raw_path, query, headers, body
    set-cookie  sets ``upstream_sid=<query>`` and echoes
    sse         one event, waits for ``sse_release``, one more event, ends
    hold        one event, then waits until the proxy hangs up (sets ``hold_closed``)
    download    ``?size=N`` bytes in 64 KiB chunks, with Content-Length
    upload      counts the body's bytes, answers ``{"received": n}`` (``-n`` if cut off)
    sleep       never answers until the test ends
    auth        401 unless ``Authorization: Bearer fresh`` (counts ``auth_calls``)
    hop         a response carrying hop-by-hop and Connection-named headers
    broken      declares 100 bytes, sends 10, then fails
WebSocket ``/ws``: echoes; ``whoami`` answers the handshake headers and subprotocol;
``close:<code>`` closes with that code; records the browser side's close code in ``ws_closes``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Receive, Scope, Send

CHUNK = 64 * 1024
_ZEROS = b"\0" * CHUNK


class Upstream:
    """The upstream app; its attributes let tests observe and steer it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.sse_release = asyncio.Event()
        self.hold_closed = asyncio.Event()
        self.never = asyncio.Event()
        self.auth_calls: list[str | None] = []
        self.uploads: list[int] = []
        self.upload_ended = asyncio.Event()
        self.ws_closes: asyncio.Queue[int] = asyncio.Queue()

    def release_all(self) -> None:
        self.sse_release.set()
        self.never.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        assert scope["type"] == "http"
        name = scope["path"].rstrip("/").rsplit("/", 1)[-1]
        handler = getattr(self, f"_{name.replace('-', '_')}", self._echo)
        await handler(scope, receive, send)

    # -- HTTP -------------------------------------------------------------------

    def _seen(self, scope: Scope, body: bytes = b"") -> dict[str, Any]:
        seen = {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": body.decode("latin-1"),
        }
        self.requests.append(seen)
        return seen

    async def _read(self, receive: Receive) -> bytes:
        body = b""
        while True:
            message = await receive()
            chunk: bytes = message.get("body", b"")
            body += chunk
            if not message.get("more_body", False):
                return body

    async def _json(self, send: Send, data: Any, status: int = 200,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
        body = json.dumps(data).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ]})
        await send({"type": "http.response.body", "body": body})

    async def _echo(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._json(send, self._seen(scope, await self._read(receive)))

    async def _set_cookie(self, scope: Scope, receive: Receive, send: Send) -> None:
        cookie = b"upstream_sid=" + scope["query_string"] + b"; Path=/; HttpOnly"
        seen = self._seen(scope, await self._read(receive))
        await self._json(send, seen, headers=[(b"set-cookie", cookie)])

    async def _start_stream(self, send: Send, content_type: bytes) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", content_type), (b"cache-control", b"no-cache"),
        ]})

    async def _sse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._start_stream(send, b"text/event-stream")
        await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
        await self.sse_release.wait()
        await send({"type": "http.response.body", "body": b"data: two\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _hold(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._start_stream(send, b"text/event-stream")
        await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        self.hold_closed.set()

    async def _download(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = int(scope["query_string"].decode().removeprefix("size="))
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(size).encode()),
        ]})
        while size > 0:
            chunk = _ZEROS[: min(size, CHUNK)]
            size -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": size > 0})

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.uploads.append(-received)
                self.upload_ended.set()
                return
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.uploads.append(received)
        self.upload_ended.set()
        await self._json(send, {"received": received})

    async def _sleep(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.never.wait()
        await self._json(send, {"slept": True})

    async def _auth(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = self._seen(scope, await self._read(receive))
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode() or None
        self.auth_calls.append(authorization)
        if authorization == "Bearer fresh":
            await self._json(send, seen)
        else:
            await self._json(send, {"upstream": "expired"}, status=401,
                             headers=[(b"www-authenticate", b'Bearer error="invalid_token"')])

    async def _hop(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._read(receive)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"connection", b"x-upstream-private"), (b"x-upstream-private", b"secret"),
            (b"keep-alive", b"timeout=5"), (b"proxy-authenticate", b"Basic"),
            (b"upgrade", b"h2c"), (b"trailer", b"x-checksum"),
            (b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2; Path=/"),
            (b"x-kept", b"yes"), (b"content-length", b"2"),
        ]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def _broken(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"100")]})
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        raise RuntimeError("upstream broke on purpose")

    # -- WebSocket --------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        offered = scope.get("subprotocols") or []
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.ws_closes.put_nowait(message.get("code", 1005))
                return
            text = message.get("text")
            if text == "whoami":
                reply = {"headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
                         "subprotocol": offered[0] if offered else None}
                await send({"type": "websocket.send", "text": json.dumps(reply)})
            elif text is not None and text.startswith("close:"):
                await send({"type": "websocket.close", "code": int(text[6:]), "reason": "bye"})
                return
            elif text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
