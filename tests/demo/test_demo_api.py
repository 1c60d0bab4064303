"""The sample API alone: bearer required, what it shows of a token, items validated."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from bff.demo_api import MAX_ITEMS, MAX_TEXT_LENGTH, create_api, unverified_jwt
from tests.support.provider import REPO_ROOT, find_free_port

Api = httpx.AsyncClient
OPAQUE = "opaque-access-token-0123456789abcdefghijklmnopqrstuvwxyz"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_jwt(claims: dict[str, object], signature: str = "c2lnbmF0dXJlLW5vdC1jaGVja2Vk") -> str:
    return f"{_b64({'alg': 'RS256', 'kid': 'k1', 'typ': 'at+jwt'})}.{_b64(claims)}.{signature}"


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_api())
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


def bearer(token: str = OPAQUE) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/whoami", "/items", "/time", "/no-such-thing"])
@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz",
                                           "bearerish abc"])
async def test_every_endpoint_refuses_a_request_without_a_bearer_token(
    api: Api, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await api.get(path, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    assert response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_posting_an_item_without_a_bearer_token_is_refused_and_stores_nothing(
    api: Api,
) -> None:
    assert (await api.post("/items", json={"text": "sneaky"})).status_code == 401
    assert (await api.get("/items", headers=bearer())).json() == {"items": []}


async def test_healthz_needs_no_token(api: Api) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}


async def test_whoami_describes_an_opaque_token_without_echoing_it(api: Api) -> None:
    response = await api.get("/whoami", headers=bearer())
    assert response.status_code == 200
    token = response.json()["token"]
    assert token["kind"] == "opaque"
    assert token["length"] == len(OPAQUE)
    assert token["prefix"] == OPAQUE[:4] + "…"
    assert len(token["fingerprint"]) == 16
    assert "claims" not in token
    assert OPAQUE not in response.text and OPAQUE[:12] not in response.text


async def test_whoami_decodes_a_jwt_without_verifying_it_and_says_so(api: Api) -> None:
    now = int(time.time())
    jwt = make_jwt({"sub": "alice", "iat": now, "exp": now + 40, "scope": "openid"})
    response = await api.get("/whoami", headers=bearer(jwt))
    token = response.json()["token"]
    assert token["kind"] == "jwt"
    assert token["signature_verified"] is False
    assert "WITHOUT verifying" in token["note"]
    assert token["claims"]["sub"] == "alice"
    assert token["header"] == {"alg": "RS256", "kid": "k1", "typ": "at+jwt"}
    assert 35 <= token["expires_in"] <= 40
    assert token["exp_iso"].endswith("Z")
    assert jwt not in response.text
    assert jwt.rsplit(".", 1)[1] not in response.text  # the signature is never echoed


async def test_whoami_remembers_when_it_first_saw_each_token(api: Api) -> None:
    first = (await api.get("/whoami", headers=bearer())).json()["token"]
    again = (await api.get("/whoami", headers=bearer())).json()["token"]
    other = (await api.get("/whoami", headers=bearer(OPAQUE + "x"))).json()["token"]
    assert again["fingerprint"] == first["fingerprint"]
    assert again["first_seen"] == first["first_seen"]
    assert other["fingerprint"] != first["fingerprint"]


async def test_whoami_reports_whether_cookies_or_the_csrf_header_reached_the_api(api: Api) -> None:
    clean = (await api.get("/whoami", headers=bearer())).json()["request"]
    assert clean["cookie_received"] is False and clean["csrf_header_received"] is False
    leaky = (await api.get("/whoami", headers={**bearer(), "Cookie": "bff=x", "X-CSRF": "1"})).json()
    assert leaky["request"]["cookie_received"] is True
    assert leaky["request"]["csrf_header_received"] is True
    assert "bff=x" not in json.dumps(leaky)


@pytest.mark.parametrize("token", ["a.b", "x.y.z", "e30.e30.sig", "bm90IGpzb24.e30.sig", "..."])
def test_strings_that_only_look_like_jwts_are_treated_as_opaque(token: str) -> None:
    assert unverified_jwt(token) is None


async def test_adding_items_stores_them_in_order_with_the_author_from_the_token(api: Api) -> None:
    jwt = make_jwt({"sub": "alice", "name": "Alice Example"})
    first = await api.post("/items", json={"text": "  first  "}, headers=bearer(jwt))
    assert first.status_code == 201
    assert first.json()["text"] == "first"
    assert first.json()["author"] == "Alice Example"
    second = await api.post("/items", json={"text": "second"}, headers=bearer())
    assert second.json()["author"] is None
    items = (await api.get("/items", headers=bearer())).json()["items"]
    assert [item["text"] for item in items] == ["first", "second"]
    assert items[0]["id"] < items[1]["id"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"text": ""}, 422),
        ({"text": "   "}, 422),
        ({"text": "x" * (MAX_TEXT_LENGTH + 1)}, 422),
        ({"text": 42}, 422),
        ({"text": None}, 422),
        ({"text": ["a"]}, 422),
        ({"words": "hello"}, 422),
        (["text", "hello"], 422),
        ({"text": "bell\x07"}, 422),
    ],
)
async def test_invalid_items_are_refused_with_a_json_error(
    api: Api, body: object, status: int
) -> None:
    response = await api.post("/items", json=body, headers=bearer())
    assert response.status_code == status
    assert response.json()["error"] == "invalid_item"
    assert (await api.get("/items", headers=bearer())).json() == {"items": []}


async def test_an_item_of_exactly_the_maximum_length_is_accepted(api: Api) -> None:
    response = await api.post("/items", json={"text": "é" * MAX_TEXT_LENGTH}, headers=bearer())
    assert response.status_code == 201


async def test_items_must_be_json_and_small(api: Api) -> None:
    not_json = await api.post("/items", content=b"{nope", headers={**bearer(),
                                                            "Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"] == "invalid_json"
    form = await api.post("/items", data={"text": "hello"}, headers=bearer())
    assert form.status_code == 415
    huge = await api.post("/items", content=json.dumps({"text": "x" * 10_000}).encode(),
                    headers={**bearer(), "Content-Type": "application/json"})
    assert huge.status_code == 413 and huge.json()["error"] == "too_large"


async def test_the_list_keeps_only_the_newest_items(api: Api) -> None:
    for number in range(MAX_ITEMS + 5):
        added = await api.post("/items", json={"text": f"item {number}"}, headers=bearer())
        assert added.status_code == 201
    items = (await api.get("/items", headers=bearer())).json()["items"]
    assert len(items) == MAX_ITEMS
    assert items[0]["text"] == "item 5" and items[-1]["text"] == f"item {MAX_ITEMS + 4}"


async def test_time_reports_the_api_clock(api: Api) -> None:
    body = (await api.get("/time", headers=bearer())).json()
    assert abs(body["now"] - time.time()) < 5


def test_python_m_bff_demo_api_serves_on_the_given_port_and_stops_on_sigint() -> None:
    port = find_free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFF_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bff.demo_api", "--port", str(port)], cwd=REPO_ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "demo API did not start"
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/whoami").status_code == 401
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
