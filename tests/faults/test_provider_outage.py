"""The OpenID Provider goes down: signed-in users carry on, sign-in is a clear 503, all heals.

A provider of its own (the shared one serves every other test), restarted on
the same port with the same configuration. Being an in-memory test provider it
comes back with fresh signing keys and no memory of earlier grants, which a
production provider would keep; the gateway must pick up the new keys itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.asgi_server import ServerThread
from tests.support.provider import ProviderConfig, ProviderProcess, find_free_port
from tests.support.stack import CLIENT_ID, CLIENT_SECRET, Infra, Stack, running_stack

from .report import record


@pytest.fixture
def own_infra(infra: Infra) -> Iterator[Infra]:
    port = infra.take_port()
    client = {
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"http://127.0.0.1:{port}/bff/callback"],
        "post_logout_redirect_uris": [f"http://127.0.0.1:{port}/"],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    provider = ProviderProcess(ProviderConfig(clients=[client])).start()
    try:
        yield Infra(provider=provider, redis=infra.redis, ports=[port], bcl_port=find_free_port())
    finally:
        provider.stop()
        infra.in_use.discard(port)


@pytest.fixture
def stack(own_infra: Infra, upstream: ServerThread) -> Iterator[Stack]:
    own_infra.redis.client().flushall()
    with running_stack(own_infra, BFF_ROUTES=f"/api={upstream.url}") as started:
        yield started


def _user(stack: Stack, browser: httpx.Client) -> httpx.Response:
    return stack.api(browser, "GET", "/bff/user")


def _login_start(stack: Stack, navigation: bool) -> httpx.Response:
    headers = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate"} if navigation else {}
    return httpx.get(f"{stack.url}/bff/login", headers=headers, follow_redirects=False)


def test_provider_down_users_keep_working_login_is_503_and_everything_heals(stack: Stack) -> None:
    provider = stack.provider
    early, late = stack.browser(), stack.browser()
    stack.login(early, username="early")
    stack.login(late, username="late")

    provider.stop()
    down = time.monotonic()
    # Signed-in users keep working on their current, still valid access token.
    assert _user(stack, early).status_code == 200
    assert stack.api(early, "GET", "/api/orders").status_code == 200
    time.sleep(2.1)  # past the gateway's memory of the provider's last answer
    # Sign-in is a readable page (navigation) or the contract's JSON, never a redirect to a dead provider.
    page = _login_start(stack, navigation=True)
    assert page.status_code == 503 and "text/html" in page.headers["content-type"]
    assert "sign-in service cannot be reached" in page.text and page.headers["retry-after"]
    assert "location" not in page.headers
    api = _login_start(stack, navigation=False)
    assert api.status_code == 503 and api.json()["error"] == "unavailable"
    # Readiness says so (the contract: Redis and the provider reachable) ...
    ready = httpx.get(f"{stack.url}/readyz")
    assert ready.status_code == 503 and ready.headers["retry-after"]
    assert ready.json()["error"] == "unavailable" and "identity provider" in ready.json()["detail"]
    assert ready.json()["checks"] == {"redis": "ok", "provider": "unreachable"}
    # ... unless the orchestrator asked to keep serving signed-in users on cached metadata.
    cached = httpx.get(f"{stack.url}/readyz?provider=cached")
    assert cached.status_code == 200 and cached.json()["checks"]["provider"] == "ok"
    # Inside the refresh window the refresh fails, but the token is still valid: used as is.
    stack.clock.advance(300 - stack.settings.refresh_leeway + 5)
    assert stack.api(late, "GET", "/api/orders").status_code == 200
    # An expired token cannot be refreshed: 503, and the session is kept (no logout).
    stack.clock.advance(60)
    expired = stack.api(late, "GET", "/api/orders")
    assert expired.status_code == 503 and expired.json()["error"] == "unavailable"
    assert expired.headers["retry-after"] and "set-cookie" not in expired.headers
    assert _user(stack, late).status_code == 200
    outage = time.monotonic() - down

    provider.start()  # same port, same clients; new keys, no memory of earlier grants
    restarted = time.monotonic()
    deadline = restarted + 15
    while _login_start(stack, navigation=False).status_code != 302:
        assert time.monotonic() < deadline, "sign-in did not come back"
        time.sleep(0.05)
    login_back = time.monotonic() - restarted
    assert httpx.get(f"{stack.url}/readyz").status_code == 200
    # A fresh sign-in works: the gateway fetches the provider's new signing keys by itself.
    newcomer = stack.browser()
    assert stack.login(newcomer, username="newcomer").status_code == 302
    assert _user(stack, newcomer).json()["sub"] == "newcomer"
    # Sessions that lived through the outage are all still there.
    assert _user(stack, early).json()["sub"] == "early"
    assert _user(stack, late).json()["sub"] == "late"
    # The refresh token of "late" is unknown to this amnesic provider: the gateway ends that
    # session by the contract (invalid_grant -> 401); a provider that keeps its grants refreshes.
    assert stack.api(late, "GET", "/api/orders").status_code == 401

    # Down again: a refresh that fails to reach the provider is news enough; the very next
    # sign-in is refused at once, without waiting for the gateway's memory of it to age.
    provider.stop()
    stack.clock.advance(300 - stack.settings.refresh_leeway + 5)
    assert stack.api(newcomer, "GET", "/api/orders").status_code == 200  # still-valid token
    assert _login_start(stack, navigation=False).status_code == 503
    record("Provider down (process stopped), restarted on the same port",
           seen="signed-in users: 200 while their access token is valid (also when its refresh "
                "fails), then 503 unavailable + Retry-After; /bff/login: 503 page or JSON; "
                "/readyz 503 (provider unreachable), /readyz?provider=cached 200",
           recovery_s=login_back, sessions_lost=0,
           notes=f"outage {outage:.1f}s; recovery = restart until /bff/login redirects again; "
                 "new signing keys picked up on the first login")
