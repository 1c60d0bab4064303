"""Back-Channel Logout 1.0: the provider ends sessions; forged or replayed tokens end nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from tests.support.forged_provider import Rig
from tests.support.provider import logout_at_provider
from tests.support.stack import BCL_CLIENT_ID, Stack

EVENT = "http://schemas.openid.net/event/backchannel-logout"


def test_provider_logout_ends_only_the_session_with_that_sid(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(backchannel=True)
    first, second = stack.browser(), stack.browser()
    stack.login(first, username="alice")
    stack.login(second, username="alice")
    response = logout_at_provider(first, stack.provider.issuer)
    assert response.status_code in (200, 302, 303)
    sent = stack.provider.stats()["backchannel"]
    assert sent and all(item["ok"] for item in sent), sent
    assert stack.api(first, "GET", "/bff/user").status_code == 401
    assert stack.api(second, "GET", "/bff/user").status_code == 200


def test_provider_logout_by_sub_ends_every_session_of_that_user(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(backchannel=True)
    alice_1, alice_2, bob = stack.browser(), stack.browser(), stack.browser()
    stack.login(alice_1, username="alice")
    stack.login(alice_2, username="alice")
    stack.login(bob, username="bob")
    outcome = stack.provider.send_backchannel_logout(BCL_CLIENT_ID, "alice", None)
    assert outcome["ok"], outcome
    assert stack.api(alice_1, "GET", "/bff/user").status_code == 401
    assert stack.api(alice_2, "GET", "/bff/user").status_code == 401
    assert stack.api(bob, "GET", "/bff/user").status_code == 200


def _valid_claims(rig: Rig, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": rig.provider.issuer, "aud": rig.provider.client_id, "iat": now, "exp": now + 120,
        "jti": uuid.uuid4().hex, "events": {EVENT: {}}, "sub": "mallory", "sid": "op-sid-1",
    }
    for key, value in changes.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


@pytest.fixture
def logged_in(rig: Rig) -> httpx.Client:
    rig.provider.id_token = lambda nonce: rig.provider.sign(
        rig.provider.claims(nonce, sid="op-sid-1"))
    browser = httpx.Client(base_url=rig.gateway.url)
    assert rig.attempt(browser).status_code == 302
    return browser


def _alive(browser: httpx.Client) -> bool:
    return browser.get("/bff/user", headers={"X-CSRF": "1"}).status_code == 200


def _post(rig: Rig, token: str) -> httpx.Response:
    return httpx.post(f"{rig.gateway.url}/bff/backchannel-logout", data={"logout_token": token})


INVALID: dict[str, Callable[[Rig], str]] = {
    "bad_signature": lambda r: r.provider.sign(
        _valid_claims(r), key=RSAKey.generate_key(2048, parameters={"kid": "forged-1"})),
    "wrong_audience": lambda r: r.provider.sign(_valid_claims(r, aud="another-client")),
    "has_nonce": lambda r: r.provider.sign(_valid_claims(r, nonce="n")),
    "no_events": lambda r: r.provider.sign(_valid_claims(r, events=None)),
    "events_without_the_logout_event": lambda r: r.provider.sign(
        _valid_claims(r, events={"other": {}})),
    "expired": lambda r: r.provider.sign(_valid_claims(
        r, iat=int(time.time()) - 3600, exp=int(time.time()) - 3000)),
    "no_sub_and_no_sid": lambda r: r.provider.sign(_valid_claims(r, sub=None, sid=None)),
    "no_jti": lambda r: r.provider.sign(_valid_claims(r, jti=None)),
    "wrong_issuer": lambda r: r.provider.sign(_valid_claims(r, iss="https://evil.example")),
    "not_a_jwt": lambda r: "garbage",
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_logout_token_is_refused_and_ends_nothing(
    rig: Rig, logged_in: httpx.Client, case: str
) -> None:
    response = _post(rig, INVALID[case](rig))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert _alive(logged_in)
    logged_in.close()


def test_replayed_logout_token_is_refused(rig: Rig, logged_in: httpx.Client) -> None:
    token = rig.provider.sign(_valid_claims(rig, sid="some-other-sid"))
    assert _post(rig, token).status_code == 200
    assert _post(rig, token).status_code == 400
    assert _alive(logged_in)
    logged_in.close()


def test_valid_logout_token_ends_the_named_session(rig: Rig, logged_in: httpx.Client) -> None:
    assert _post(rig, rig.provider.sign(_valid_claims(rig))).status_code == 200
    assert not _alive(logged_in)
    logged_in.close()


def test_logout_token_for_another_users_sid_ends_nothing(rig: Rig, logged_in: httpx.Client) -> None:
    assert _post(rig, rig.provider.sign(_valid_claims(rig, sub="someone-else"))).status_code == 200
    assert _alive(logged_in)
    logged_in.close()


def test_backchannel_logout_needs_a_form_body(rig: Rig) -> None:
    response = httpx.post(f"{rig.gateway.url}/bff/backchannel-logout", json={"logout_token": "x"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
