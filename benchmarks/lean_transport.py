"""EXPERIMENT: a lean HTTP/1.1 upstream transport (asyncio protocol + httptools).

Profiles of ``bff serve`` put most of the gateway's CPU in the httpx -> httpcore
-> anyio -> h11 stack (about 1,600 Python calls per proxied request, and an O(pool
size) scan with one ``poll()`` per idle connection on every checkout and release).
This transport keeps httpx's *interface* (``httpx.AsyncBaseTransport``: the
Forwarder is unchanged) but does the work with one ``asyncio.Protocol`` per
connection and the C parser uvicorn already uses.

It exists to measure what a lean proxy path would buy (``--experiment lean``);
it is not wired into bff. Scope: HTTP/1.1 over TCP or TLS, keep-alive with LIFO
idle reuse, streamed request and response bodies with flow control both ways,
connect/read/write timeouts mapped to httpx's exceptions, one retry of a
replayable request on a stale pooled connection.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

_HIGH_WATER = 256 * 1024  # buffered response bytes before reading from the upstream pauses
_LOW_WATER = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NO_BODY_STATUS = (204, 304)


class _Stale(Exception):
    """A pooled connection died before the upstream sent a single byte back."""


class _Connection(asyncio.Protocol):
    """One upstream connection: parses responses as they arrive, one request at a time."""

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = True
        self.until_close = False
        self.got_bytes = False
        self.head_request = False
        self.error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._reading_paused = False

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed upstream response: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        if self.headers_done and self.until_close and not self.complete:
            self.complete = True
            self.keep_alive = False
            self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            if not self.got_bytes and self.reused:
                self._fail(_Stale())
            elif not self.headers_done:
                self._fail(httpx.RemoteProtocolError("Server disconnected without sending a response."))
            else:
                self._fail(httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(httpx.WriteError("connection lost while writing"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- httptools callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers = []  # an interim response: the real one follows
            return
        self.status = status
        self.headers_done = True
        self.keep_alive = bool(self.parser.should_keep_alive())
        framed = any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in self.headers)
        self.until_close = not framed and status not in _NO_BODY_STATUS
        if self.head_request or status in _NO_BODY_STATUS:
            # httptools cannot be told a response has no body; finish it here and do
            # not reuse the connection, whose parser may still expect one.
            self.complete = True
            if self.head_request:
                self.keep_alive = False
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.headers_done:
            return  # the end of an interim (1xx) response
        self.complete = True
        self.keep_alive = self.keep_alive and bool(self.parser.should_keep_alive())
        self._wake()

    # --- used by the transport --------------------------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        self._wake()

    async def _wait(self, seconds: float | None) -> None:
        if self.error is not None:
            raise self.error
        self._waiter = self._loop.create_future()
        try:
            async with asyncio.timeout(seconds):
                await self._waiter
        except TimeoutError:
            raise httpx.ReadTimeout("upstream read timed out") from None
        finally:
            self._waiter = None
        if self.error is not None:
            raise self.error

    async def write(self, data: bytes, seconds: float | None) -> None:
        if self.closed or self.transport is None:
            raise httpx.WriteError("connection closed")
        self.transport.write(data)
        if self._write_paused:
            self._drained = self._loop.create_future()
            try:
                async with asyncio.timeout(seconds):
                    await self._drained
            except TimeoutError:
                raise httpx.WriteTimeout("upstream write timed out") from None
            finally:
                self._drained = None

    async def response_head(self, seconds: float | None) -> None:
        while not self.headers_done:
            await self._wait(seconds)

    async def chunks(self, seconds: float | None) -> AsyncIterator[bytes]:
        while True:
            if self.body:
                chunk = self.body.popleft()
                self.buffered -= len(chunk)
                if self._reading_paused and self.buffered < _LOW_WATER and self.transport is not None:
                    self._reading_paused = False
                    self.transport.resume_reading()
                yield chunk
            elif self.complete:
                return
            else:
                await self._wait(seconds)

    def reusable(self) -> bool:
        return (self.complete and self.keep_alive and not self.closed and self.error is None
                and not self.body)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, transport: LeanTransport, conn: _Connection, read: float | None) -> None:
        self._transport = transport
        self._conn = conn
        self._read = read
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._conn.chunks(self._read):
            yield chunk

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._transport._release(self._conn)


class LeanTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` with a per-origin LIFO pool of idle connections."""

    def __init__(self, *, max_idle_per_origin: int = 128, keepalive_expiry: float = 5.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._max_idle = max_idle_per_origin
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        url = request.url
        key = (url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 80))
        replayable = isinstance(request.stream, httpx.ByteStream)
        for attempt in (0, 1):
            conn = self._checkout(key) if attempt == 0 else None
            if conn is None:
                conn = await self._connect(key, timeouts.get("connect"))
            try:
                await self._send(conn, request, timeouts.get("write"))
                await conn.response_head(timeouts.get("read"))
            except _Stale:
                conn.close()
                if replayable and attempt == 0:
                    continue
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from None
            except (httpx.HTTPError, OSError):
                if not conn.headers_done:
                    conn.close()
                    raise
                # The upstream answered while the body was still going out (e.g. 413):
                # pass its answer on; the connection is not reused.
                conn.keep_alive = False
            except BaseException:
                conn.close()
                raise
            return httpx.Response(
                conn.status, headers=conn.headers,
                stream=_ResponseStream(self, conn, timeouts.get("read")),
                extensions={"http_version": b"HTTP/1.1"},
            )
        raise AssertionError("unreachable")

    def _checkout(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._expiry:
                conn.reused = True
                return conn
            conn.close()
        return None

    async def _connect(self, key: tuple[str, str, int], seconds: float | None) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if scheme == "https":
            context = self._ssl or ssl.create_default_context()
        try:
            async with asyncio.timeout(seconds):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(key), host, port, ssl=context,
                    server_hostname=host if context else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return protocol

    async def _send(self, conn: _Connection, request: httpx.Request, write: float | None) -> None:
        conn._reset()
        conn.head_request = request.method == "HEAD"
        target = request.url.raw_path
        lines = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
        chunked = False
        for name, value in request.headers.raw:
            lines += [name, b": ", value, b"\r\n"]
            if name.lower() == b"transfer-encoding" and value.lower() == b"chunked":
                chunked = True
        lines.append(b"\r\n")
        head = b"".join(lines)
        stream = request.stream
        if isinstance(stream, httpx.ByteStream):
            body = b"".join([part async for part in stream])
            await conn.write(head + body, write)
            return
        await conn.write(head, write)
        async for part in stream:  # type: ignore[union-attr]
            if not part:
                continue
            if chunked:
                await conn.write(b"%x\r\n%b\r\n" % (len(part), part), write)
            else:
                await conn.write(part, write)
        if chunked:
            await conn.write(b"0\r\n\r\n", write)

    def _release(self, conn: _Connection) -> None:
        if self._closed or not conn.reusable():
            conn.close()
            return
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
