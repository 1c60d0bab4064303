"""The hot-path session read: ``HGETALL`` pipelined on one multiplexed RESP connection.

Every proxied API request reads its session with exactly one ``HGETALL``.
Through redis-py that costs about 40 µs of CPU per call under concurrency
(pool checkout, retry and instrumentation machinery, a stream reader per
connection); written to one asyncio connection and parsed with hiredis, the
same read costs a few µs. Only this read goes this way: every other command
(writes, scripts, pipelines) stays on the redis-py client, which remains the
source of truth for how to connect.

How it behaves:

* One connection per reader, opened on first use and again after any failure.
  Concurrent callers share it: commands are written in call order (those of
  one event-loop iteration in one write) and replies are matched first in,
  first out. A caller cancelled while waiting keeps its slot in the queue; its
  reply is read and dropped, so later callers still get their own replies.
* The connection is set up as redis-py sets up its own, from the client's
  settings (host/port or unix socket, TLS context, AUTH with or without a
  username, CLIENT SETNAME, SELECT), the handshake pipelined ahead of the first
  command. It speaks RESP2 whatever the client's ``protocol``: the HGETALL
  result (field to value, as bytes) is the same either way. With Sentinel the
  primary is asked for (``get_master_address``) on every connect, and the
  connection is dropped after a connection failure or a READONLY / LOADING /
  MASTERDOWN reply, so the next call follows a failover as redis-py does.
* Failures are redis-py's exceptions: ``ConnectionError`` when connecting fails
  or the connection drops, ``TimeoutError`` when connecting takes longer than
  ``socket_connect_timeout`` or a reply longer than ``socket_timeout``, and the
  same ``ResponseError`` classes for error replies. The store's ``guarded()``
  turns all of them into StoreUnavailable, as for any other Redis command.
  On a reply timeout the connection is dropped and every waiting caller fails
  (replies can no longer be matched); the next call reconnects. One timer per
  connection watches the oldest unanswered command.
* A client whose settings this reader does not reproduce (Redis Cluster, a
  credential provider, retries, decoded responses, maintenance notifications
  asked for, a custom connection class, any option not known here) gets no
  reader: ``fast_reader_for`` returns None and the store keeps reading through
  redis-py.

A reader belongs to the event loop it was first used on (like redis-py's
asyncio connections); the app builds one per process in its lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis
from redis._parsers import BaseParser
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    BlockingConnectionPool,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.sentinel import (
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, MasterDownError, ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import format_error_message

from bff.singleflight import SingleFlight

__all__ = ["Endpoint", "MultiplexedReader", "endpoint_for", "fast_reader_for"]

log = logging.getLogger("bff.store")

_SERVER_CLOSED = "Connection closed by server."
_NOT_ENOUGH_DATA = object()

# Error replies after which the connection is not reused: the server is not (or
# no longer) a usable primary, or the session on it is not what was set up.
_BREAKING_REPLIES = (RedisConnectionError, ReadOnlyError, MasterDownError)

# Connection keyword arguments whose effect this reader reproduces, or which do
# not change how a connection talks to the server. Anything else: no reader.
_KNOWN_OPTIONS = frozenset({
    "host", "port", "path", "db", "username", "password", "client_name",
    "socket_timeout", "socket_connect_timeout", "socket_keepalive", "socket_keepalive_options",
    "socket_type", "health_check_interval", "encoding", "encoding_errors", "decode_responses",
    "retry", "retry_on_timeout", "retry_on_error", "protocol", "socket_read_size",
    "lib_name", "lib_version", "driver_info", "event_dispatcher", "himport_registry",
    "maint_notifications_config", "maint_notifications_pool_handler",
    "orig_host_address", "orig_socket_timeout", "orig_socket_connect_timeout",
    "connection_pool",  # Sentinel: the pool, for get_master_address
    "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_include_verify_flags",
    "ssl_exclude_verify_flags", "ssl_ca_certs", "ssl_ca_data", "ssl_ca_path",
    "ssl_check_hostname", "ssl_min_version", "ssl_ciphers", "ssl_password",
})
_CONNECTION_CLASSES: tuple[type[Any], ...] = (
    Connection, SSLConnection, UnixDomainSocketConnection,
    SentinelManagedConnection, SentinelManagedSSLConnection,
)
_POOL_CLASSES: tuple[type[ConnectionPool], ...] = (
    ConnectionPool, BlockingConnectionPool, SentinelConnectionPool,
)


def _command(*args: bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(parts)


def _encode(value: str | int) -> bytes:
    return str(value).encode()


@dataclass(frozen=True)
class Endpoint:
    """How to reach and set up a connection: what redis-py would use for a new one.

    ``resolve`` (Sentinel) is asked for the primary's address before every
    connect; otherwise ``host``/``port`` or the unix socket ``path`` is used.
    """

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    ssl_context: ssl.SSLContext | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    client_name: str | None = None
    socket_timeout: float | None = 3.0
    socket_connect_timeout: float | None = 2.0
    socket_keepalive: bool = True
    socket_keepalive_options: Mapping[int, int | bytes] = field(default_factory=dict)
    resolve: Callable[[], Awaitable[tuple[str, int]]] | None = None

    def handshake(self) -> list[bytes]:
        """The commands that set up a fresh connection, each answered with +OK."""
        commands: list[bytes] = []
        if self.username or self.password:
            credentials = [_encode(self.username)] if self.username else []
            commands.append(_command(b"AUTH", *credentials, _encode(self.password or "")))
        if self.client_name:
            commands.append(_command(b"CLIENT", b"SETNAME", _encode(self.client_name)))
        if self.db:
            commands.append(_command(b"SELECT", _encode(self.db)))
        return commands


def _copier(error: RedisError) -> Callable[[], RedisError]:
    """Fresh copies of one error reply, one for each caller it fails."""
    return lambda: copy.copy(error)


class _SetupReply:
    """The waiter for one handshake reply: anything but +OK ends the connection."""

    __slots__ = ("connection", "what")

    def __init__(self, connection: _Connection, what: str) -> None:
        self.connection, self.what = connection, what

    def done(self) -> bool:
        return self.connection.closed

    def set_result(self, reply: Any) -> None:
        if reply != b"OK":
            message = f"unexpected reply to {self.what}: {reply!r}"
            self.connection.close(lambda: RedisConnectionError(message))

    def set_exception(self, error: RedisError) -> None:
        self.connection.close(_copier(error))


class _Connection(asyncio.Protocol):
    """One RESP connection: commands written in order, replies handed out in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, where: str, timeout: float | None) -> None:
        self.loop = loop
        self.where = where
        self.timeout = timeout
        self.closed = False
        self.lost: asyncio.Future[None] = loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._error: Callable[[], RedisError] = lambda: RedisConnectionError(_SERVER_CLOSED)
        self._parser = hiredis.Reader(
            protocolError=InvalidResponse, replyError=BaseParser.parse_error,
            notEnoughData=_NOT_ENOUGH_DATA,
        )
        self._waiters: deque[asyncio.Future[Any] | _SetupReply] = deque()
        self._sent_at: deque[float] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []  # commands of this loop iteration, written in one go

    # --- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        try:
            parser.feed(data)
            while not self.closed:
                reply = parser.gets()
                if reply is _NOT_ENOUGH_DATA:
                    return
                if not self._waiters:
                    raise InvalidResponse(f"unexpected reply from {self.where}: {reply!r}")
                waiter = self._waiters.popleft()
                self._sent_at.popleft()
                if isinstance(reply, RedisError):  # an error reply (BaseParser.parse_error)
                    if not waiter.done():
                        waiter.set_exception(reply)
                    if isinstance(reply, _BREAKING_REPLIES):
                        self.close(_copier(reply))
                elif not waiter.done():  # done: its caller was cancelled, the reply is dropped
                    waiter.set_result(reply)
        except Exception as exc:  # a protocol error: nothing after it can be trusted
            message = f"Protocol error from {self.where}: {exc}"
            self.close(lambda: InvalidResponse(message))

    def eof_received(self) -> bool:
        self.close(lambda: RedisConnectionError(_SERVER_CLOSED))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self.close(lambda: RedisConnectionError(_SERVER_CLOSED))
        else:
            message = f"Error while reading from {self.where} : {exc.args}"
            self.close(lambda: RedisConnectionError(message))
        if not self.lost.done():
            self.lost.set_result(None)

    # --- use ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._waiters)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply (or the connection's failure).

        On an idle connection the command is written at once (nothing to wait for,
        and the caller may have work to do while Redis answers); otherwise the
        commands of concurrent callers are joined into one write at the end of the
        event-loop iteration: one system call for many reads.
        """
        if self.closed or self._transport is None:
            raise self._error()
        future = self.loop.create_future()
        if not self._waiters:
            self._transport.write(command)
        else:
            if not self._out:
                self.loop.call_soon(self._flush)
            self._out.append(command)
        self._waiters.append(future)
        self._sent_at.append(self.loop.time())
        self._watch()
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        if not self.closed and self._transport is not None:
            self._transport.write(b"".join(out))

    def set_up(self, commands: list[bytes]) -> None:
        """Pipeline the handshake; callers' commands may follow at once."""
        assert self._transport is not None
        for command in commands:
            self._transport.write(command)
            self._waiters.append(_SetupReply(self, command.split(b"\r\n")[2].decode()))
            self._sent_at.append(self.loop.time())
        if commands:
            self._watch()

    def _watch(self) -> None:
        """Arm the timer for the oldest unanswered command, unless it is already armed."""
        if self._timer is None and self.timeout is not None:
            self._timer = self.loop.call_at(self._sent_at[0] + self.timeout, self._check_timeout)

    def _check_timeout(self) -> None:
        """One timer for the oldest unanswered command, moved forward as replies come."""
        self._timer = None
        if self.closed or not self._sent_at or self.timeout is None:
            return
        deadline = self._sent_at[0] + self.timeout
        if self.loop.time() >= deadline - 0.001:
            message = f"Timeout reading from {self.where}"
            self.close(lambda: RedisTimeoutError(message))
        else:
            self._timer = self.loop.call_at(deadline, self._check_timeout)

    def close(self, error: Callable[[], RedisError]) -> None:
        """Drop the connection; every waiting caller fails with a fresh ``error()``."""
        if self.closed:
            return
        self.closed = True
        self._error = error
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.abort()
        waiters = self._waiters
        self._waiters = deque()
        self._sent_at.clear()
        self._out.clear()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error())


class MultiplexedReader:
    """``HGETALL`` for the session read, all callers pipelined on one connection."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._connection: _Connection | None = None
        self._connecting: SingleFlight[_Connection] = SingleFlight()

    @property
    def pending(self) -> int:
        """Commands written and not yet answered (0 without a connection)."""
        connection = self._connection
        return connection.pending if connection is not None and not connection.closed else 0

    @property
    def connected_to(self) -> str | None:
        """``host:port`` (or the socket path) of the open connection, if any."""
        connection = self._connection
        return connection.where if connection is not None and not connection.closed else None

    async def hgetall(self, name: str) -> dict[bytes, bytes]:
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        key = name.encode()
        reply = await connection.send(b"*2\r\n$7\r\nHGETALL\r\n$%d\r\n%b\r\n" % (len(key), key))
        if not isinstance(reply, list) or len(reply) % 2:
            raise InvalidResponse(f"unexpected HGETALL reply from {connection.where}: {reply!r}")
        return dict(zip(reply[0::2], reply[1::2], strict=True))

    async def _connect(self) -> _Connection:
        """The one connection attempt in progress, shared by every caller waiting for it.

        Shielded: a caller cancelled while waiting does not abort the attempt
        for the others. A failed attempt is not remembered; the next call tries again.
        """
        return await self._connecting.run(self._open)

    async def _open(self) -> _Connection:
        endpoint = self.endpoint
        loop = asyncio.get_running_loop()
        host, port = await endpoint.resolve() if endpoint.resolve else (endpoint.host, endpoint.port)
        where = endpoint.path or f"{host}:{port}"
        connection = _Connection(loop, where, endpoint.socket_timeout)
        try:
            async with asyncio.timeout(endpoint.socket_connect_timeout):
                if endpoint.path:
                    transport, _ = await loop.create_unix_connection(lambda: connection, endpoint.path)
                else:
                    transport, _ = await loop.create_connection(
                        lambda: connection, host, port, ssl=endpoint.ssl_context
                    )
        except TimeoutError as exc:
            raise RedisTimeoutError("Timeout connecting to server") from exc
        except OSError as exc:
            raise RedisConnectionError(format_error_message(where, exc)) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if endpoint.socket_keepalive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                    for option, value in endpoint.socket_keepalive_options.items():
                        sock.setsockopt(socket.IPPROTO_TCP, option, value)
            except (OSError, TypeError) as exc:
                transport.abort()
                raise RedisConnectionError(format_error_message(where, exc)) from exc
        connection.set_up(endpoint.handshake())
        # Kept here, not by the callers: they may all have given up by now.
        self._connection = connection
        return connection

    async def aclose(self) -> None:
        """Close the connection (waiting callers fail); a later call would open a new one."""
        await self._connecting.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close(lambda: RedisConnectionError("Connection closed by client."))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(connection.lost)


def endpoint_for(client: Redis | RedisCluster) -> Endpoint | None:
    """The settings of ``client``'s connections, or None when this reader cannot match them."""
    if not isinstance(client, Redis):
        return None  # Redis Cluster: slots, MOVED/ASK; redis-py handles it
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    if type(pool) not in _POOL_CLASSES or pool.connection_class not in _CONNECTION_CLASSES:
        return None
    if set(kwargs) - _KNOWN_OPTIONS:
        return None
    # A connection object, never connected: its attributes are redis-py's own
    # reading of the options, defaults included (and its TLS context).
    try:
        probe: Any = pool.connection_class(**kwargs)
        context = probe.ssl_context.get() if isinstance(probe, SSLConnection) else None
    except Exception:  # options redis-py itself rejects: let it report them, on use
        log.warning("session reads stay on redis-py: its connection options are not usable here",
                    exc_info=True)
        return None
    if (
        probe.credential_provider is not None
        or probe.redis_connect_func is not None
        or probe.encoder.decode_responses
        or probe.retry.get_retries() != 0
        or getattr(probe, "socket_type", 0) != 0
        # Asked for explicitly (not "auto"): follow the server's endpoint moves,
        # which only redis-py's connections do.
        or getattr(probe.maint_notifications_config, "enabled", False) is True
    ):
        return None
    resolve: Callable[[], Awaitable[tuple[str, int]]] | None = None
    if isinstance(pool, SentinelConnectionPool):
        if not pool.is_master:
            return None
        resolve = pool.get_master_address
    return Endpoint(
        host=str(getattr(probe, "host", "localhost")),
        port=int(getattr(probe, "port", 6379)),
        path=getattr(probe, "path", None) or None,
        ssl_context=context,
        db=int(probe.db or 0),
        username=probe.username,
        password=probe.password,
        client_name=probe.client_name,
        socket_timeout=probe.socket_timeout,
        socket_connect_timeout=probe.socket_connect_timeout,
        socket_keepalive=bool(getattr(probe, "socket_keepalive", False)),
        socket_keepalive_options=dict(getattr(probe, "socket_keepalive_options", None) or {}),
        resolve=resolve,
    )


def fast_reader_for(client: Redis | RedisCluster) -> MultiplexedReader | None:
    """A reader connecting as ``client`` does, or None to keep reading through redis-py."""
    endpoint = endpoint_for(client)
    return MultiplexedReader(endpoint) if endpoint is not None else None
