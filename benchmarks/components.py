"""CPU cost of each piece of a proxied request, measured in-process (CPU time, not wall time).

Sampling profilers count a thread that waits for a CPU as busy, which on a loaded
machine inflates whatever line a process was preempted on (usually a socket write
that woke the peer). These micro-measurements use ``time.process_time()`` around
many repetitions of one operation against the same nginx and Redis, alone and with
32 concurrent callers, so they say what each layer costs and how it scales.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from benchmarks.servers import SESSION_SECRET, USER_AGENT
from bff.proxy.headers import outbound_headers
from bff.proxy.transport import UpstreamPool
from bff.session.connect import redis_from_url
from bff.session.cookies import CookieSigner
from bff.session.crypto import TokenCipher
from bff.session.fast_read import fast_reader_for
from bff.session.redis import RedisSessionStore
from bff.session.service import ClientInfo, SessionService
from bff.session.store import NewSession

Op = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Cost:
    component: str
    sequential_us: float
    concurrent_us: float | None


async def _cpu_per_op(op: Op, repeat: int, concurrency: int) -> float:
    for _ in range(50):
        await op()
    per_worker = max(1, repeat // concurrency)

    async def worker() -> None:
        for _ in range(per_worker):
            await op()

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) * 1e6 / (per_worker * concurrency)


def _browser_headers(cookie: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"host", b"127.0.0.1:8080"), (b"user-agent", USER_AGENT.encode()),
        (b"accept", b"*/*"), (b"x-csrf", b"1"), (b"cookie", cookie.encode()),
    ]


async def measure(upstream: str, redis_url: str, repeat: int = 2000) -> list[Cost]:
    costs: list[Cost] = []

    async def both(name: str, op: Op, concurrent: bool = True) -> None:
        seq = await _cpu_per_op(op, repeat, 1)
        con = await _cpu_per_op(op, repeat, 32) if concurrent else None
        costs.append(Cost(name, seq, con))

    host_port = upstream.removeprefix("http://")
    host, port = host_port.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    raw = f"GET /json HTTP/1.1\r\nHost: {host_port}\r\n\r\n".encode()
    lock = asyncio.Lock()

    async def raw_round_trip() -> None:
        async with lock:  # one connection: the floor, not a concurrency test
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)

    await both("upstream round trip, raw asyncio stream (the floor)", raw_round_trip, False)
    writer.close()

    # Both rows send the same request and read the body (de-chunked, still encoded) to the end.
    url = f"{upstream}/json"
    request_headers = [(b"x-request-id", b"1")]
    pool = UpstreamPool()

    async def via_pool() -> None:
        response = await pool.request("GET", url, request_headers, None, 30.0)
        async for _ in response.chunks():
            pass
        await response.aclose()

    await both("upstream request, bff's UpstreamPool (bff.proxy.transport)", via_pool)
    await pool.aclose()

    # What bff used before bff.proxy.transport, with the pool limits it had: for comparison.
    transport = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))

    async def via_httpx() -> None:
        request = httpx.Request("GET", url, headers=request_headers,
                                extensions={"timeout": httpx.Timeout(30).as_dict()})
        response = await transport.handle_async_request(request)
        async for _ in response.aiter_raw():
            pass
        await response.aclose()

    await both("upstream request, httpx.AsyncHTTPTransport (what bff used before; comparison)",
               via_httpx)
    await transport.aclose()

    redis = redis_from_url(redis_url)
    multiplexed = fast_reader_for(redis)
    store = RedisSessionStore(redis, idle_timeout=1800, absolute_timeout=28800,
                              fast_reader=multiplexed)
    cipher = TokenCipher([SESSION_SECRET])
    service = SessionService(store, cipher, CookieSigner([SESSION_SECRET], salt="bff.session"),
                             idle_timeout=1800, binding=("user-agent",))
    cookie, session = await service.create(NewSession(
        sub="components", claims={"sub": "components", "email": "c@example.test", "name": "C"},
        provider_sid="sid-1", ip="127.0.0.1", user_agent=USER_AGENT, access_token="a" * 43,
        access_expires_at=time.time() + 3600, refresh_token="r" * 43, id_token="i" * 800,
    ))
    who = ClientInfo(ip="127.0.0.1", user_agent=USER_AGENT)
    key = session.key

    async def hgetall() -> None:
        await redis.hgetall(f"bff:{{{key}}}:s")

    async def hgetall_multiplexed() -> None:
        assert multiplexed is not None
        await multiplexed.hgetall(f"bff:{{{key}}}:s")

    async def load() -> None:
        await service.load(cookie, who)

    async def decrypt() -> None:
        service.decrypt(session, "at")

    browser = _browser_headers(f"bff={cookie}")

    async def headers() -> None:
        outbound_headers(browser, client_addr="127.0.0.1", scheme="http", host="127.0.0.1:8080",
                         trusted=False, request_id="0123456789abcdef", bearer="a" * 43,
                         user_headers=None, strip=("x-csrf", "cookie"))

    if multiplexed is not None:
        await both("Redis HGETALL, bff's MultiplexedReader (bff.session.fast_read)",
                   hgetall_multiplexed)
    await both("Redis HGETALL through redis-py (what bff used before; comparison)", hgetall)
    await both("SessionService.load: cookie check + HGETALL + decode + checks", load)
    await both("AES-GCM decrypt of the access token", decrypt, False)
    await both("outbound_headers() for a browser request", headers, False)
    if multiplexed is not None:
        await multiplexed.aclose()
    await redis.aclose()
    return costs


def run(upstream: str, redis_url: str) -> list[Cost]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(measure(upstream, redis_url))
    result: list[Cost] = uvloop.run(measure(upstream, redis_url))
    return result
