"""HTTP/1.1 to the upstreams: one ``asyncio.Protocol`` per connection, parsed by httptools.

Why not httpx here: profiles of the proxy path put about two thirds of the gateway's
CPU in httpx -> httpcore -> anyio -> h11 (some 1,600 Python calls per request, and an
O(pool size) scan with a ``poll()`` per idle connection on every checkout). This
module does the same job with the C parser uvicorn already uses; see
``benchmarks/RESULTS.md`` for the figures. It only speaks HTTP/1.1 (TLS or not),
which is what upstream APIs behind a gateway speak.

What it guarantees, because every byte from the browser and the upstream is hostile:

- no header, value or request target with CR, LF, NUL or other control characters
  leaves the gateway (a forged token or claim cannot become a second header line);
- the request is framed by the gateway alone: a buffered body gets its own
  ``Content-Length``, a streamed one keeps the browser's length (enforced by the ASGI
  server) or is sent chunked;
- a response the parser does not accept (conflicting lengths, bad chunking, an
  unexpected upgrade) is a protocol error, never relayed as a valid one;
- a connection goes back to the pool only after a complete response with keep-alive,
  never after HEAD (httptools cannot be told that response has no body), never with
  bytes left over, and never once the upstream sent anything while it sat idle;
- an idempotent request that found its pooled connection already closed by the
  upstream (nothing received) is sent once more on a new connection when its body is
  in memory; a POST or PATCH is not (the upstream may have acted on it): a 502.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import httptools

from bff.proxy.body import content_length

RawHeaders = list[tuple[bytes, bytes]]
Body = bytes | AsyncIterable[bytes] | None

# Buffered response bytes at which reading from the upstream pauses, and resumes.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
_NO_BODY_STATUS = (204, 304)
# Bytes that may never appear in an outgoing header value or request target.
_FORBIDDEN = frozenset(range(0x20)) - {0x09} | {0x7F}
_TARGET_FORBIDDEN = frozenset(range(0x21)) | {0x7F}
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_FRAMING = (b"content-length", b"transfer-encoding", b"host")
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class UpstreamError(Exception):
    """The upstream could not be reached, or broke the protocol."""


class UpstreamTimeout(UpstreamError):
    """Connecting, sending or waiting for the upstream took longer than allowed."""


class _Stale(Exception):
    """A pooled connection was closed before the upstream sent a single byte back."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int
    host_header: bytes


@lru_cache(maxsize=256)
def _origin(base: str) -> Origin:
    scheme, _, netloc = base.partition("://")
    if (scheme not in ("http", "https") or not netloc or "@" in netloc
            or not _TARGET_FORBIDDEN.isdisjoint(netloc.encode("utf-8"))):
        raise UpstreamError(f"unsupported upstream address {base!r}")
    host, port = netloc, 443 if scheme == "https" else 80
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = netloc[1:end], netloc[end + 1:]
        if rest:
            port = _port(rest[1:] if rest.startswith(":") else "")
    elif ":" in netloc:
        host, _, text = netloc.rpartition(":")
        port = _port(text)
    return Origin(scheme, host, port, netloc.encode("ascii"))


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ValueError("bad port")
    return int(text)


def split_url(url: str) -> tuple[Origin, bytes]:
    """The origin and the request target (path and query) of an absolute http(s) URL."""
    scheme_end = url.find("://")
    slash = url.find("/", scheme_end + 3) if scheme_end >= 0 else -1
    base, target = (url, "/") if slash < 0 else (url[:slash], url[slash:])
    try:
        origin = _origin(base)
        raw = target.encode("ascii")
    except (ValueError, UnicodeEncodeError):
        raise UpstreamError("malformed upstream URL") from None
    if not _TARGET_FORBIDDEN.isdisjoint(raw):
        raise UpstreamError("control character or space in the request target")
    return origin, raw


def request_head(method: str, target: bytes, origin: Origin, headers: Sequence[tuple[bytes, bytes]],
                 length: int | None) -> bytes:
    """The request line and headers; ``length`` None means a chunked body.

    Framing headers from ``headers`` are ignored: the gateway frames the body itself.
    """
    verb = method.encode("utf-8")
    if not verb or not _TOKEN.issuperset(verb):
        raise UpstreamError("a request method that cannot be sent safely")
    lines = [verb, b" ", target, b" HTTP/1.1\r\nhost: ", origin.host_header, b"\r\n"]
    for name, value in headers:
        if name.lower() in _FRAMING:
            continue
        if not name or not _TOKEN.issuperset(name) or not _FORBIDDEN.isdisjoint(value):
            raise UpstreamError("a header that cannot be sent safely")
        lines += (name, b": ", value, b"\r\n")
    if length is None:
        lines.append(b"transfer-encoding: chunked\r\n")
    elif length or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        lines += (b"content-length: ", str(length).encode(), b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class _Connection(asyncio.Protocol):
    """One upstream connection: parses responses as they arrive, one request at a time."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.in_use = False
        self.reused = False
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self.reset(head=False)

    def reset(self, *, head: bool) -> None:
        self.status = 0
        self.headers: RawHeaders = []
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = True
        self.until_close = False
        self.got_bytes = False
        self.head_request = head
        self.error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._reading_paused = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.in_use:  # nothing was asked: an idle connection must stay silent
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the upstream switched protocols unasked"))
            self.close()
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed upstream response: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        if self.headers_done and self.until_close and not self.complete:
            self.complete = True
            self.keep_alive = False
            self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.in_use and not self.complete and self.headers_done and self.until_close and exc is None:
            # A body delimited by the end of the connection (TLS may end without an EOF);
            # a reset (exc) is a broken body, not its end.
            self.complete = True
            self.keep_alive = False
            self._wake()
        elif self.in_use and not self.complete:
            if not self.got_bytes and self.reused:
                self._fail(_Stale())
            elif not self.headers_done:
                self._fail(UpstreamError("the upstream closed the connection without answering"))
            else:
                self._fail(UpstreamError("the upstream closed the connection mid-response"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(UpstreamError("connection lost while sending"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # more bytes after the answer to the one request sent
            raise UpstreamError("the upstream sent more than one response")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.headers_done:  # trailer fields are not headers, and come too late to relay
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.headers = []  # an interim response: the real one follows
            return
        self.status = status
        self.headers_done = True
        self.keep_alive = bool(self.parser.should_keep_alive())
        framed = any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in self.headers)
        self.until_close = not framed and status not in _NO_BODY_STATUS
        if self.head_request:
            # The parser would wait for a body a HEAD response never has: finish here,
            # and do not reuse a connection whose parser is in that state.
            self.complete = True
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

    # used by the pool

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        self._wake()

    async def _wait(self, seconds: float | None, what: str) -> None:
        if self.error is not None:
            raise self.error
        self._waiter = self._loop.create_future()
        timer = self._loop.call_later(seconds, self._time_out, what) if seconds else None
        try:
            await self._waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if self.error is not None:
            raise self.error

    def _time_out(self, what: str) -> None:
        self._fail(UpstreamTimeout(f"the upstream took too long {what}"))

    async def write(self, data: bytes, seconds: float | None) -> None:
        if self.closed or self.transport is None:
            raise UpstreamError("the upstream connection is closed")
        self.transport.write(data)
        if not self._write_paused:
            return
        self._drained = self._loop.create_future()
        try:
            await asyncio.wait_for(self._drained, seconds)
        except TimeoutError:
            raise UpstreamTimeout("the upstream took too long to accept the request body") from None
        finally:
            self._drained = None

    async def response_head(self, seconds: float | None) -> None:
        while not self.headers_done:
            await self._wait(seconds, "to answer")

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
                await self._wait(seconds, "to send the response body")

    def reusable(self) -> bool:
        return (self.complete and self.keep_alive and not self.closed and self.error is None
                and not self.body)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamResponse:
    """Status, raw headers and the (de-chunked, still content-encoded) body of one response.

    ``aclose()`` must be called: it returns the connection to the pool or closes it.
    """

    def __init__(self, pool: UpstreamPool, conn: _Connection, read_timeout: float | None) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._pool = pool
        self._conn = conn
        self._read = read_timeout
        self._released = False

    def chunks(self) -> AsyncIterator[bytes]:
        return self._conn.chunks(self._read)

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._conn)


class UpstreamPool:
    """Keep-alive connections per origin (LIFO reuse), at most ``max_connections`` at once.

    Idle connections are dropped after ``keepalive_expiry`` seconds: 4 s stays below
    the 5 s idle timeout of Node.js servers, so a request rarely meets a connection the
    upstream is closing at that moment.

    One per route, so a slow upstream holding all of its connections cannot make
    other routes wait. No cookies, no redirects, no proxy from the environment.
    """

    def __init__(self, *, max_connections: int = 100, max_idle: int = 32,
                 keepalive_expiry: float = 4.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[Origin, list[_Connection]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._closed = False

    async def request(self, method: str, url: str, headers: Sequence[tuple[bytes, bytes]],
                      body: Body, timeout: float) -> UpstreamResponse:  # noqa: ASYNC109 - per phase
        """Send one request and return once the response's headers have arrived.

        ``timeout`` bounds each phase: waiting for a connection, connecting, every
        write, the response head and every wait for more of the body.
        """
        origin, target = split_url(url)
        length = len(body) if isinstance(body, bytes) else 0 if body is None else content_length(headers)
        head = request_head(method, target, origin, headers, length)
        # RFC 9110 9.2.2: only an idempotent request may be sent again by itself.
        replayable = not _is_stream(body) and method in _IDEMPOTENT
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout) if self._slots.locked() \
                else await self._slots.acquire()
        except TimeoutError:
            raise UpstreamTimeout("no upstream connection became free in time") from None
        try:
            return await self._exchange(origin, method, head, body, length, timeout, replayable)
        except BaseException:
            self._slots.release()
            raise

    async def _exchange(self, origin: Origin, method: str, head: bytes, body: Body,
                        length: int | None, timeout: float,  # noqa: ASYNC109 - per phase
                        replayable: bool) -> UpstreamResponse:
        for attempt in (0, 1):
            conn = self._checkout(origin) if attempt == 0 else None
            if conn is None:
                conn = await self._connect(origin, timeout)
            conn.reset(head=method == "HEAD")
            conn.in_use = True
            try:
                await _send(conn, head, body, length, timeout)
                await conn.response_head(timeout)
            except _Stale:
                conn.close()
                if replayable and attempt == 0:
                    continue
                raise UpstreamError("the upstream closed the connection without answering") from None
            except UpstreamError:
                if not conn.headers_done:
                    conn.close()
                    raise
                # It answered while the body was still going out (a 413, say): pass the
                # answer on; the connection is not reused.
                conn.keep_alive = False
            except BaseException:
                conn.close()
                raise
            return UpstreamResponse(self, conn, timeout)
        raise AssertionError("unreachable")

    def _checkout(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._expiry:
                conn.reused = True
                return conn
            conn.close()
        return None

    async def _connect(self, origin: Origin, seconds: float) -> _Connection:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if origin.scheme == "https":
            if self._ssl is None:
                # The system's CA store (SSL_CERT_FILE / SSL_CERT_DIR extend it), loaded once:
                # reading it costs milliseconds, too much for every new connection.
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(seconds):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(origin), origin.host, origin.port, ssl=context,
                    server_hostname=origin.host if context else None,
                )
        except TimeoutError:
            raise UpstreamTimeout(f"connecting to {origin.host}:{origin.port} took too long") from None
        except OSError as exc:  # ssl.SSLError included
            raise UpstreamError(f"cannot connect to {origin.host}:{origin.port}: {exc}") from exc
        return protocol

    def release(self, conn: _Connection) -> None:
        """Take a connection back after its response was read (or abandoned)."""
        self._slots.release()
        conn.in_use = False
        if self._closed or not conn.reusable():
            conn.close()
            return
        idle = self._idle.setdefault(conn.origin, [])
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


def _is_stream(body: Body) -> bool:
    return body is not None and not isinstance(body, bytes)


async def _send(conn: _Connection, head: bytes, body: Body, length: int | None,
                seconds: float) -> None:
    if body is None:
        await conn.write(head, seconds)
        return
    if isinstance(body, bytes):
        await conn.write(head + body, seconds)
        return
    await conn.write(head, seconds)
    sent = 0
    async for part in body:
        if not part:
            continue
        sent += len(part)
        if length is None:
            await conn.write(b"%x\r\n%b\r\n" % (len(part), part), seconds)
        elif sent > length:
            raise UpstreamError("the request body is longer than its Content-Length")
        else:
            await conn.write(part, seconds)
    if length is None:
        await conn.write(b"0\r\n\r\n", seconds)
    elif sent != length:
        raise UpstreamError("the request body is shorter than its Content-Length")
