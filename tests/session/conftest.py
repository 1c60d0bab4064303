"""Fixtures for the session-store tests: private redis-servers and readers over them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelConnectionPool

from bff.session.connect import _CLIENT_OPTIONS, redis_from_url
from bff.session.fast_read import MultiplexedReader, fast_reader_for
from bff.session.redis import RedisSessionStore
from tests.support.redis_server import RedisServer

StartRedis = Callable[..., RedisServer]


@pytest.fixture
def start_redis() -> Iterator[StartRedis]:
    """Start private redis-servers (extra command-line options allowed); all removed afterwards."""
    started: list[RedisServer] = []

    def start(*extra: str, configure: Callable[[RedisServer], list[str]] | None = None) -> RedisServer:
        server = RedisServer(extra=list(extra))
        started.append(server)
        if configure is not None:  # options that need the server's own directory
            server.extra += configure(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.cleanup()


@pytest.fixture
def redis_server(start_redis: StartRedis) -> RedisServer:
    return start_redis()


@dataclass
class Reading:
    """A redis-py client (the gateway's), its fast reader and a store using both."""

    client: Redis
    reader: MultiplexedReader
    store: RedisSessionStore


Connect = Callable[..., Reading]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """``connect(url, **client_options)``: what the gateway builds for ``url``, closed afterwards.

    Without options the client is the gateway's own (``redis_from_url``);
    options are added to its defaults (e.g. a shorter ``socket_timeout``).
    """
    opened: list[Reading] = []

    def make(url: str, **options: Any) -> Reading:
        client = (Redis.from_url(url, **{**_CLIENT_OPTIONS, **options}) if options
                  else redis_from_url(url))
        assert isinstance(client, Redis), "Redis Cluster keeps reading through redis-py"
        reader = fast_reader_for(client)
        assert reader is not None, f"no fast reader for {url}"
        store = RedisSessionStore(client, idle_timeout=1800, absolute_timeout=28800,
                                  fast_reader=reader)
        opened.append(Reading(client, reader, store))
        return opened[-1]

    try:
        yield make
    finally:
        for each in opened:
            await each.reader.aclose()
            await each.client.aclose()
            pool = each.client.connection_pool
            if isinstance(pool, SentinelConnectionPool):  # the sentinels' own clients too
                for sentinel in pool.sentinel_manager.sentinels:
                    await sentinel.aclose()
