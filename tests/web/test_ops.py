"""Operators watch the gateway: liveness, readiness, Prometheus metrics, security headers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.asgi_server import ServerThread
from tests.support.stack import Stack
from tests.support.upstream import UpstreamLog, upstream_app


@pytest.fixture
def ops_stack(make_stack: Callable[..., Stack]) -> Iterator[Stack]:
    with ServerThread(upstream_app(UpstreamLog())) as upstream:
        yield make_stack(BFF_ROUTES=f"/api={upstream.url}")


def test_health_and_readiness_are_green_with_redis_and_provider_up(ops_stack: Stack) -> None:
    browser = ops_stack.browser()
    assert browser.get("/healthz").json() == {"status": "ok"}
    ready = browser.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "provider": "ok"}


def test_metrics_count_requests_logins_and_refreshes(ops_stack: Stack) -> None:
    browser = ops_stack.browser()
    ops_stack.login(browser)
    assert ops_stack.api(browser, "GET", "/api/x").status_code == 200
    ops_stack.clock.advance(280)
    assert ops_stack.api(browser, "GET", "/api/y").status_code == 200
    browser.get("/bff/callback?state=nope")
    text = browser.get("/metrics").text
    assert 'bff_requests_total{route="/api",status="200"} 2.0' in text
    assert 'bff_logins_total{outcome="success",reason=""} 1.0' in text
    assert 'bff_logins_total{outcome="failure",reason="unknown_state"} 1.0' in text
    assert 'bff_token_refreshes_total{outcome="success"} 1.0' in text
    assert 'bff_upstream_latency_seconds_count{route="/api"} 2.0' in text


def test_gateway_pages_carry_security_headers_and_no_store(ops_stack: Stack) -> None:
    browser = ops_stack.browser()
    for response in (browser.get("/bff/user", headers={"X-CSRF": "1"}),
                     browser.get("/bff/callback", headers={"Accept": "text/html"}),
                     browser.get("/bff/login")):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-request-id"]


def test_request_id_is_passed_on_to_the_upstream_and_back(ops_stack: Stack) -> None:
    browser = ops_stack.browser()
    ops_stack.login(browser)
    response = ops_stack.api(browser, "GET", "/api/x", headers={"X-Request-ID": "trace-123"})
    seen = {k.lower(): v for k, v in response.json()["headers"]}
    assert seen["x-request-id"] == "trace-123"
    assert response.headers["x-request-id"] == "trace-123"
