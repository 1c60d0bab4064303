"""Size and rate limits, on a real server: 431 for big headers or cookies, 413 for big bodies
(per route), 429 for login floods per address and overall, and a flood cannot fill Redis."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from bff.config import Route, load_settings
from bff.session.redis import login_key
from tests.support.asgi_server import ServerThread
from tests.support.stack import Infra, Stack, gateway_env
from tests.support.upstream import UpstreamLog, upstream_app


def _contract(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.json() == {"error": error, "detail": response.json()["detail"]}


def test_safe_defaults(infra: Infra) -> None:
    settings = load_settings(gateway_env(infra, 1, {}))
    assert (settings.max_header_size, settings.max_cookie_size) == (16384, 8192)
    assert (settings.login_rate_limit, settings.login_global_limit) == (30, 5000)
    assert Route(prefix="/x", upstream="http://x").max_body_size == 100 * 1024 * 1024


def test_big_headers_and_cookies_are_431(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(BFF_MAX_HEADER_SIZE="4096", BFF_MAX_COOKIE_SIZE="1024")
    browser = stack.browser()
    _contract(stack.api(browser, "GET", "/bff/user", headers={"X-Big": "a" * 5000}), 431,
              "headers_too_large")
    _contract(stack.api(browser, "GET", "/bff/user", headers={"Cookie": "bff=" + "b" * 1100}), 431,
              "headers_too_large")
    assert stack.api(browser, "GET", "/bff/user", headers={"X-Fine": "a" * 2000}).status_code == 401


def test_bodies_over_the_routes_limit_are_413_declared_or_streamed(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    with ServerThread(upstream_app(UpstreamLog())) as upstream:
        config = tmp_path / "bff.toml"
        config.write_text(f'[[routes]]\nprefix = "/up"\nupstream = "{upstream.url}"\ntoken = "none"\n'
                          "max_body_size = 1024\n\n"
                          f'[[routes]]\nprefix = "/big"\nupstream = "{upstream.url}"\ntoken = "none"\n',
                          encoding="utf-8")
        stack = make_stack(BFF_CONFIG=str(config))
        browser = stack.browser()
        assert stack.api(browser, "POST", "/up/x", content=b"a" * 1024).status_code == 200
        _contract(stack.api(browser, "POST", "/up/x", content=b"a" * 1025), 413, "payload_too_large")

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b"c" * 512

        async def streamed(path: str) -> httpx.Response:
            async with httpx.AsyncClient(base_url=stack.url, headers={"X-CSRF": "1"}) as client:
                return await client.post(path, content=chunks())

        _contract(asyncio.run(streamed("/up/x")), 413, "payload_too_large")
        big = asyncio.run(streamed("/big/x"))  # another route, its own (default) limit
        assert big.status_code == 200 and big.json()["body_length"] == 4096


def test_logins_from_one_address_are_capped_with_429_and_retry_after(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(BFF_LOGIN_RATE_LIMIT="5")
    browser = stack.browser()
    assert [browser.get("/bff/login").status_code for _ in range(5)] == [302] * 5
    api = browser.get("/bff/login")
    _contract(api, 429, "rate_limited")
    assert 0 < int(api.headers["retry-after"]) <= 60
    page = browser.get("/bff/login", headers={"Accept": "text/html", "Sec-Fetch-Mode": "navigate"})
    assert page.status_code == 429 and "text/html" in page.headers["content-type"]
    assert page.headers["retry-after"]


@pytest.mark.parametrize("spread", [True, False])
def test_an_anonymous_login_flood_cannot_fill_redis(make_stack: Callable[..., Stack], spread: bool) -> None:
    """300 logins from 300 addresses (or one): pending logins stay at the configured caps."""
    stack = make_stack(BFF_LOGIN_RATE_LIMIT="5", BFF_LOGIN_GLOBAL_LIMIT="20",
                       BFF_TRUSTED_PROXIES="127.0.0.1")

    async def flood() -> Counter[int]:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            async def one(i: int) -> int:
                address = f"198.51.{i // 250}.{i % 250 + 1}" if spread else "203.0.113.9"
                response = await client.get("/bff/login", headers={"X-Forwarded-For": address})
                if response.status_code == 429:
                    _contract(response, 429, "rate_limited")
                    assert response.headers["retry-after"]
                return response.status_code

            results: list[int] = []
            for start in range(0, 300, 30):
                results += await asyncio.gather(*(one(i) for i in range(start, start + 30)))
            return Counter(results)

    statuses = asyncio.run(flood())
    cap = 20 if spread else 5
    assert statuses == {302: cap, 429: 300 - cap}, statuses
    pending = [k for k in stack.infra.redis.client().keys("bff:{tx:*") if k.startswith(b"bff:{tx:")]
    assert len(pending) == cap
    assert login_key("x").startswith("bff:{tx:")
    # A newcomer from yet another address is turned away too while the global cap holds.
    if spread:
        newcomer = httpx.get(f"{stack.url}/bff/login",
                             headers={"X-Forwarded-For": f"192.0.2.{random.randint(1, 250)}"})
        _contract(newcomer, 429, "rate_limited")
