"""Hostile cookies, callbacks and return URLs get a clear 4xx or a safe redirect, never a 500."""

from __future__ import annotations

from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit

import pytest

from tests.support.provider import follow_login
from tests.support.stack import Stack

OPEN_REDIRECTS = [
    "//evil.example", "https://evil.example", "http://evil.example/", "/\\evil.example",
    "\\\\evil.example", "/ /evil.example", "/\t/evil.example", "/\r/evil.example",
    "/\n/evil.example", "/\x0b/evil.example", "/./\\evil.example", "/.//evil.example",
    "/%2F%2Fevil.example", "%2F%2Fevil.example", "/%5Cevil.example", "/%09/evil.example",
    "/%252F%252Fevil.example", "javascript:alert(1)", "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>", "///evil.example", "/\\/evil.example",
    "evil.example", "@evil.example", "/..//evil.example", "/\u3000/evil.example",
]


def _cookies(response) -> list[str]:
    return [v for k, v in response.headers.multi_items() if k == "set-cookie"]


@pytest.mark.parametrize(
    "cookie",
    ["garbage", "v1.", "v1.abc.def", "v2.whatever", "v1." + "A" * 43 + ".forged-signature",
     "v1." + "x" * 5000, "\u00e9\u00e8", '"quoted"', "v1.%00.%00"],
)
def test_bad_session_cookies_are_simply_not_signed_in(stack: Stack, cookie: str) -> None:
    browser = stack.browser()
    response = stack.api(browser, "GET", "/bff/user",
                         headers={"Cookie": b"bff=" + cookie.encode()})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"


def test_a_tampered_valid_cookie_is_refused(stack: Stack) -> None:
    browser = stack.browser()
    stack.login(browser)
    good = browser.cookies["bff"]
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    other = stack.browser()
    other.cookies.set("bff", tampered)
    assert stack.api(other, "GET", "/bff/user").status_code == 401
    assert stack.api(browser, "GET", "/bff/user").status_code == 200


def test_oversized_cookie_header_is_refused_with_431(stack: Stack) -> None:
    response = stack.api(stack.browser(), "GET", "/bff/user",
                         headers={"Cookie": "junk=" + "x" * 9000})
    assert response.status_code == 431
    assert response.json()["error"] == "headers_too_large"


def test_callback_without_state_is_a_readable_400(stack: Stack) -> None:
    response = stack.browser().get("/bff/callback?code=abc", headers={"Accept": "text/html"})
    assert response.status_code == 400
    assert "text/html" in response.headers["content-type"]
    assert "bff=" not in " ".join(_cookies(response))


def test_callback_with_unknown_state_is_refused(stack: Stack) -> None:
    response = stack.browser().get("/bff/callback?code=abc&state=made-up",
                                   headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"] == "login_failed"


def test_callback_with_replayed_state_sets_no_cookie(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.get("/bff/login")
    final = follow_login(browser, start.headers["location"])
    first = browser.get(final)
    assert first.status_code == 302
    replay = browser.get(final, headers={"Accept": "application/json"})
    assert replay.status_code == 400
    assert not any(c.startswith("bff=") for c in _cookies(replay))


@pytest.mark.parametrize("param", ["state", "code"])
def test_callback_with_duplicated_parameter_is_refused(stack: Stack, param: str) -> None:
    browser = stack.browser()
    start = browser.get("/bff/login")
    final = follow_login(browser, start.headers["location"])
    query = parse_qs(urlsplit(final).query)
    duplicated = f"{final}&{param}={quote(query[param][0])}x"
    response = browser.get(duplicated, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert not any(c.startswith("bff=") for c in _cookies(response))


def test_callback_carried_into_another_browser_is_refused(stack: Stack) -> None:
    victim, attacker = stack.browser(), stack.browser()
    start = attacker.get("/bff/login")
    final = follow_login(attacker, start.headers["location"])
    response = victim.get(final, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert not any(c.startswith("bff=") for c in _cookies(response))
    assert stack.api(victim, "GET", "/bff/user").status_code == 401


def test_access_denied_from_the_provider_is_a_readable_page_without_cookie(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.get("/bff/login")
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    response = browser.get(f"/bff/callback?error=access_denied&state={state}",
                           headers={"Accept": "text/html"})
    assert response.status_code == 400
    assert "cancelled or refused" in response.text
    assert not any(c.startswith("bff=") for c in _cookies(response))
    assert [k for k in stack.infra.redis.client().keys("*") if b"tx:" in k] == []


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
def test_open_redirect_return_to_falls_back_to_the_root(stack: Stack, target: str) -> None:
    browser = stack.browser()
    start = browser.get("/bff/login", params={"returnTo": target})
    assert start.status_code == 302
    done = browser.get(follow_login(browser, start.headers["location"]))
    assert done.status_code == 302
    assert done.headers["location"] == "/"


def test_same_origin_return_to_is_kept(stack: Stack) -> None:
    browser = stack.browser()
    done = stack.login(browser, return_to=quote("/orders/42?tab=items#top", safe=""))
    assert done.headers["location"] == "/orders/42?tab=items#top"


def test_many_pending_logins_never_pile_up_cookies(stack: Stack) -> None:
    browser = stack.browser()
    for _ in range(25):
        assert browser.get("/bff/login").status_code == 302
    assert len(list(browser.cookies.jar)) == 1


def _callback_with(final: str, iss: str | None) -> str:
    parts = urlsplit(final)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "iss"]
    if iss is not None:
        query.append(("iss", iss))
    return parts._replace(query=urlencode(query)).geturl()


def test_callback_naming_another_issuer_is_refused(stack: Stack) -> None:
    """RFC 9207 mix-up defence: the authorization response's iss must be our provider."""
    browser = stack.browser()
    start = browser.get("/bff/login")
    final = follow_login(browser, start.headers["location"])
    assert parse_qs(urlsplit(final).query)["iss"] == [stack.provider.issuer]
    response = browser.get(_callback_with(final, "https://evil.example"),
                           headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert not any(c.startswith("bff=") for c in _cookies(response))


def test_callback_without_iss_is_refused_when_the_provider_always_sends_it(stack: Stack) -> None:
    assert stack.provider.discovery()["authorization_response_iss_parameter_supported"] is True
    browser = stack.browser()
    start = browser.get("/bff/login")
    final = follow_login(browser, start.headers["location"])
    response = browser.get(_callback_with(final, None), headers={"Accept": "application/json"})
    assert response.status_code == 400
