"""Forwarder.http through real servers: headers, errors, limits and the 401 retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from .conftest import RunningGateway, RunningUpstream


def seen_headers(response: httpx.Response) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        headers.setdefault(name, []).append(value)
    return headers


async def test_bearer_token_arrives_at_the_upstream(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/echo")
    assert response.status_code == 200
    assert seen_headers(response)["authorization"] == ["Bearer token-1"]


async def test_route_without_token_forwards_no_authorization(client: httpx.AsyncClient) -> None:
    response = await client.get("/public/echo", headers={"Authorization": "Bearer browser"})
    assert "authorization" not in seen_headers(response)


async def test_browser_cookies_and_authorization_do_not_reach_the_upstream(
    client: httpx.AsyncClient, upstream: RunningUpstream,
) -> None:
    response = await client.get(
        "/api/echo", headers={"Cookie": "bff=session-id; other=1", "Authorization": "Basic eDp5"}
    )
    headers = seen_headers(response)
    assert "cookie" not in headers
    assert headers["authorization"] == ["Bearer token-1"]
    assert headers["host"] == [f"127.0.0.1:{upstream.server.port}"]  # the upstream's own


async def test_hop_by_hop_and_connection_named_headers_are_stripped_towards_the_upstream(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/echo", headers={
        "Connection": "keep-alive, X-Private-Hop", "X-Private-Hop": "1", "Keep-Alive": "timeout=9",
        "TE": "trailers", "Proxy-Authorization": "Basic eDp5", "X-CSRF": "1", "X-Kept": "yes",
    })
    headers = seen_headers(response)
    for name in ("x-private-hop", "keep-alive", "te", "proxy-authorization", "x-csrf"):
        assert name not in headers
    assert headers["x-kept"] == ["yes"]


async def test_hop_by_hop_and_connection_named_headers_are_stripped_towards_the_browser(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/hop")
    assert response.text == "ok"
    for name in ("x-upstream-private", "keep-alive", "proxy-authenticate", "upgrade", "trailer"):
        assert name not in response.headers
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert response.headers["x-kept"] == "yes"
    assert response.headers["content-length"] == "2"


async def test_spoofed_identity_headers_are_removed_and_real_ones_set(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/user/echo", headers=[
        ("X-Forwarded-User", "mallory"), ("X_Forwarded_User", "mallory"),
        ("x-forwarded-email", "m@evil"), ("X-Auth-Request-User", "mallory"),
        ("Remote-User", "mallory"), ("X_Remote_User", "mallory"), ("X-WEBAUTH-USER", "mallory"),
    ])
    headers = seen_headers(response)
    assert headers["x-forwarded-user"] == ["alice"]
    assert headers["x-forwarded-email"] == ["a@example.org"]
    assert "mallory" not in str(headers) and "m@evil" not in str(headers)


async def test_identity_headers_are_not_set_on_routes_without_user_headers(
    client: httpx.AsyncClient,
) -> None:
    headers = seen_headers(await client.get("/api/echo", headers={"X-Forwarded-User": "mallory"}))
    assert "x-forwarded-user" not in headers


async def test_forwarded_headers_for_an_untrusted_peer(client: httpx.AsyncClient) -> None:
    headers = seen_headers(await client.get("/api/echo", headers={
        "X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil",
    }))
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-host"] == [client.base_url.netloc.decode()]


async def test_forwarded_for_of_a_trusted_peer_is_extended(
    client: httpx.AsyncClient, gateway: RunningGateway,
) -> None:
    gateway.options.trusted = True
    headers = seen_headers(await client.get("/api/echo", headers={"X-Forwarded-For": "1.2.3.4"}))
    assert headers["x-forwarded-for"] == ["1.2.3.4, 127.0.0.1"]


async def test_request_id_is_passed_through_or_created(client: httpx.AsyncClient) -> None:
    passed = seen_headers(await client.get("/api/echo", headers={"X-Request-ID": "req-42"}))
    assert passed["x-request-id"] == ["req-42"]
    created = seen_headers(await client.get("/api/echo", headers={"X-Request-ID": "bad id!"}))
    assert len(created["x-request-id"][0]) == 32


async def test_prefix_is_stripped_and_the_upstream_base_path_added(
    client: httpx.AsyncClient,
) -> None:
    seen = (await client.get("/api/items/echo?q=a%2Fb&x=1")).json()
    assert seen["raw_path"] == "/base/items/echo"
    assert seen["query"] == "q=a%2Fb&x=1"
    longest = (await client.get("/api/v2/echo")).json()
    assert longest["raw_path"] == "/v2/echo"
    kept = (await client.get("/keep/echo")).json()
    assert kept["raw_path"] == "/keep/echo"


async def test_percent_encodings_reach_the_upstream_as_sent(client: httpx.AsyncClient) -> None:
    seen = (await client.get("/api/a%2Bb/c%20d/%7e/echo")).json()
    assert seen["raw_path"] == "/base/a%2Bb/c%20d/%7e/echo"


async def _raw_request(gateway: RunningGateway, target: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.server.port)
    writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


async def test_traversal_through_the_proxy_is_answered_400_and_never_forwarded(
    gateway: RunningGateway, upstream: RunningUpstream,
) -> None:
    for target in (b"/api/../bff/user", b"/api/%2e%2e/secret", b"/api/%252e%252e/x",
                   b"/api/a%2fb", b"/api//x", b"/api/x%00", b"/%61pi/echo"):
        answer = await _raw_request(gateway, target)
        assert answer.startswith(b"HTTP/1.1 400"), (target, answer)
        assert b'"error": "bad_request"' in answer
    assert upstream.app.requests == []


async def test_upstream_down_is_answered_502_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/down/echo")
    assert response.status_code == 502
    assert response.json()["error"] == "upstream_error"
    assert response.headers["cache-control"] == "no-store"


async def test_slow_upstream_is_answered_504_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/slow/sleep")
    assert response.status_code == 504
    assert response.json() == {
        "error": "upstream_timeout", "detail": "The upstream service did not answer in time."
    }


async def test_declared_body_over_the_limit_is_answered_413_before_the_upstream_is_called(
    client: httpx.AsyncClient, upstream: RunningUpstream,
) -> None:
    response = await client.post("/small/upload", content=b"x" * 1001)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert upstream.app.uploads == []


async def test_streamed_body_over_the_limit_is_cut_off_with_413(
    client: httpx.AsyncClient, upstream: RunningUpstream,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 100

    response = await client.post("/small/upload", content=chunks())
    assert response.status_code == 413
    assert all(count < 0 or count <= 1000 for count in upstream.app.uploads)


async def test_body_within_the_limit_is_forwarded(client: httpx.AsyncClient) -> None:
    response = await client.post("/small/upload", content=b"x" * 1000)
    assert response.json() == {"received": 1000}


async def test_upstream_401_is_retried_once_with_the_refreshed_token(
    client: httpx.AsyncClient, gateway: RunningGateway, upstream: RunningUpstream,
) -> None:
    gateway.options.bearer, gateway.options.refreshed = "stale", "fresh"
    response = await client.post("/api/auth", json={"order": 7})
    assert response.status_code == 200
    assert response.json()["body"] == '{"order":7}'
    assert upstream.app.auth_calls == ["Bearer stale", "Bearer fresh"]
    assert gateway.options.refresh_calls == 1


async def test_upstream_401_passes_through_when_no_new_token_comes(
    client: httpx.AsyncClient, gateway: RunningGateway, upstream: RunningUpstream,
) -> None:
    gateway.options.bearer, gateway.options.refreshed = "stale", None
    response = await client.get("/api/auth")
    assert response.status_code == 401
    assert response.json() == {"upstream": "expired"}
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert upstream.app.auth_calls == ["Bearer stale"]
    assert gateway.options.refresh_calls == 1


async def test_upstream_401_after_the_retry_is_passed_through_without_a_second_retry(
    client: httpx.AsyncClient, gateway: RunningGateway, upstream: RunningUpstream,
) -> None:
    gateway.options.bearer, gateway.options.refreshed = "stale", "also-stale"
    response = await client.get("/api/auth")
    assert response.status_code == 401
    assert upstream.app.auth_calls == ["Bearer stale", "Bearer also-stale"]


async def test_streamed_body_is_not_replayed_so_its_401_passes_through(
    client: httpx.AsyncClient, gateway: RunningGateway, upstream: RunningUpstream,
) -> None:
    gateway.options.bearer, gateway.options.refreshed = "stale", "fresh"

    async def chunks() -> AsyncIterator[bytes]:
        yield b"part"

    response = await client.post("/api/auth", content=chunks())
    assert response.status_code == 401
    assert gateway.options.refresh_calls == 0


async def test_upstream_set_cookie_is_not_replayed_to_another_request(
    gateway: RunningGateway, upstream: RunningUpstream,
) -> None:
    async with httpx.AsyncClient(base_url=gateway.server.base_url) as alice:
        response = await alice.get("/api/set-cookie?alice-secret")
        assert response.headers["set-cookie"] == "upstream_sid=alice-secret; Path=/; HttpOnly"
    async with httpx.AsyncClient(base_url=gateway.server.base_url) as bob:
        for _ in range(3):
            headers = seen_headers(await bob.get("/api/echo"))
            assert "cookie" not in headers
    assert all("alice-secret" not in str(r["headers"]) for r in upstream.app.requests)


async def test_upstream_that_never_answers_the_request_is_answered_504(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/blackhole/anything")
    assert response.status_code == 504
    assert response.json()["error"] == "upstream_timeout"
