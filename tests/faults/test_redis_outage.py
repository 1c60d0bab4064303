"""Redis dies or stops answering under traffic: 503 with Retry-After, nobody logged out, self-healing.

The gateway is a real ``bff serve`` process; Redis is a real server with an
append-only file (fsync on every write) in its own directory, so a restart
brings every session back, as a persistent production Redis would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from bff.app import create_app
from bff.config import load_settings
from tests.support.asgi_server import ServerThread
from tests.support.redis_server import RedisServer
from tests.support.stack import BROWSER_UA, Infra, gateway_env

from .conftest import StartGateway
from .report import record
from .traffic import Traffic, log_in

USERS = ("ann", "ben", "cat", "dan")


@pytest.fixture
def persistent_redis() -> Iterator[RedisServer]:
    server = RedisServer(extra=["--appendonly", "yes", "--appendfsync", "always"]).start()
    try:
        yield server
    finally:
        server.cleanup()


def _readyz(url: str) -> httpx.Response:
    return httpx.get(f"{url}/readyz", timeout=10)


def _wait_ready(url: str, since: float, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _readyz(url).status_code == 200:
            return time.monotonic() - since
        time.sleep(0.05)
    raise AssertionError("/readyz did not turn green")


def test_redis_killed_mid_traffic_is_503_then_every_session_works_again(
    gateway_process: StartGateway, persistent_redis: RedisServer, upstream: ServerThread
) -> None:
    gateway = gateway_process(BFF_REDIS_URL=persistent_redis.url, BFF_ROUTES=f"/api={upstream.url}")
    users = log_in(gateway.url, USERS)
    assert _readyz(gateway.url).status_code == 200
    with Traffic([gateway.url], users) as traffic:
        time.sleep(1.0)
        killed = time.monotonic()
        persistent_redis.kill()
        time.sleep(0.5)

        ready = _readyz(gateway.url)
        assert ready.status_code == 503 and ready.headers["retry-after"]
        assert ready.json()["checks"]["redis"] == "unreachable"
        page = httpx.get(f"{gateway.url}/bff/login", headers={"Accept": "text/html",
                                                             "User-Agent": BROWSER_UA})
        assert page.status_code == 503 and "text/html" in page.headers["content-type"]
        assert page.headers["retry-after"] and "set-cookie" not in page.headers
        logout = httpx.post(f"{gateway.url}/bff/logout", cookies=users[0].cookies,
                            headers={"X-CSRF": "1", "User-Agent": BROWSER_UA})
        assert logout.status_code == 503 and logout.json()["error"] == "unavailable"
        assert "set-cookie" not in logout.headers  # a failed logout does not half-log-out
        time.sleep(2.0)

        restarted = time.monotonic()
        persistent_redis.start()  # same port, same directory: the AOF brings the data back
        back = traffic.wait_all_back(restarted)
        ready_after = _wait_ready(gateway.url, restarted)
        time.sleep(0.3)
    during = traffic.statuses(killed + 0.3, restarted)
    assert during[503] > 0 and set(during) <= {503}, during
    assert not traffic.problems(), traffic.problems()[:5]
    assert [line for line in gateway.output().splitlines() if '"level":"error"' in line] == []
    for user in users:  # the same sessions, not new ones
        again = httpx.get(f"{gateway.url}/bff/user", cookies=user.cookies,
                          headers={"X-CSRF": "1", "User-Agent": BROWSER_UA})
        assert again.status_code == 200 and again.json()["sub"] == user.name
    record("Redis killed (SIGKILL), restarted 2.5 s later with its AOF",
           seen=f"503 unavailable + Retry-After ({during[503]} answers), login page 503, "
                "/readyz 503; no 401, no 500, no cookie cleared",
           recovery_s=back - restarted, sessions_lost=0,
           notes=f"/readyz green {ready_after:.2f}s after restart; outage {restarted - killed:.1f}s")


def test_unresponsive_redis_is_a_quick_503_and_heals(
    gateway_process: StartGateway, persistent_redis: RedisServer, upstream: ServerThread
) -> None:
    gateway = gateway_process(BFF_REDIS_URL=persistent_redis.url, BFF_ROUTES=f"/api={upstream.url}")
    users = log_in(gateway.url, USERS)
    pause_ms = 5000
    with Traffic([gateway.url], users) as traffic:
        time.sleep(0.5)
        paused = time.monotonic()
        with persistent_redis.client() as admin:
            admin.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
        resumed = paused + pause_ms / 1000
        time.sleep(pause_ms / 1000)
        back = traffic.wait_all_back(resumed)
    during = traffic.statuses(paused, resumed + 0.5)
    assert during[503] >= len(USERS), during
    assert not traffic.problems(), traffic.problems()[:5]
    first = min(s.at - paused for s in traffic.samples if s.status == 503 and s.at >= paused)
    record("Redis unresponsive (CLIENT PAUSE 5 s)",
           seen="requests wait up to the 3 s Redis timeout, then 503 unavailable + Retry-After; "
                "no 401, no 500",
           recovery_s=back - resumed, sessions_lost=0,
           notes=f"first 503 {first:.1f}s into the pause (the Redis socket timeout is 3 s)")


def test_an_unexpected_store_client_failure_is_a_503_not_a_500(infra: Infra) -> None:
    """Even a bug inside the Redis client library surfaces as a retryable 503."""
    infra.redis.client().flushall()
    settings = load_settings(gateway_env(infra, 1, {}))
    app = create_app(settings)
    with ServerThread(app) as server:
        async def broken(*args: object, **kwargs: object) -> None:
            raise AttributeError("'NoneType' object has no attribute 'writelines'")

        store = app.resources.store  # type: ignore[union-attr]
        store.redis.hgetall = broken  # type: ignore[method-assign]  # the redis-py client...
        if store.fast_reader is not None:  # ...and the session read's own connection
            store.fast_reader.hgetall = broken  # type: ignore[method-assign]
        response = httpx.get(f"{server.url}/bff/user", headers={"X-CSRF": "1"},
                             cookies={"bff": _any_signed_cookie(app)})
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable" and response.headers["retry-after"]


def _any_signed_cookie(app: object) -> str:
    signer = app.resources.sessions.signer  # type: ignore[attr-defined]
    value: str = signer.sign("a" * 43)
    return value

