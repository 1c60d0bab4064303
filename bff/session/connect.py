"""Redis clients from ``BFF_REDIS_URL``: standalone, TLS, unix socket, Sentinel or Cluster."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from bff.session.redis import AnyRedis

# Short timeouts: a dead store must become a quick 503, not a hung request.
_CLIENT_OPTIONS: dict[str, Any] = {
    "socket_timeout": 3.0,
    "socket_connect_timeout": 2.0,
    "health_check_interval": 15,
}


class _ClusterClient(RedisCluster):
    """RedisCluster that (re)discovers the cluster's layout before any command goes out.

    redis-py's client, when many commands arrive before its first discovery (a
    fresh gateway under traffic, or the first requests after a node came back),
    can hand one connection to two commands and fail them with AttributeError.
    Holding every command until the layout is known avoids that.
    """

    _bff_init_lock: asyncio.Lock | None = None

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:
            if self._bff_init_lock is None:
                self._bff_init_lock = asyncio.Lock()
            async with self._bff_init_lock:
                await self.initialize()
        return await super().execute_command(*args, **kwargs)


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts = []
    for item in netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item, "", "")
        hosts.append((host.strip("[]") or item, int(port) if port else default_port))
    return hosts


def _credentials(netloc: str) -> tuple[str | None, str | None]:
    if "@" not in netloc:
        return None, None
    userinfo = netloc.rsplit("@", 1)[0]
    user, sep, password = userinfo.partition(":")
    if not sep:
        return None, unquote(user) or None
    return unquote(user) or None, unquote(password) or None


def redis_from_url(url: str) -> AnyRedis:
    """A client for any supported URL form; raises ValueError on a malformed one."""
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss", "unix"):
        return Redis.from_url(url, **_CLIENT_OPTIONS)
    username, password = _credentials(parts.netloc)
    query = parse_qs(parts.query)
    if parts.scheme == "redis+cluster":
        nodes = [ClusterNode(host, port) for host, port in _hosts(parts.netloc, 6379)]
        return _ClusterClient(
            startup_nodes=nodes, username=username, password=password,
            require_full_coverage=True, **_CLIENT_OPTIONS,
        )
    if parts.scheme == "redis+sentinel":
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("redis+sentinel URL needs the service name as its path")
        service, db = path[0], int(path[1]) if len(path) > 1 else 0
        sentinel_kwargs: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        if "sentinel_password" in query:
            sentinel_kwargs["password"] = query["sentinel_password"][0]
        sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8.2
            _hosts(parts.netloc, 26379), sentinel_kwargs=sentinel_kwargs,
            username=username, password=password, db=db, **_CLIENT_OPTIONS,
        )
        client: Redis = sentinel.master_for(service)
        return client
    raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
