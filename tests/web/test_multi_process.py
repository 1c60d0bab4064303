"""Two real gateway processes on one Redis: any instance serves any session; one refresh grant."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.asgi_server import ServerThread
from tests.support.processes import GatewayProcess
from tests.support.provider import login_through_provider
from tests.support.stack import BROWSER_UA, Infra, gateway_env
from tests.support.upstream import UpstreamLog, upstream_app

LEEWAY = 60


@pytest.fixture
def two_gateways(infra: Infra) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    infra.redis.client().flushall()
    infra.provider.reset_stats()
    # Tokens live just past the leeway: two seconds after login they need refreshing.
    infra.provider.update_settings(access_token_ttl=LEEWAY + 2)
    ports = [infra.take_port(), infra.take_port()]
    log = UpstreamLog()
    try:
        with ServerThread(upstream_app(log)) as upstream:
            envs = [gateway_env(infra, port, {"BFF_ROUTES": f"/api={upstream.url}",
                                              "BFF_REFRESH_LEEWAY": str(LEEWAY)})
                    for port in ports]
            # Both instances must agree on the public URL the provider redirects to.
            envs[1]["BFF_PUBLIC_URL"] = envs[0]["BFF_PUBLIC_URL"]
            with GatewayProcess(envs[0], ports[0]) as a, GatewayProcess(envs[1], ports[1]) as b:
                yield a, b
    finally:
        for port in ports:
            infra.in_use.discard(port)
        infra.provider.update_settings(access_token_ttl=300)


def test_fifty_calls_across_two_processes_after_expiry_make_one_refresh_grant(
    infra: Infra, two_gateways: tuple[GatewayProcess, GatewayProcess]
) -> None:
    a, b = two_gateways
    with httpx.Client(base_url=a.url, headers={"User-Agent": BROWSER_UA}) as browser:
        login_through_provider(browser, f"{a.url}/bff/login")
        cookie = browser.cookies["bff"]
    logged_in_at = time.monotonic()
    headers = {"User-Agent": BROWSER_UA, "X-CSRF": "1", "Cookie": f"bff={cookie}"}
    assert httpx.get(f"{b.url}/bff/user", headers=headers).status_code == 200
    infra.provider.reset_stats()
    # Wait for the behaviour under test: the token entering the refresh window.
    time.sleep(max(0.0, 2.5 - (time.monotonic() - logged_in_at)))

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            return await asyncio.gather(
                *(client.get(f"{(a if i % 2 else b).url}/api/call{i}") for i in range(50))
            )

    responses = asyncio.run(storm())
    assert [r.status_code for r in responses] == [200] * 50
    assert infra.provider.stats()["grants"]["refresh_token"] == 1
    bearers = {dict((k.lower(), v) for k, v in r.json()["headers"])["authorization"]
               for r in responses}
    assert len(bearers) == 1


def test_a_session_started_on_one_process_is_served_by_the_other(
    two_gateways: tuple[GatewayProcess, GatewayProcess],
) -> None:
    a, b = two_gateways
    with httpx.Client(base_url=a.url, headers={"User-Agent": BROWSER_UA}) as browser:
        login_through_provider(browser, f"{a.url}/bff/login")
        headers = {"X-CSRF": "1", "Cookie": f"bff={browser.cookies['bff']}",
                   "User-Agent": BROWSER_UA}
    user = httpx.get(f"{b.url}/bff/user", headers=headers)
    assert user.status_code == 200 and user.json()["sub"] == "alice"
    assert httpx.post(f"{b.url}/bff/logout", headers=headers).status_code == 200
    assert httpx.get(f"{a.url}/bff/user", headers=headers).status_code == 401
