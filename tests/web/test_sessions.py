"""Users see and end their sessions: devices, revocation, logout everywhere, binding, audit."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack


def _sessions(stack: Stack, browser: httpx.Client) -> list[dict[str, Any]]:
    response = stack.api(browser, "GET", "/bff/sessions")
    assert response.status_code == 200
    sessions: list[dict[str, Any]] = response.json()["sessions"]
    return sessions


def test_two_browsers_see_each_other_in_the_session_list(stack: Stack) -> None:
    laptop = stack.browser(user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
    phone = stack.browser(user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 18_0) Safari/605.1")
    stack.login(laptop)
    stack.login(phone)
    listed = _sessions(stack, laptop)
    assert len(listed) == 2
    assert [s["current"] for s in listed] == [True, False]
    assert {s["device"] for s in listed} == {"Firefox on Linux", "Safari on iPhone"}
    assert all(s["ip"] == "127.0.0.1" and s["created"] and s["last_seen"] for s in listed)
    cookie_id = laptop.cookies["bff"].split(".")[1]
    assert all(cookie_id not in s["id"] for s in listed)
    assert [s["current"] for s in _sessions(stack, phone)] == [False, True]


def test_deleting_one_session_ends_only_it_and_revokes_its_refresh_token(stack: Stack) -> None:
    first, second = stack.browser(), stack.browser()
    stack.login(first)
    stack.login(second)
    other = next(s for s in _sessions(stack, first) if not s["current"])
    response = stack.api(first, "DELETE", f"/bff/sessions/{other['id']}")
    assert response.status_code == 204
    assert stack.api(second, "GET", "/bff/user").status_code == 401
    assert stack.api(first, "GET", "/bff/user").status_code == 200
    assert stack.provider.stats()["revocations"] == 1
    assert len(_sessions(stack, first)) == 1


def test_another_users_session_cannot_be_deleted(stack: Stack) -> None:
    alice, bob = stack.browser(), stack.browser()
    stack.login(alice, username="alice")
    stack.login(bob, username="bob")
    bobs = _sessions(stack, bob)[0]["id"]
    response = stack.api(alice, "DELETE", f"/bff/sessions/{bobs}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert stack.api(bob, "GET", "/bff/user").status_code == 200


def test_logout_all_ends_every_device_and_revokes_every_refresh_token(stack: Stack) -> None:
    first, second, bob = stack.browser(), stack.browser(), stack.browser()
    stack.login(first, username="alice")
    stack.login(second, username="alice")
    stack.login(bob, username="bob")
    response = stack.api(first, "POST", "/bff/logout-all")
    assert response.status_code == 200
    assert response.json()["ended"] == 2
    assert stack.api(first, "GET", "/bff/user").status_code == 401
    assert stack.api(second, "GET", "/bff/user").status_code == 401
    assert stack.api(bob, "GET", "/bff/user").status_code == 200
    assert stack.provider.stats()["revocations"] == 2


def test_a_changed_user_agent_ends_a_bound_session(stack: Stack) -> None:
    browser = stack.browser()
    stack.login(browser)
    stolen = stack.browser(user_agent="curl/8.0")
    stolen.cookies.set("bff", browser.cookies["bff"])
    assert stack.api(stolen, "GET", "/bff/user").status_code == 401
    assert stack.api(browser, "GET", "/bff/user").status_code == 401  # the session is over


def test_without_binding_a_changed_user_agent_is_tolerated(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(BFF_SESSION_BINDING="none")
    browser = stack.browser()
    stack.login(browser)
    other = stack.browser(user_agent="Something Else/1.0")
    other.cookies.set("bff", browser.cookies["bff"])
    assert stack.api(other, "GET", "/bff/user").status_code == 200


def test_ip_binding_uses_the_forwarded_address_only_from_trusted_proxies(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(BFF_SESSION_BINDING="ip", BFF_TRUSTED_PROXIES="127.0.0.1")
    browser = stack.browser()
    browser.headers["X-Forwarded-For"] = "203.0.113.7"
    stack.login(browser)
    assert _sessions(stack, browser)[0]["ip"] == "203.0.113.7"
    browser.headers["X-Forwarded-For"] = "198.51.100.9"
    assert stack.api(browser, "GET", "/bff/user").status_code == 401


def test_spoofed_forwarded_for_is_ignored_without_trusted_proxies(stack: Stack) -> None:
    browser = stack.browser()
    browser.headers["X-Forwarded-For"] = "203.0.113.7"
    stack.login(browser)
    assert _sessions(stack, browser)[0]["ip"] == "127.0.0.1"


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="bff.audit")
    logging.getLogger("bff").propagate = True
    return caplog


def test_audit_events_carry_the_right_fields_and_no_secrets(
    stack: Stack, audit_lines: pytest.LogCaptureFixture
) -> None:
    browser = stack.browser()
    stack.login(browser)
    cookie = browser.cookies["bff"]
    stack.api(browser, "POST", "/bff/logout")
    records = [r for r in audit_lines.records if r.name == "bff.audit"]
    events = {r.getMessage(): r.__dict__ for r in records}
    assert {"login.success", "logout.local"} <= set(events)
    login = events["login.success"]
    assert login["sub"] == "alice" and login["ip"] == "127.0.0.1" and login["session"]
    assert login["user_agent"] and login["request_id"]
    from bff.logs import JsonFormatter

    rendered = "\n".join(JsonFormatter().format(r) for r in records)
    assert cookie not in rendered and cookie.split(".")[1] not in rendered
    assert "eyJ" not in rendered
    assert all(json.loads(line)["event"] for line in rendered.splitlines())
