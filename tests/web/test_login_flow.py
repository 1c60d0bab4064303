"""Logging in through the real provider, holding the session server-side, logging out."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from tests.support.stack import Stack


def test_login_sets_only_an_opaque_httponly_cookie_and_returns_to_the_page(stack: Stack) -> None:
    browser = stack.browser()
    done = stack.login(browser, return_to="/app/page")
    assert done.status_code == 302
    assert done.headers["location"] == "/app/page"
    set_cookie = [v for k, v in done.headers.multi_items() if k == "set-cookie"]
    session_cookie = next(c for c in set_cookie if c.startswith("bff="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert "Path=/" in session_cookie
    value = session_cookie.split(";")[0].split("=", 1)[1]
    assert len(value) < 200 and "eyJ" not in value  # no JWT inside


def test_user_endpoint_answers_the_claims_with_sid_and_expiry(stack: Stack) -> None:
    browser = stack.browser()
    stack.login(browser, username="alice")
    response = stack.api(browser, "GET", "/bff/user")
    assert response.status_code == 200
    body = response.json()
    assert body["sub"] == "alice"
    assert body["email"] == "alice@example.test"
    assert body["sid"] and body["session_expires_at"] > 0
    assert "nonce" not in body and "aud" not in body
    assert response.headers["cache-control"] == "no-store"


def test_user_endpoint_without_session_is_401_in_contract_shape(stack: Stack) -> None:
    response = stack.api(stack.browser(), "GET", "/bff/user")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    assert response.json()["detail"]


def test_user_endpoint_without_csrf_header_is_403(stack: Stack) -> None:
    browser = stack.browser()
    stack.login(browser)
    response = browser.get("/bff/user")
    assert response.status_code == 403
    assert response.json()["error"] == "csrf"


def test_no_token_reaches_the_browser_or_sits_in_redis_in_plaintext(stack: Stack) -> None:
    browser = stack.browser()
    seen: list[str] = []
    browser.event_hooks["response"] = [lambda r: seen.append(r.read().decode("latin-1")
                                                             + str(r.headers))]
    stack.login(browser)
    seen.append(stack.api(browser, "GET", "/bff/user").text)
    dump = b""
    redis = stack.infra.redis.client()
    for key in redis.keys("*"):
        kind = redis.type(key)
        if kind == b"hash":
            dump += b"".join(k + v for k, v in redis.hgetall(key).items())
        elif kind == b"string":
            dump += redis.get(key) or b""
    assert dump, "the session should be in Redis"
    gateway_pages = [s for s in seen if "bff" in s]
    assert not any(re.search(r"eyJ[\w-]+\.[\w-]+\.", page) for page in gateway_pages[-2:])
    assert b"eyJ" not in dump  # no JWT (ID token, JWT access token) in plaintext


def test_redis_keys_never_contain_the_cookie_session_id(stack: Stack) -> None:
    browser = stack.browser()
    stack.login(browser)
    cookie = browser.cookies["bff"]
    session_id = cookie.split(".")[1]
    keys = b" ".join(stack.infra.redis.client().keys("*")).decode()
    assert session_id not in keys


def test_several_tabs_logging_in_at_once_all_succeed_with_one_login_cookie(stack: Stack) -> None:
    browser = stack.browser()
    starts = [browser.get(f"/bff/login?returnTo=/tab{i}") for i in range(5)]
    assert all(s.status_code == 302 for s in starts)
    login_cookies = [c for c in browser.cookies.jar if c.name.startswith("bff-login")]
    assert len(login_cookies) == 1
    header = "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar)
    assert len(header) < 300
    from tests.support.provider import follow_login

    finals = [follow_login(browser, s.headers["location"]) for s in reversed(starts)]
    results = [browser.get(url) for url in finals]
    assert [r.headers["location"] for r in results] == [f"/tab{i}" for i in reversed(range(5))]


def test_login_redirect_carries_state_nonce_and_pkce_s256(stack: Stack) -> None:
    response = stack.browser().get("/bff/login")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
    assert query["redirect_uri"] == [f"{stack.url}/bff/callback"]


def test_logout_revokes_the_refresh_token_at_the_provider_and_clears_the_cookie(stack: Stack) -> None:
    browser = stack.browser()
    stack.login(browser)
    assert stack.provider.stats()["revocations"] == 0
    response = stack.api(browser, "POST", "/bff/logout")
    assert response.status_code == 200
    logout_url = response.json()["logout_url"]
    assert logout_url.startswith(stack.provider.issuer)
    query = parse_qs(urlsplit(logout_url).query)
    assert query["id_token_hint"][0].startswith("eyJ")
    assert query["post_logout_redirect_uri"] == [f"{stack.url}/"]
    assert stack.provider.stats()["revocations"] == 1
    assert "bff" not in browser.cookies
    assert stack.api(browser, "GET", "/bff/user").status_code == 401


def test_get_logout_without_the_right_sid_does_not_log_out(stack: Stack) -> None:
    browser = stack.browser()
    stack.login(browser)
    for query in ("", "?sid=", "?sid=someone-elses"):
        response = browser.get(f"/bff/logout{query}", headers={"Accept": "text/html"})
        assert response.status_code == 400
    assert stack.api(browser, "GET", "/bff/user").status_code == 200


def test_get_logout_with_the_sid_logs_out_and_redirects_to_the_provider(stack: Stack) -> None:
    browser = stack.browser()
    stack.login(browser)
    sid = stack.api(browser, "GET", "/bff/user").json()["sid"]
    response = browser.get(f"/bff/logout?sid={sid}")
    assert response.status_code == 302
    assert response.headers["location"].startswith(stack.provider.issuer)
    assert stack.api(browser, "GET", "/bff/user").status_code == 401


def test_idle_timeout_ends_the_session(make_stack) -> None:
    stack = make_stack(BFF_SESSION_IDLE_TIMEOUT="600")
    browser = stack.browser()
    stack.login(browser)
    stack.clock.advance(500)
    assert stack.api(browser, "GET", "/bff/user").status_code == 200
    stack.clock.advance(500)  # 500 s since the last request: still inside the idle window
    assert stack.api(browser, "GET", "/bff/user").status_code == 200
    stack.clock.advance(601)
    assert stack.api(browser, "GET", "/bff/user").status_code == 401


def test_absolute_timeout_ends_an_active_session(make_stack) -> None:
    stack = make_stack(BFF_SESSION_IDLE_TIMEOUT="600", BFF_SESSION_ABSOLUTE_TIMEOUT="1000")
    browser = stack.browser()
    stack.login(browser)
    for _ in range(3):
        stack.clock.advance(300)
        assert stack.api(browser, "GET", "/bff/user").status_code == 200
    stack.clock.advance(300)
    assert stack.api(browser, "GET", "/bff/user").status_code == 401


def test_login_replaces_an_existing_session_with_a_new_id(stack: Stack) -> None:
    browser = stack.browser()
    stack.login(browser)
    first = browser.cookies["bff"]
    stack.login(browser)
    second = browser.cookies["bff"]
    assert first != second
    stale = stack.browser()
    stale.cookies.set("bff", first)
    assert stack.api(stale, "GET", "/bff/user").status_code == 401


def test_login_passes_sign_up_and_hints_on_only_when_the_provider_supports_them(stack: Stack) -> None:
    # This provider does not list prompt_values_supported: the standard prompts pass,
    # "create" (Initiating User Registration) and unknown values do not.
    assert "prompt_values_supported" not in stack.provider.discovery()
    browser = stack.browser()
    for prompt, expected in (("login", ["login"]), ("create", None), ("bogus", None)):
        response = browser.get("/bff/login", params={"prompt": prompt, "login_hint": "alice"})
        query = parse_qs(urlsplit(response.headers["location"]).query)
        assert query["login_hint"] == ["alice"]
        assert query.get("prompt") == expected


def test_extra_authorization_parameters_are_sent_to_the_provider(make_stack) -> None:
    stack = make_stack(BFF_EXTRA_AUTH_PARAMS="access_type=offline&audience=https://api.example")
    response = stack.browser().get("/bff/login")
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["access_type"] == ["offline"] and query["audience"] == ["https://api.example"]
