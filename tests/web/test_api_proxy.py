"""SPAs call APIs through the gateway: the token is added, refreshed silently, exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx
import pytest

from bff.session.redis import decode_session
from tests.support.asgi_server import ServerThread
from tests.support.provider import find_free_port
from tests.support.stack import Stack
from tests.support.upstream import UpstreamLog, upstream_app


@pytest.fixture
def upstream() -> Iterator[tuple[ServerThread, UpstreamLog]]:
    log = UpstreamLog()
    with ServerThread(upstream_app(log)) as server:
        yield server, log


@pytest.fixture
def api_stack(make_stack: Callable[..., Stack], upstream) -> Stack:
    server, _ = upstream
    return make_stack(BFF_ROUTES=f"/api={server.url}/v1")


def _headers(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.json()["headers"]}


def test_the_access_token_reaches_the_upstream_but_cookies_do_not(api_stack: Stack, upstream) -> None:
    _, log = upstream
    browser = api_stack.browser()
    api_stack.login(browser)
    response = api_stack.api(browser, "GET", "/api/things?x=1",
                             headers={"Authorization": "Basic Zm9vOmJhcg==", "Connection": "X-Drop",
                                      "X-Drop": "1", "X-Forwarded-User": "admin"})
    assert response.status_code == 200
    seen = _headers(response)
    assert seen["authorization"].startswith("Bearer ") and seen["authorization"] != "Bearer "
    assert "cookie" not in seen and "x-drop" not in seen and "x-csrf" not in seen
    assert "x-forwarded-user" not in seen
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert response.json()["path"] == "/v1/things" and response.json()["query"] == "x=1"
    assert log.bearers and log.bearers[-1] == seen["authorization"][7:]


def test_an_upstream_cannot_plant_the_gateways_cookies(api_stack: Stack) -> None:
    browser = api_stack.browser()
    api_stack.login(browser)
    for name in ("bff", "bff-login"):
        response = api_stack.api(browser, "GET", f"/api/x?plant={name}")
        cookies = response.headers.get_list("set-cookie")
        assert cookies == ["upstream=kept; Path=/"]
    assert api_stack.api(browser, "GET", "/bff/user").status_code == 200


def test_api_call_without_session_is_401_json_and_navigation_is_sent_to_login(api_stack: Stack) -> None:
    browser = api_stack.browser()
    xhr = api_stack.api(browser, "GET", "/api/things", headers={"Sec-Fetch-Mode": "cors"})
    assert xhr.status_code == 401 and xhr.json()["error"] == "unauthenticated"
    page = browser.get("/api/things?a=b", headers={"Accept": "text/html",
                                                   "Sec-Fetch-Mode": "navigate"})
    assert page.status_code == 302
    assert page.headers["location"] == "/bff/login?returnTo=%2Fapi%2Fthings%3Fa%3Db"


def test_navigation_with_an_ended_session_is_sent_to_login_not_refused(api_stack: Stack) -> None:
    browser = api_stack.browser()
    api_stack.login(browser)
    navigation = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}
    assert browser.get("/api/page", headers=navigation).status_code == 403  # live session: no CSRF header
    api_stack.clock.advance(api_stack.settings.idle_timeout + 1)
    page = browser.get("/api/page", headers=navigation)
    assert page.status_code == 302
    assert page.headers["location"] == "/bff/login?returnTo=%2Fapi%2Fpage"


def test_api_call_without_csrf_header_is_403_before_the_store_is_touched(api_stack: Stack) -> None:
    browser = api_stack.browser()
    api_stack.login(browser)
    response = browser.post("/api/things", json={}, headers={"Sec-Fetch-Mode": "cors"})
    assert response.status_code == 403 and response.json()["error"] == "csrf"
    foreign = api_stack.api(browser, "POST", "/api/things", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403


def test_traversal_out_of_the_upstream_base_path_is_refused(api_stack: Stack) -> None:
    browser = api_stack.browser()
    api_stack.login(browser)
    for path in ("/api/..%2f..%2fadmin", "/api/%2e%2e/admin", "/api/a/..%5c..%5cadmin",
                 "/api//admin", "/api/%252e%252e/admin"):
        response = api_stack.api(browser, "GET", path)
        assert response.status_code == 400, path
        assert response.json()["error"] == "bad_request"


def _expire_soon(stack: Stack) -> None:
    """Move the gateway's clock so the access token is inside the refresh leeway."""
    stack.clock.advance(300 - stack.settings.refresh_leeway + 5)


def test_fifty_concurrent_calls_after_expiry_make_exactly_one_refresh_grant(
    api_stack: Stack, upstream
) -> None:
    _, log = upstream
    browser = api_stack.browser()
    api_stack.login(browser)
    first = api_stack.api(browser, "GET", "/api/one")
    old_token = _headers(first)["authorization"]
    _expire_soon(api_stack)
    api_stack.provider.reset_stats()

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=api_stack.url, cookies=browser.cookies,
                                     headers={**browser.headers, "X-CSRF": "1"}) as client:
            return await asyncio.gather(*(client.get(f"/api/n{i}") for i in range(50)))

    responses = asyncio.run(storm())
    assert [r.status_code for r in responses] == [200] * 50
    tokens = {_headers(r)["authorization"] for r in responses}
    assert len(tokens) == 1 and tokens != {old_token}
    assert api_stack.provider.stats()["grants"]["refresh_token"] == 1
    assert len(set(log.bearers[-50:])) == 1


def test_two_gateway_instances_on_one_redis_refresh_once(
    make_stack: Callable[..., Stack], upstream
) -> None:
    server, _ = upstream
    a = make_stack(BFF_ROUTES=f"/api={server.url}")
    b = make_stack(BFF_ROUTES=f"/api={server.url}")
    browser = a.browser()
    a.login(browser)
    a.clock.advance(250)
    b.clock.advance(250)
    a.provider.reset_stats()

    async def storm() -> list[httpx.Response]:
        headers = {**browser.headers, "X-CSRF": "1"}
        async with httpx.AsyncClient(cookies=browser.cookies, headers=headers) as client:
            calls = [client.get(f"{(a if i % 2 else b).url}/api/x{i}") for i in range(50)]
            return await asyncio.gather(*calls)

    responses = asyncio.run(storm())
    assert [r.status_code for r in responses] == [200] * 50
    assert a.provider.stats()["grants"]["refresh_token"] == 1
    assert len({_headers(r)["authorization"] for r in responses}) == 1


def test_invalid_grant_ends_the_session(api_stack: Stack) -> None:
    browser = api_stack.browser()
    api_stack.login(browser)
    assert api_stack.api(browser, "GET", "/api/x").status_code == 200
    revoke_refresh_tokens_behind_the_gateways_back(api_stack)
    _expire_soon(api_stack)
    response = api_stack.api(browser, "GET", "/api/x")
    assert response.status_code == 401 and response.json()["error"] == "unauthenticated"
    assert api_stack.api(browser, "GET", "/bff/user").status_code == 401


def revoke_refresh_tokens_behind_the_gateways_back(stack: Stack) -> None:
    """Revoke every stored refresh token at the provider, as an admin revoking consent would."""
    resources = stack.app.resources
    redis = stack.infra.redis.client()
    revocation = stack.provider.discovery()["revocation_endpoint"]
    auth = (quote(stack.settings.client_id, safe=""), quote(stack.settings.client_secret or "", safe=""))
    for name in redis.keys("bff:{*}:s"):
        key = name.decode().split("{")[1].split("}")[0]
        session = decode_session(key, redis.hgetall(name))
        assert session is not None
        token = resources.sessions.decrypt(session, "rt")
        assert token and stack.provider.token_active(token)
        assert httpx.post(revocation, data={"token": token}, auth=auth).status_code == 200
        assert not stack.provider.token_active(token)


def test_upstream_down_is_502_and_other_routes_still_work(make_stack: Callable[..., Stack], upstream) -> None:
    server, _ = upstream
    dead = find_free_port()
    stack = make_stack(BFF_ROUTES=f"/dead=http://127.0.0.1:{dead},/api={server.url}")
    browser = stack.browser()
    stack.login(browser)
    down = stack.api(browser, "GET", "/dead/x")
    assert down.status_code == 502 and down.json()["error"] == "upstream_error"
    assert stack.api(browser, "GET", "/api/x").status_code == 200


def test_rotation_with_two_instances_under_traffic_gives_no_401(
    make_stack: Callable[..., Stack], upstream
) -> None:
    server, _ = upstream
    stack_a = make_stack(BFF_ROUTES=f"/api={server.url}", BFF_REFRESH_LEEWAY="60")
    stack_b = make_stack(BFF_ROUTES=f"/api={server.url}", BFF_REFRESH_LEEWAY="60")
    stack_a.provider.update_settings(rotate_refresh_token=True, access_token_ttl=62)
    browser = stack_a.browser()
    stack_a.login(browser)
    stack_a.provider.reset_stats()
    statuses: list[int] = []

    async def traffic() -> None:
        headers = {**browser.headers, "X-CSRF": "1"}
        async with httpx.AsyncClient(cookies=browser.cookies, headers=headers) as client:
            deadline = time.monotonic() + 30
            i = 0
            while time.monotonic() < deadline:
                batch = [client.get(f"{(stack_a if (i + j) % 2 else stack_b).url}/api/t")
                         for j in range(8)]
                statuses.extend(r.status_code for r in await asyncio.gather(*batch))
                i += 1

    asyncio.run(traffic())
    grants = stack_a.provider.stats()["grants"]["refresh_token"]
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert grants >= 10  # a refresh about every two seconds, each rotating the refresh token
    assert stack_a.provider.stats()["grant_errors"] == []


def test_upstream_401_makes_one_refresh_and_one_retry(api_stack: Stack, upstream) -> None:
    _, log = upstream
    browser = api_stack.browser()
    api_stack.login(browser)
    first = api_stack.api(browser, "GET", "/api/x")
    old = _headers(first)["authorization"][7:]
    log.rejected_tokens.add(old)
    api_stack.provider.reset_stats()
    response = api_stack.api(browser, "POST", "/api/x", json={"small": "body"})
    assert response.status_code == 200
    assert _headers(response)["authorization"][7:] != old
    assert response.json()["body_length"] == len(b'{"small":"body"}')
    assert api_stack.provider.stats()["grants"]["refresh_token"] == 1
    assert log.bearers[-2:] == [old, _headers(response)["authorization"][7:]]
