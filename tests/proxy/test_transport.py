"""UpstreamPool against scripted raw TCP upstreams: the exact bytes sent, and how answers are taken.

Every upstream here is an ``asyncio.start_server`` on a free port whose handler sends
exact bytes and records exactly what it received, one ``RawConnection`` per accepted
TCP connection, so "reused" and "not reused" are counted, not inferred.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from bff.proxy.transport import Body, RawHeaders, UpstreamError, UpstreamPool, UpstreamTimeout
from tests.support.certificates import make_certificates

from .servers import closed_port

WAIT = 5.0  # a ceiling for failure, never a stand-in for synchronisation
SHORT = 0.3  # the timeout given to the pool where a timeout is the point of the test


# -- a scripted upstream -------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request as the upstream received it."""

    raw: bytes  # head and body exactly as framed on the wire
    line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes  # de-chunked

    def values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name]


class RawConnection:
    """The upstream's end of one accepted TCP connection."""

    def __init__(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.index = index
        self.reader = reader
        self.writer = writer
        self.requests: list[Request] = []
        self.got_request = asyncio.Event()  # set once a whole request has arrived
        self.hung_up = asyncio.Event()  # set once the client closed its side (read got EOF)

    async def read_request(self) -> Request:
        """Read one request, decoding its body by its own framing (chunked, length or none)."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        line, *fields = head[:-4].split(b"\r\n")
        headers = []
        for field in fields:
            name, _, value = field.partition(b":")
            headers.append((name, value.strip()))
        raw, body = bytearray(head), bytearray()
        lowered = [(name.lower(), value) for name, value in headers]
        if (b"transfer-encoding", b"chunked") in lowered:
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line[:-2], 16)
                data = await self.reader.readexactly(size + 2)
                raw += size_line + data
                assert data.endswith(b"\r\n"), "chunk data not followed by CRLF"
                body += data[:-2]
                if size == 0:
                    break
        else:
            lengths = [value for name, value in lowered if name == b"content-length"]
            if lengths:
                data = await self.reader.readexactly(int(lengths[0]))
                raw += data
                body += data
        request = Request(bytes(raw), line, headers, bytes(body))
        self.requests.append(request)
        self.got_request.set()
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def wait_for_hang_up(self) -> bytes:
        """Everything the client still sends, once it closes the connection."""
        rest = await self.reader.read()
        self.hung_up.set()
        return rest


Handler = Callable[[RawConnection], Awaitable[None]]


class RawUpstream:
    """A TCP server that runs ``handler`` for every connection and keeps them all."""

    def __init__(self, handler: Handler, scheme: str = "http") -> None:
        self.handler = handler
        self.scheme = scheme
        self.connections: list[RawConnection] = []
        self.accepted = asyncio.Event()
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = RawConnection(len(self.connections), reader, writer)
        self.connections.append(conn)
        self.accepted.set()
        try:
            await self.handler(conn)
        except (asyncio.IncompleteReadError, ConnectionError):
            conn.hung_up.set()  # the client hung up while the script expected more
        except asyncio.CancelledError:
            pass  # the test is over (start_server would log a cancelled handler as an error)
        finally:
            writer.close()
            self._tasks.discard(task)


@contextlib.asynccontextmanager
async def raw_upstream(handler: Handler, tls: ssl.SSLContext | None = None,
                       ) -> AsyncIterator[RawUpstream]:
    upstream = RawUpstream(handler, "https" if tls else "http")
    server = await asyncio.start_server(upstream._accept, "127.0.0.1", 0, ssl=tls)
    upstream.port = server.sockets[0].getsockname()[1]
    try:
        yield upstream
    finally:
        server.close()
        tasks = list(upstream._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def response(body: bytes, *headers: bytes) -> bytes:
    extra = b"".join(header + b"\r\n" for header in headers)
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%b\r\n%b" % (len(body), extra, body)


async def keep_answering(conn: RawConnection) -> None:
    """Answer every request with a body naming the connection and the request: ``c0r1``."""
    while True:
        await conn.read_request()
        await conn.send(response(b"c%dr%d" % (conn.index, len(conn.requests))))


def answer_once_then_wait(reply: bytes) -> Handler:
    """Send ``reply`` to the first request, then only wait for the client to hang up."""

    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(reply)
        await conn.wait_for_hang_up()

    return handler


def first_connection_then(first: Handler, others: Handler = keep_answering) -> Handler:
    async def handler(conn: RawConnection) -> None:
        await (first if conn.index == 0 else others)(conn)

    return handler


@contextlib.contextmanager
def protocol_error() -> Iterator[None]:
    """An UpstreamError seen as such, not a timeout that happened to end the wait."""
    with pytest.raises(UpstreamError) as raised:
        yield
    assert not isinstance(raised.value, UpstreamTimeout), raised.value


@dataclass
class Fetched:
    status: int
    headers: RawHeaders
    body: bytes


async def fetch(pool: UpstreamPool, url: str, *, method: str = "GET",
                headers: Sequence[tuple[bytes, bytes]] = (), body: Body = None,
                seconds: float = WAIT) -> Fetched:
    """One whole exchange: the response read to its end, then handed back to the pool."""
    answer = await pool.request(method, url, headers, body, seconds)
    try:
        content = b"".join([chunk async for chunk in answer.chunks()])
    finally:
        await answer.aclose()
    return Fetched(answer.status, answer.headers, content)


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    pool = UpstreamPool()
    try:
        yield pool
    finally:
        await pool.aclose()


@pytest.fixture(autouse=True)
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing escapes to the event loop's error log (an operator would see a traceback)."""
    yield
    errors = [r for r in caplog.get_records("call") if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# -- request framing: nothing the caller passes can split or reframe the request -----------


async def assert_nothing_reached(upstream: RawUpstream, pool: UpstreamPool) -> None:
    """A clean request afterwards is the first and only thing the upstream ever received."""
    assert (await fetch(pool, upstream.url("/clean"))).body == b"c0r1"
    assert len(upstream.connections) == 1
    assert upstream.connections[0].requests[0].raw.startswith(b"GET /clean HTTP/1.1\r\n")


@pytest.mark.parametrize("value", [
    b"Bearer x\r\nX-Evil: 1", b"Bearer x\nX-Evil: 1", b"Bearer x\rX-Evil: 1", b"Bearer x\x00",
    b"Bearer \x1b[0m", b"Bearer x\x7f",
])
async def test_a_header_value_with_a_control_character_is_refused_before_anything_is_sent(
    pool: UpstreamPool, value: bytes,
) -> None:
    async with raw_upstream(keep_answering) as upstream:
        with protocol_error():
            await pool.request("GET", upstream.url("/x"), [(b"authorization", value)], None, WAIT)
        await assert_nothing_reached(upstream, pool)


@pytest.mark.parametrize("name", [
    b"X Evil", b"X-Evil:", b"X-Evil: 1\r\nX-Other", b"", b"X-\x00", b"X-\xc3\xa9",
])
async def test_a_header_name_that_is_not_a_token_is_refused_before_anything_is_sent(
    pool: UpstreamPool, name: bytes,
) -> None:
    async with raw_upstream(keep_answering) as upstream:
        with protocol_error():
            await pool.request("GET", upstream.url("/x"), [(name, b"1")], None, WAIT)
        await assert_nothing_reached(upstream, pool)


@pytest.mark.parametrize("path", ["/a b", "/a\r\nX-Evil: 1", "/a\nb", "/a\x00", "/a\tb", "/a\x7f", "/é"])
async def test_a_request_target_with_a_space_or_control_character_is_refused(
    pool: UpstreamPool, path: str,
) -> None:
    async with raw_upstream(keep_answering) as upstream:
        with protocol_error():
            await pool.request("GET", upstream.url(path), [], None, WAIT)
        await assert_nothing_reached(upstream, pool)


async def test_a_control_character_in_the_upstream_address_is_refused(pool: UpstreamPool) -> None:
    # "127.0.0.1:PORT\r\n" parses as that port (int() strips whitespace): the Host line
    # would end the header block early.
    async with raw_upstream(keep_answering) as upstream:
        with protocol_error():
            await pool.request("GET", f"http://127.0.0.1:{upstream.port}\r\n/x", [], None, WAIT)
        await assert_nothing_reached(upstream, pool)


@pytest.mark.parametrize("method", ["GET /evil HTTP/1.1\r\nX-Evil: 1\r\n\r\nGET", "GE T", "GET\x00"])
async def test_a_method_that_is_not_a_token_is_refused(pool: UpstreamPool, method: str) -> None:
    async with raw_upstream(keep_answering) as upstream:
        with protocol_error():
            await pool.request(method, upstream.url("/x"), [], None, WAIT)
        await assert_nothing_reached(upstream, pool)


BROWSER_FRAMING = [
    (b"Content-Length", b"999"), (b"Transfer-Encoding", b"chunked"), (b"Host", b"evil.example"),
    (b"HOST", b"evil2.example"), (b"transfer-encoding", b"gzip"), (b"X-Kept", b"yes"),
]


async def test_a_bytes_body_is_framed_by_its_own_length_whatever_the_browser_sent(
    pool: UpstreamPool,
) -> None:
    async with raw_upstream(keep_answering) as upstream:
        result = await fetch(pool, upstream.url("/upload?q=1"), method="POST",
                             headers=BROWSER_FRAMING, body=b"hello world")
        assert result.status == 200
        (request,) = upstream.connections[0].requests
    assert request.line == b"POST /upload?q=1 HTTP/1.1"
    assert request.values(b"content-length") == [b"11"]
    assert request.values(b"transfer-encoding") == []
    assert request.values(b"host") == [f"127.0.0.1:{upstream.port}".encode()]
    assert request.values(b"x-kept") == [b"yes"]
    assert request.body == b"hello world"


async def test_a_streamed_body_of_unknown_length_is_sent_chunked(pool: UpstreamPool) -> None:
    big = bytes(range(256)) * 2  # 512 bytes: a multi-digit hexadecimal size
    async with raw_upstream(keep_answering) as upstream:
        # No Content-Length from the browser; its Transfer-Encoding and Host are not reused.
        headers = [h for h in BROWSER_FRAMING if h[0].lower() != b"content-length"]
        result = await fetch(pool, upstream.url("/upload"), method="PUT", headers=headers,
                             body=stream(b"hello", b"", b" ", big))
        assert result.body == b"c0r1"
        (request,) = upstream.connections[0].requests
    assert request.values(b"transfer-encoding") == [b"chunked"]
    assert request.values(b"content-length") == []
    assert request.values(b"host") == [f"127.0.0.1:{upstream.port}".encode()]
    assert request.body == b"hello " + big
    # An empty part from the body is skipped, not sent as the terminating zero-size chunk.
    assert request.raw.endswith(b"5\r\nhello\r\n1\r\n \r\n200\r\n" + big + b"\r\n0\r\n\r\n")


async def test_a_streamed_body_with_a_declared_length_is_sent_with_that_length(
    pool: UpstreamPool,
) -> None:
    async with raw_upstream(keep_answering) as upstream:
        await fetch(pool, upstream.url("/upload"), method="POST",
                    headers=[(b"content-length", b"10"), (b"Host", b"evil.example")],
                    body=stream(b"hello", b"world"))
        (request,) = upstream.connections[0].requests
    assert request.values(b"content-length") == [b"10"]
    assert request.values(b"transfer-encoding") == []
    assert request.values(b"host") == [f"127.0.0.1:{upstream.port}".encode()]
    assert request.raw.endswith(b"\r\n\r\nhelloworld")


@pytest.mark.parametrize(("method", "body", "expected"), [
    ("POST", None, [b"0"]), ("POST", b"", [b"0"]), ("PUT", None, [b"0"]),
    ("GET", None, []), ("GET", b"", []), ("DELETE", None, []), ("HEAD", None, []),
])
async def test_an_empty_body_is_declared_only_where_the_method_expects_one(
    pool: UpstreamPool, method: str, body: bytes | None, expected: list[bytes],
) -> None:
    async with raw_upstream(keep_answering) as upstream:
        await fetch(pool, upstream.url("/"), method=method, body=body)
        (request,) = upstream.connections[0].requests
    assert request.values(b"content-length") == expected
    assert request.values(b"transfer-encoding") == []


@pytest.mark.parametrize("parts", [(b"hello", b"world!"), (b"hello",), ()])
async def test_a_streamed_body_that_breaks_its_declared_length_fails_and_is_not_reused(
    pool: UpstreamPool, parts: tuple[bytes, ...],
) -> None:
    received: list[bytes] = []

    async def first(conn: RawConnection) -> None:
        received.append(await conn.reader.readuntil(b"\r\n\r\n"))
        received.append(await conn.wait_for_hang_up())  # the upstream is not left waiting

    async with raw_upstream(first_connection_then(first)) as upstream:
        with protocol_error():
            await pool.request("POST", upstream.url("/upload"), [(b"content-length", b"10")],
                               stream(*parts), WAIT)
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)
        # Never more than the declared length reaches the upstream.
        assert len(received[1]) <= 10
        assert b"".join(parts).startswith(received[1])
        assert (await fetch(pool, upstream.url("/next"))).body == b"c1r1"
        assert len(upstream.connections) == 2


# -- responses -----------------------------------------------------------------------------


async def test_interim_responses_are_skipped_and_only_the_final_one_is_seen(pool: UpstreamPool) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        await conn.send(response(b"final", b"X-Final: 1"))
        await keep_answering(conn)

    async with raw_upstream(handler) as upstream:
        result = await fetch(pool, upstream.url("/"))
        assert result.status == 200
        assert result.headers == [(b"content-length", b"5"), (b"X-Final", b"1")]
        assert result.body == b"final"
        # The connection is in a clean state afterwards: the next request reuses it.
        assert (await fetch(pool, upstream.url("/"))).body == b"c0r2"
        assert len(upstream.connections) == 1


async def test_interim_responses_in_the_same_packet_as_the_final_one_are_skipped(
    pool: UpstreamPool,
) -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\n" + response(b"ok")
    async with raw_upstream(answer_once_then_wait(reply)) as upstream:
        result = await fetch(pool, upstream.url("/"))
    assert (result.status, result.headers, result.body) == (200, [(b"content-length", b"2")], b"ok")


async def test_bodiless_204_and_304_answers_leave_the_connection_reusable(pool: UpstreamPool) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 204 No Content\r\n\r\n")
        await conn.read_request()
        # A 304 may carry the length of the representation it stands for: still no body.
        await conn.send(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1000\r\n\r\n")
        await keep_answering(conn)

    async with raw_upstream(handler) as upstream:
        first = await fetch(pool, upstream.url("/a"))
        second = await fetch(pool, upstream.url("/b"))
        third = await fetch(pool, upstream.url("/c"))
        assert (first.status, first.body) == (204, b"")
        assert (second.status, second.body) == (304, b"")
        assert third.body == b"c0r3"
        assert len(upstream.connections) == 1


async def test_a_head_answer_with_a_length_completes_without_a_body_and_is_not_reused(
    pool: UpstreamPool,
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n"
    async with raw_upstream(first_connection_then(answer_once_then_wait(head))) as upstream:
        # A short timeout: waiting for the 1000 bytes would fail this rather than hang.
        result = await fetch(pool, upstream.url("/"), method="HEAD", seconds=SHORT * 3)
        assert (result.status, result.body) == (200, b"")
        assert (b"Content-Length", b"1000") in result.headers
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)
        assert (await fetch(pool, upstream.url("/"))).body == b"c1r1"


BROKEN_RESPONSES = {
    "length and chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"5\r\nhello\r\n0\r\n\r\n",
    "chunked and length": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                          b"5\r\nhello\r\n0\r\n\r\n",
    "two lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "length list": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "negative length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello",
    "chunk size not hex": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "negative chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
    "empty chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
    "huge chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "chunk data too long": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
    "bad status line": b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
    "header without colon": b"HTTP/1.1 200 OK\r\nX-Broken\r\nContent-Length: 2\r\n\r\nok",
    "header folding": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n Content-Length: 2\r\nContent-Length: 2\r\n\r\nok",
}


@pytest.mark.parametrize("reply", BROKEN_RESPONSES.values(), ids=BROKEN_RESPONSES.keys())
async def test_a_malformed_or_ambiguous_response_is_an_error_and_the_connection_is_dropped(
    pool: UpstreamPool, reply: bytes,
) -> None:
    async with raw_upstream(first_connection_then(answer_once_then_wait(reply))) as upstream:
        with protocol_error():
            await fetch(pool, upstream.url("/"))
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)
        assert (await fetch(pool, upstream.url("/"))).body == b"c1r1"


async def test_a_response_without_framing_is_read_until_the_upstream_closes(pool: UpstreamPool) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await conn.send(b"part two")
        conn.writer.close()

    async with raw_upstream(first_connection_then(handler)) as upstream:
        result = await fetch(pool, upstream.url("/"))
        assert (result.status, result.body) == (200, b"part one, part two")
        assert (await fetch(pool, upstream.url("/"))).body == b"c1r1"


async def test_a_connection_close_answer_is_not_reused_even_if_the_upstream_keeps_it_open(
    pool: UpstreamPool,
) -> None:
    reply = response(b"bye", b"Connection: close")
    async with raw_upstream(first_connection_then(answer_once_then_wait(reply))) as upstream:
        assert (await fetch(pool, upstream.url("/"))).body == b"bye"
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)
        assert (await fetch(pool, upstream.url("/"))).body == b"c1r1"
        assert len(upstream.connections) == 2


async def test_an_http_1_0_answer_without_keep_alive_is_not_reused(pool: UpstreamPool) -> None:
    reply = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold"
    async with raw_upstream(first_connection_then(answer_once_then_wait(reply))) as upstream:
        assert (await fetch(pool, upstream.url("/"))).body == b"old"
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)
        assert (await fetch(pool, upstream.url("/"))).body == b"c1r1"


async def test_a_second_unsolicited_response_in_the_same_packet_is_never_taken_as_an_answer(
    pool: UpstreamPool,
) -> None:
    reply = response(b"first") + response(b"smuggled")
    async with raw_upstream(first_connection_then(answer_once_then_wait(reply))) as upstream:
        result = await fetch(pool, upstream.url("/one"))
        assert (result.status, result.body) == (200, b"first")
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)
        assert (await fetch(pool, upstream.url("/two"))).body == b"c1r1"
        assert len(upstream.connections) == 2


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x05hello",
])
async def test_switching_protocols_on_a_plain_request_is_an_error(
    pool: UpstreamPool, reply: bytes,
) -> None:
    async with raw_upstream(first_connection_then(answer_once_then_wait(reply))) as upstream:
        with protocol_error():
            await fetch(pool, upstream.url("/"))
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)


async def test_a_chunked_response_is_decoded_and_the_connection_reused(pool: UpstreamPool) -> None:
    reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n")

    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(reply)
        await keep_answering(conn)

    async with raw_upstream(handler) as upstream:
        assert (await fetch(pool, upstream.url("/"))).body == b"hello 0123456789"
        assert (await fetch(pool, upstream.url("/"))).body == b"c0r2"
        assert len(upstream.connections) == 1


async def test_a_connection_lost_mid_body_is_an_error_not_a_short_body(pool: UpstreamPool) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        conn.writer.close()

    async with raw_upstream(handler) as upstream:
        answer = await pool.request("GET", upstream.url("/"), [], None, WAIT)
        try:
            received = bytearray()
            with protocol_error():
                async for chunk in answer.chunks():
                    received += chunk
        finally:
            await answer.aclose()
    assert received == b"hello"


async def test_a_connection_reset_mid_body_without_framing_is_an_error_not_the_end(
    pool: UpstreamPool,
) -> None:
    # Read-until-close framing cannot tell a truncated body from a whole one by a clean
    # close, but a reset is not a clean close: relaying "partial" as complete is a lie.
    got_first_part = asyncio.Event()

    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npartial")
        await got_first_part.wait()
        sock = conn.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.writer.transport.abort()  # an RST, not a FIN

    async with raw_upstream(handler) as upstream:
        answer = await pool.request("GET", upstream.url("/"), [], None, WAIT)
        try:
            chunks = answer.chunks()
            assert await anext(chunks) == b"partial"
            got_first_part.set()
            with protocol_error():
                async for _ in chunks:
                    pass
        finally:
            await answer.aclose()


async def test_trailer_fields_are_not_added_to_the_response_headers(pool: UpstreamPool) -> None:
    # Sent in one packet with the head, as a small chunked answer usually is.
    reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
             b"Server-Timing: db;dur=53\r\nSet-Cookie: from=trailer\r\n\r\n")
    async with raw_upstream(answer_once_then_wait(reply)) as upstream:
        answer = await pool.request("GET", upstream.url("/"), [], None, WAIT)
        try:
            assert answer.headers == [(b"Transfer-Encoding", b"chunked")]
            assert b"".join([chunk async for chunk in answer.chunks()]) == b"hello"
            assert answer.headers == [(b"Transfer-Encoding", b"chunked")]
        finally:
            await answer.aclose()


# -- reuse -----------------------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(pool: UpstreamPool) -> None:
    async with raw_upstream(keep_answering) as upstream:
        bodies = [(await fetch(pool, upstream.url(f"/{n}"))).body for n in range(3)]
        assert bodies == [b"c0r1", b"c0r2", b"c0r3"]
        assert len(upstream.connections) == 1
        assert [r.line for r in upstream.connections[0].requests] == [
            b"GET /0 HTTP/1.1", b"GET /1 HTTP/1.1", b"GET /2 HTTP/1.1",
        ]


async def test_a_connection_the_upstream_closed_while_idle_is_not_used(pool: UpstreamPool) -> None:
    async def first(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(response(b"first"))
        conn.writer.write_eof()
        await conn.wait_for_hang_up()  # the client noticed and closed its side

    async with raw_upstream(first_connection_then(first)) as upstream:
        assert (await fetch(pool, upstream.url("/"))).body == b"first"
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)
        assert (await fetch(pool, upstream.url("/"))).body == b"c1r1"
        assert len(upstream.connections[0].requests) == 1


async def test_an_upstream_that_closes_right_after_answering_costs_only_a_new_connection(
    pool: UpstreamPool,
) -> None:
    # Whether the close is noticed while idle or only once the request went out, the
    # request succeeds, and never on the closed connection.
    async def first(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(response(b"first"))

    async with raw_upstream(first_connection_then(first)) as upstream:
        assert (await fetch(pool, upstream.url("/"))).body == b"first"
        assert (await fetch(pool, upstream.url("/"))).body == b"c1r1"
        assert len(upstream.connections) == 2


@pytest.mark.parametrize(("expiry", "max_idle"), [(0.0, 32), (5.0, 0)])
async def test_a_connection_past_the_idle_limits_is_closed_not_kept(expiry: float, max_idle: int) -> None:
    pool = UpstreamPool(keepalive_expiry=expiry, max_idle=max_idle)
    try:
        async with raw_upstream(keep_answering) as upstream:
            assert (await fetch(pool, upstream.url("/"))).body == b"c0r1"
            assert (await fetch(pool, upstream.url("/"))).body == b"c1r1"
            await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)
    finally:
        await pool.aclose()


async def test_closing_the_pool_closes_its_idle_connections(pool: UpstreamPool) -> None:
    async with raw_upstream(keep_answering) as upstream:
        assert (await fetch(pool, upstream.url("/"))).body == b"c0r1"
        await pool.aclose()
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)


@pytest.mark.parametrize(("method", "body"), [("GET", None), ("PUT", b"payload")])
async def test_an_idempotent_request_on_a_reused_connection_closed_unanswered_is_sent_again_once(
    pool: UpstreamPool, method: str, body: bytes | None,
) -> None:
    async def first(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(response(b"first"))
        await conn.read_request()  # read in full, then closed without a word

    async with raw_upstream(first_connection_then(first)) as upstream:
        assert (await fetch(pool, upstream.url("/"))).body == b"first"
        result = await fetch(pool, upstream.url("/again"), method=method, body=body)
        assert result.body == b"c1r1"
        assert len(upstream.connections) == 2
        lost, replayed = upstream.connections[0].requests[1], upstream.connections[1].requests[0]
        assert replayed.raw == lost.raw
        assert replayed.body == (body or b"")


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_a_non_idempotent_request_on_a_reused_connection_closed_unanswered_is_not_sent_again(
    pool: UpstreamPool, method: str,
) -> None:
    # The upstream may have acted on it before closing: sending it again could do it twice.
    async def first(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(response(b"first"))
        await conn.read_request()

    async with raw_upstream(first_connection_then(first)) as upstream:
        assert (await fetch(pool, upstream.url("/"))).body == b"first"
        with protocol_error():
            await fetch(pool, upstream.url("/again"), method=method, body=b"payload")
        assert len(upstream.connections) == 1


async def test_a_request_on_a_new_connection_closed_unanswered_is_not_sent_again(
    pool: UpstreamPool,
) -> None:
    async def first(conn: RawConnection) -> None:
        await conn.read_request()

    async with raw_upstream(first_connection_then(first)) as upstream:
        with protocol_error():
            await fetch(pool, upstream.url("/"))
        assert len(upstream.connections) == 1


async def test_a_streamed_request_on_a_reused_connection_closed_unanswered_is_not_sent_again(
    pool: UpstreamPool,
) -> None:
    async def first(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(response(b"first"))
        await conn.read_request()

    async with raw_upstream(first_connection_then(first)) as upstream:
        assert (await fetch(pool, upstream.url("/"))).body == b"first"
        with protocol_error():
            await fetch(pool, upstream.url("/upload"), method="POST", body=stream(b"part"))
        assert upstream.connections[0].requests[1].body == b"part"
        # A retry would have succeeded on a second connection: there was none.
        assert len(upstream.connections) == 1


async def test_only_one_retry_when_the_new_connection_also_closes_unanswered(
    pool: UpstreamPool,
) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        if conn.index == 0:
            await conn.send(response(b"first"))
            await conn.read_request()

    async with raw_upstream(handler) as upstream:
        assert (await fetch(pool, upstream.url("/"))).body == b"first"
        with protocol_error():
            await fetch(pool, upstream.url("/"))
        assert len(upstream.connections) == 2


async def test_an_idle_connection_on_which_the_upstream_speaks_is_discarded(pool: UpstreamPool) -> None:
    read = asyncio.Event()

    async def first(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(response(b"first"))
        await read.wait()
        await conn.send(response(b"unsolicited"))
        await conn.wait_for_hang_up()

    async with raw_upstream(first_connection_then(first)) as upstream:
        assert (await fetch(pool, upstream.url("/"))).body == b"first"
        read.set()
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)
        assert (await fetch(pool, upstream.url("/"))).body == b"c1r1"
        assert len(upstream.connections[0].requests) == 1


async def test_an_abandoned_response_is_not_reused(pool: UpstreamPool) -> None:
    reply = response(b"x" * 100_000)
    async with raw_upstream(first_connection_then(answer_once_then_wait(reply))) as upstream:
        answer = await pool.request("GET", upstream.url("/"), [], None, WAIT)
        await answer.aclose()  # without reading the body
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)
        assert (await fetch(pool, upstream.url("/"))).body == b"c1r1"


# -- timeouts ------------------------------------------------------------------------------


async def test_a_refused_connection_is_an_error_not_a_timeout(pool: UpstreamPool) -> None:
    with pytest.raises(UpstreamError) as raised:
        await pool.request("GET", f"http://127.0.0.1:{closed_port()}/", [], None, WAIT)
    assert not isinstance(raised.value, UpstreamTimeout)


async def test_an_upstream_that_never_answers_times_out(pool: UpstreamPool) -> None:
    async def silent(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.wait_for_hang_up()

    async with raw_upstream(silent) as upstream:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await pool.request("GET", upstream.url("/"), [], None, SHORT)
        assert time.monotonic() - started < WAIT
        # The connection given up on is closed, not left to the upstream.
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)


async def test_a_body_that_stalls_times_out_while_being_read(pool: UpstreamPool) -> None:
    async def stall(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        await conn.wait_for_hang_up()

    async with raw_upstream(stall) as upstream:
        answer = await pool.request("GET", upstream.url("/"), [], None, SHORT)
        received = bytearray()
        try:
            with pytest.raises(UpstreamTimeout):
                async for chunk in answer.chunks():
                    received += chunk
        finally:
            await answer.aclose()
        assert received == b"hello"
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)


async def test_a_request_body_the_upstream_does_not_take_times_out_and_is_dropped(
    pool: UpstreamPool,
) -> None:
    gave_up = asyncio.Event()

    async def not_reading(conn: RawConnection) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        await gave_up.wait()  # the body stays in the pipe meanwhile
        await conn.wait_for_hang_up()

    async with raw_upstream(not_reading) as upstream:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await pool.request("POST", upstream.url("/upload"), [], b"x" * (20 * 1024 * 1024), SHORT)
        assert time.monotonic() - started < WAIT
        gave_up.set()
        await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)


async def test_a_full_pool_times_out_and_frees_up_once_a_response_is_closed() -> None:
    pool = UpstreamPool(max_connections=1)
    try:
        async with raw_upstream(keep_answering) as upstream:
            held = await pool.request("GET", upstream.url("/held"), [], None, WAIT)
            try:
                assert b"".join([chunk async for chunk in held.chunks()]) == b"c0r1"
                with pytest.raises(UpstreamTimeout):
                    await pool.request("GET", upstream.url("/waiting"), [], None, SHORT)
            finally:
                await held.aclose()
            assert (await fetch(pool, upstream.url("/after"), seconds=SHORT)).body == b"c0r2"
            # The request that timed out waiting for a connection never reached the upstream.
            assert [r.line for r in upstream.connections[0].requests] == [
                b"GET /held HTTP/1.1", b"GET /after HTTP/1.1",
            ]
            assert len(upstream.connections) == 1
    finally:
        await pool.aclose()


# -- flow control ----------------------------------------------------------------------------


async def test_a_large_response_is_not_buffered_while_the_caller_does_not_read(
    pool: UpstreamPool,
) -> None:
    piece = bytes(range(256)) * 256  # 64 KiB
    count = 320  # 20 MiB
    all_sent = asyncio.Event()

    async def flood(conn: RawConnection) -> None:
        await conn.read_request()
        conn.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(piece) * count))
        for _ in range(count):
            conn.writer.write(piece)
        await conn.writer.drain()
        all_sent.set()
        await conn.wait_for_hang_up()

    async with raw_upstream(flood) as upstream:
        answer = await pool.request("GET", upstream.url("/"), [], None, WAIT)
        try:
            # Nobody reads: the upstream must be held back by TCP, not drained into memory.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(all_sent.wait(), 0.5)
            received = bytearray()
            async for chunk in answer.chunks():
                received += chunk
        finally:
            await answer.aclose()
        assert received == piece * count
        await asyncio.wait_for(all_sent.wait(), WAIT)


# -- cancellation ----------------------------------------------------------------------------


async def test_cancelling_a_waiting_request_closes_its_connection_and_frees_its_slot() -> None:
    pool = UpstreamPool(max_connections=1)
    try:
        async def silent(conn: RawConnection) -> None:
            await conn.read_request()
            await conn.wait_for_hang_up()

        async with raw_upstream(first_connection_then(silent)) as upstream:
            waiting = asyncio.create_task(pool.request("GET", upstream.url("/"), [], None, WAIT))
            await asyncio.wait_for(upstream.accepted.wait(), WAIT)
            await asyncio.wait_for(upstream.connections[0].got_request.wait(), WAIT)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await asyncio.wait_for(upstream.connections[0].hung_up.wait(), WAIT)
            # With the only slot leaked this would time out waiting for the pool.
            assert (await fetch(pool, upstream.url("/"), seconds=SHORT)).body == b"c1r1"
            assert len(upstream.connections) == 2
    finally:
        await pool.aclose()


# -- TLS upstreams ---------------------------------------------------------------------------


def server_tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A TLS context for 127.0.0.1 signed by a throwaway CA, and that CA's file."""
    certs = make_certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert, certs.key)
    return context, certs.ca


async def test_an_https_upstream_signed_by_a_trusted_ca_is_reached_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    context, ca = server_tls(tmp_path)
    # The default context trusts the system store, which operators extend with SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    pool = UpstreamPool()
    try:
        async with raw_upstream(keep_answering, tls=context) as upstream:
            assert (await fetch(pool, upstream.url("/a"))).body == b"c0r1"
            assert (await fetch(pool, upstream.url("/b"))).body == b"c0r2"
            assert len(upstream.connections) == 1
            assert upstream.connections[0].requests[1].raw.startswith(b"GET /b HTTP/1.1\r\n")
    finally:
        await pool.aclose()


async def test_an_https_upstream_with_an_untrusted_certificate_is_refused_not_spoken_to(
    tmp_path: Path,
) -> None:
    context, _ = server_tls(tmp_path)
    pool = UpstreamPool()
    try:
        async with raw_upstream(keep_answering, tls=context) as upstream:
            with protocol_error():
                await fetch(pool, upstream.url("/secret"), headers=[(b"authorization", b"Bearer t")])
            assert all(not conn.requests for conn in upstream.connections)
    finally:
        await pool.aclose()
