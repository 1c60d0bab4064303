"""The hot-path session read (bff.session.fast_read) against real redis-servers.

One multiplexed connection serves every concurrent session read; it must give
each caller its own reply, connect as the redis-py client would, fail exactly
as redis-py fails (so the store answers 503 and retries later), and heal
without a restart.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.credentials import UsernamePasswordCredentialProvider
from redis.exceptions import AuthenticationError, MasterDownError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bff.config import load_settings
from bff.errors import StoreUnavailable
from bff.resources import open_resources
from bff.session.connect import redis_from_url
from bff.session.fast_read import fast_reader_for
from bff.session.redis import RedisSessionStore, session_redis_key
from bff.session.store import NewSession
from tests.support.certificates import make_certificates
from tests.support.redis_server import RedisServer
from tests.support.redis_topologies import SentinelSet, free_port
from tests.support.stack import SECRET

from .conftest import Connect, StartRedis

BINARY = bytes(range(256)) + b"\r\n$-1\r\n*2\r\n"  # every byte, and RESP framing inside a value


def admin(server: RedisServer, **options: Any) -> Any:
    """A plain synchronous client for setting up and looking inside."""
    return redis.Redis(host="127.0.0.1", port=server.port, **options)


def now() -> float:
    """The time in whole seconds: what the store writes (to the millisecond) reads back equal."""
    return float(int(time.time()))


def new_session(sub: str = "alice") -> NewSession:
    return NewSession(
        sub=sub, claims={"name": sub.title()}, provider_sid=None, ip="203.0.113.9",
        user_agent="tests", access_token="at", access_expires_at=now() + 300,
        refresh_token=None, id_token=None,
    )


def connections_received(client: Any) -> int:
    return int(client.info("stats")["total_connections_received"])


def hgetall_clients(client: Any) -> list[dict[str, Any]]:
    """The server's connections whose last command was HGETALL: the reader's."""
    return [c for c in client.client_list() if c["cmd"] == "hgetall"]


# --- what it reads ---------------------------------------------------------------------------

async def test_values_round_trip_binary_and_empty_included_and_a_missing_key_is_empty(
    redis_server: RedisServer, connect: Connect
) -> None:
    values = {b"plain": b"value", b"binary": BINARY, b"empty": b"", b"big": b"x" * 300_000,
              "ключ".encode(): "значение".encode()}
    admin(redis_server).hset("bff:{k}:s", mapping=values)
    admin(redis_server).hset("bff:{ü}:s", mapping={b"a": b"1"})
    reader = connect(redis_server.url).reader

    assert await reader.hgetall("bff:{k}:s") == values
    assert await reader.hgetall("bff:{ü}:s") == {b"a": b"1"}  # the key is sent as UTF-8
    assert await reader.hgetall("bff:{missing}:s") == {}


async def test_the_store_reads_through_the_reader_with_the_same_result_as_redis_py(
    redis_server: RedisServer, connect: Connect
) -> None:
    reading = connect(redis_server.url)
    created = await reading.store.create("k1", new_session(), {"at": BINARY}, now=now())
    plain = RedisSessionStore(reading.client, idle_timeout=1800, absolute_timeout=28800)
    assert reading.reader.connected_to is None

    assert await reading.store.get("k1") == await plain.get("k1") == created
    assert reading.reader.connected_to == f"127.0.0.1:{redis_server.port}"  # the reader was used
    assert await reading.store.get("nobody") is None


async def test_a_wrong_type_key_is_store_unavailable_as_with_redis_py(
    redis_server: RedisServer, connect: Connect
) -> None:
    admin(redis_server).set(session_redis_key("str"), "not a hash")
    admin(redis_server).hset(session_redis_key("ok"), mapping={"v": "x"})
    reading = connect(redis_server.url)
    with pytest.raises(ResponseError) as redis_py:
        await reading.client.hgetall(session_redis_key("str"))

    with pytest.raises(StoreUnavailable) as failed:
        await reading.store.get("str")
    assert type(failed.value.__cause__) is type(redis_py.value)
    assert str(failed.value.__cause__) == str(redis_py.value)
    assert await reading.reader.hgetall(session_redis_key("ok")) == {b"v": b"x"}  # connection kept


async def test_a_replica_cut_off_from_its_primary_is_unavailable_and_the_connection_dropped(
    start_redis: StartRedis, connect: Connect
) -> None:
    """MASTERDOWN, like READONLY and LOADING, means: ask again elsewhere, on a new connection."""
    server = start_redis()
    admin(server).config_set("replica-serve-stale-data", "no")
    admin(server).replicaof("127.0.0.1", free_port())  # nobody there
    reading = connect(server.url)
    with pytest.raises(ResponseError) as redis_py:
        await reading.client.hgetall(session_redis_key("k"))

    with pytest.raises(StoreUnavailable) as failed:
        await reading.store.get("k")
    assert type(failed.value.__cause__) is type(redis_py.value) is MasterDownError
    assert reading.reader.connected_to is None


# --- one connection, many callers ------------------------------------------------------------

async def test_500_concurrent_reads_of_50_keys_each_get_their_own_values_over_one_connection(
    redis_server: RedisServer, connect: Connect
) -> None:
    inside = admin(redis_server)
    expected = {
        f"bff:{{key{n}}}:s": {f"field{i}".encode(): f"{n}:{i}:".encode() * (n + 1) for i in range(n % 7 + 1)}
        for n in range(50)
    }
    for name, values in expected.items():
        inside.hset(name, mapping=values)
    names = list(expected)
    reader = connect(redis_server.url).reader
    before = connections_received(inside)

    results = await asyncio.gather(*(reader.hgetall(names[i % 50]) for i in range(500)))

    assert [r for i, r in enumerate(results) if r != expected[names[i % 50]]] == []
    assert connections_received(inside) - before == 1
    assert len(hgetall_clients(inside)) == 1
    assert reader.pending == 0


async def test_a_caller_cancelled_while_waiting_does_not_shift_the_replies_of_later_callers(
    redis_server: RedisServer, connect: Connect
) -> None:
    inside = admin(redis_server)
    for name in "abc":
        inside.hset(f"bff:{{{name}}}:s", mapping={"who": name})
    reader = connect(redis_server.url).reader
    assert await reader.hgetall("bff:{a}:s") == {b"who": b"a"}  # connected

    inside.execute_command("CLIENT", "PAUSE", 500, "ALL")  # replies wait until the pause ends
    first = asyncio.ensure_future(reader.hgetall("bff:{a}:s"))
    second = asyncio.ensure_future(reader.hgetall("bff:{b}:s"))
    third = asyncio.ensure_future(reader.hgetall("bff:{c}:s"))
    await asyncio.sleep(0)  # each runs up to its wait: the commands are written on a live connection
    assert reader.pending == 3  # and none is answered
    first.cancel()

    assert await second == {b"who": b"b"}
    assert await third == {b"who": b"c"}
    assert first.cancelled()
    assert await reader.hgetall("bff:{a}:s") == {b"who": b"a"}
    assert reader.pending == 0


# --- connecting as the redis-py client does -------------------------------------------------

async def test_a_password_an_acl_user_a_client_name_and_a_database_other_than_0(
    redis_server: RedisServer, connect: Connect
) -> None:
    admin(redis_server, db=0).hset("bff:{k}:s", mapping={"db": "0"})
    admin(redis_server, db=3).hset("bff:{k}:s", mapping={"db": "3"})
    inside = admin(redis_server)
    inside.execute_command("ACL", "SETUSER", "gateway", "on", ">gw-pass", "~bff:*", "+hgetall",
                           "+select", "+client|setname")
    inside.config_set("requirepass", "default-pass")
    base = f"127.0.0.1:{redis_server.port}"

    by_password = connect(f"redis://:default-pass@{base}/3").reader
    by_user = connect(f"redis://gateway:gw-pass@{base}/3?client_name=bff-sessions").reader

    assert await by_password.hgetall("bff:{k}:s") == {b"db": b"3"}
    assert await by_user.hgetall("bff:{k}:s") == {b"db": b"3"}
    [mine] = [c for c in hgetall_clients(inside) if c["user"] == "gateway"]
    assert mine["name"] == "bff-sessions" and mine["db"] == "3"


@pytest.mark.parametrize("credentials", ["", ":wrong@", "gateway:wrong@", "nobody:default-pass@"],
                         ids=["none", "wrong password", "wrong user password", "unknown user"])
async def test_refused_credentials_are_store_unavailable_with_redis_py_s_error(
    redis_server: RedisServer, connect: Connect, credentials: str
) -> None:
    inside = admin(redis_server)
    inside.execute_command("ACL", "SETUSER", "gateway", "on", ">gw-pass", "~*", "+@all")
    inside.config_set("requirepass", "default-pass")
    reading = connect(f"redis://{credentials}127.0.0.1:{redis_server.port}/0")
    with pytest.raises(RedisConnectionError) as redis_py:
        await reading.client.hgetall("bff:{k}:s")

    with pytest.raises(StoreUnavailable) as failed:
        await reading.store.get("k")
    assert isinstance(failed.value.__cause__, AuthenticationError)
    assert type(failed.value.__cause__) is type(redis_py.value)
    assert reading.reader.connected_to is None  # not kept: the next call tries again


async def test_a_unix_socket_url(start_redis: StartRedis, connect: Connect) -> None:
    server = start_redis(configure=lambda s: ["--unixsocket", str(s.dir / "redis.sock"),
                                              "--unixsocketperm", "700"])
    admin(server).hset("bff:{k}:s", mapping={"via": "unix"})
    reader = connect(f"unix://{server.dir / 'redis.sock'}?db=0").reader

    assert await reader.hgetall("bff:{k}:s") == {b"via": b"unix"}
    assert reader.connected_to == str(server.dir / "redis.sock")


async def test_a_tls_url_verifies_the_server_as_redis_py_does(
    start_redis: StartRedis, connect: Connect, tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path)
    tls_port = free_port()
    server = start_redis("--tls-port", str(tls_port), "--tls-cert-file", str(certs.cert),
                         "--tls-key-file", str(certs.key), "--tls-ca-cert-file", str(certs.ca),
                         "--tls-auth-clients", "no")
    admin(server).hset("bff:{k}:s", mapping={"via": "tls"})
    trusted = connect(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={certs.ca}").reader
    untrusted = connect(f"rediss://127.0.0.1:{tls_port}/0").reader  # the system CAs only

    assert await trusted.hgetall("bff:{k}:s") == {b"via": b"tls"}
    with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await untrusted.hgetall("bff:{k}:s")


# --- failing as redis-py fails, healing without a restart ----------------------------------

async def test_redis_killed_fails_fast_and_a_restart_on_the_same_port_is_picked_up(
    start_redis: StartRedis, connect: Connect
) -> None:
    server = start_redis("--appendonly", "yes", "--appendfsync", "always")
    store = connect(server.url).store
    created = await store.create("k1", new_session(), {"at": b"token"}, now=now())
    assert await store.get("k1") == created

    server.kill()
    for _ in range(2):  # the dropped connection, then a refused reconnect
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as failed:
            await store.get("k1")
        assert time.monotonic() - started < 1.0  # not the 3 s socket timeout
        assert isinstance(failed.value.__cause__, RedisConnectionError)

    server.start()  # same port, its append-only file brings the session back
    assert await store.get("k1") == created


async def test_no_reply_within_the_socket_timeout_fails_every_waiting_caller_then_heals(
    redis_server: RedisServer, connect: Connect
) -> None:
    inside = admin(redis_server)
    inside.hset(session_redis_key("k"), mapping={"v": "x"})
    reading = connect(redis_server.url, socket_timeout=0.3)
    assert await reading.reader.hgetall(session_redis_key("k")) == {b"v": b"x"}

    inside.execute_command("CLIENT", "PAUSE", 2000, "ALL")
    started = time.monotonic()
    outcomes = await asyncio.gather(*(reading.store.get("k") for _ in range(5)),
                                    return_exceptions=True)
    elapsed = time.monotonic() - started

    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    assert all(isinstance(o.__cause__, RedisTimeoutError) for o in outcomes)  # type: ignore[union-attr]
    assert 0.25 <= elapsed < 1.0
    assert reading.reader.connected_to is None  # dropped: late replies cannot be matched
    inside.ping()  # answered only when the pause is over
    assert await reading.reader.hgetall(session_redis_key("k")) == {b"v": b"x"}


async def test_connecting_longer_than_the_connect_timeout_is_a_timeout(connect: Connect) -> None:
    with socket.socket() as silent:  # accepts TCP connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        reading = connect(f"rediss://127.0.0.1:{port}/0", socket_connect_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as failed:
            await reading.store.get("k")
        elapsed = time.monotonic() - started
    assert isinstance(failed.value.__cause__, RedisTimeoutError)
    assert 0.25 <= elapsed < 1.5


async def test_callers_waiting_for_the_connection_share_one_attempt(
    redis_server: RedisServer, connect: Connect
) -> None:
    inside = admin(redis_server)
    inside.hset(session_redis_key("k"), mapping={"v": "x"})
    reader = connect(redis_server.url).reader
    before = connections_received(inside)
    waiting = [asyncio.ensure_future(reader.hgetall(session_redis_key("k"))) for _ in range(20)]
    await asyncio.sleep(0)
    waiting[0].cancel()  # one caller giving up does not abort the attempt for the others

    results = await asyncio.gather(*waiting[1:])

    assert results == [{b"v": b"x"}] * 19
    assert connections_received(inside) - before == 1


# --- Sentinel --------------------------------------------------------------------------------

@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with SentinelSet(tmp_path) as started:
        yield started


async def test_sentinel_reads_follow_the_primary_through_a_failover(
    sentinels: SentinelSet, connect: Connect
) -> None:
    reading = connect(sentinels.url)
    await reading.client.hset(session_redis_key("k"), mapping={"v": "before"})
    sentinels.wait_replicated()
    old_port = sentinels.master_port()
    assert await reading.reader.hgetall(session_redis_key("k")) == {b"v": b"before"}
    assert reading.reader.connected_to == f"127.0.0.1:{old_port}"

    sentinels.kill_primary()
    with pytest.raises(StoreUnavailable):  # the sentinels still name the dead primary
        await reading.store.get("k")
    await asyncio.to_thread(sentinels.wait_failover, old_port)

    assert await reading.reader.hgetall(session_redis_key("k")) == {b"v": b"before"}
    assert reading.reader.connected_to == f"127.0.0.1:{sentinels.master_port()}"
    await reading.client.hset(session_redis_key("k"), mapping={"v": "after"})
    assert await reading.reader.hgetall(session_redis_key("k")) == {b"v": b"after"}


# --- when redis-py keeps the read --------------------------------------------------------------

async def test_the_factory_keeps_redis_py_for_clients_it_cannot_match() -> None:
    sentinel = Sentinel([("127.0.0.1", 1)])
    clients = [
        redis_from_url("redis+cluster://127.0.0.1:1"),
        Redis.from_url("redis://127.0.0.1:1", decode_responses=True),
        Redis.from_url("redis://127.0.0.1:1", retry=Retry(NoBackoff(), 3)),
        Redis(host="127.0.0.1", port=1, credential_provider=UsernamePasswordCredentialProvider("u", "p")),
        Redis.from_url("redis://127.0.0.1:1", some_future_option="?"),
        sentinel.slave_for("mymaster"),
    ]
    try:
        assert [fast_reader_for(client) for client in clients] == [None] * len(clients)
        assert fast_reader_for(redis_from_url("redis://127.0.0.1:1")) is not None  # the baseline
    finally:
        for client in clients:
            await client.aclose()


async def test_the_app_reads_sessions_through_the_reader_and_closes_it_on_shutdown(
    redis_server: RedisServer,
) -> None:
    settings = load_settings({
        "BFF_ISSUER": "http://127.0.0.1:9", "BFF_CLIENT_ID": "bff", "BFF_CLIENT_SECRET": "s" * 16,
        "BFF_PUBLIC_URL": "http://127.0.0.1:8", "BFF_SESSION_SECRET": SECRET,
        "BFF_REDIS_URL": redis_server.url,
    })
    async with open_resources(settings) as res:
        reader = res.store.fast_reader
        assert reader is not None
        created = await res.store.create("k1", new_session(), {}, now=now())
        assert await res.store.get("k1") == created
        assert reader.connected_to is not None
    assert reader.connected_to is None


def test_under_uvloop_the_server_s_event_loop_too(
    start_redis: StartRedis, tmp_path: Path
) -> None:
    """``bff serve`` runs on uvloop: its transports (TCP and TLS) carry the same reads."""
    uvloop = pytest.importorskip("uvloop")
    certs = make_certificates(tmp_path)
    tls_port = free_port()
    server = start_redis("--tls-port", str(tls_port), "--tls-cert-file", str(certs.cert),
                         "--tls-key-file", str(certs.key), "--tls-ca-cert-file", str(certs.ca),
                         "--tls-auth-clients", "no")
    expected = {f"bff:{{k{n}}}:s": {b"n": str(n).encode() * 1000} for n in range(20)}
    for name, values in expected.items():
        admin(server).hset(name, mapping=values)
    names = list(expected)

    async def scenario(url: str) -> None:
        client = redis_from_url(url)
        assert isinstance(client, Redis)
        reader = fast_reader_for(client)
        assert reader is not None
        try:
            results = await asyncio.gather(*(reader.hgetall(names[i % 20]) for i in range(400)))
            assert [r for i, r in enumerate(results) if r != expected[names[i % 20]]] == []
            assert reader.connected_to is not None
        finally:
            await reader.aclose()
            await client.aclose()

    uvloop.run(scenario(server.url))
    uvloop.run(scenario(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={certs.ca}"))
