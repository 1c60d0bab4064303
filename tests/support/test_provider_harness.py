"""Self-test of the real OpenID Provider harness (tests/support/provider.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from .provider import (
    ProviderConfig,
    ProviderError,
    ProviderProcess,
    alogin_through_provider,
    find_free_port,
    follow_login,
    login_through_provider,
)

CLIENT_ID = "bff-test"
CLIENT_SECRET = "bff-test-secret-0123456789abcdef"
SCOPE = "openid profile email offline_access"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class _Receiver:
    """A tiny local HTTP server: records POSTed bodies; /bff/login redirects to ``login_target``;
    /cb answers 200 with the query string it got."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, list[str]]]] = []
        self.login_target = ""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                receiver.posts.append((self.path, form))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                path = urlsplit(self.path)
                if path.path == "/bff/login":
                    self.send_response(302)
                    self.send_header("location", receiver.login_target)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                body = json.dumps(parse_qs(path.query)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", find_free_port()), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _client_metadata(receiver: _Receiver) -> dict[str, Any]:
    return {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"{receiver.base}/cb"],
        "post_logout_redirect_uris": [f"{receiver.base}/"],
        "token_endpoint_auth_method": "client_secret_basic",
        "backchannel_logout_uri": f"{receiver.base}/backchannel",
        "backchannel_logout_session_required": True,
    }


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    with _Receiver() as r:
        yield r


def _start(receiver: _Receiver, **options: Any) -> ProviderProcess:
    return ProviderProcess(ProviderConfig(clients=[_client_metadata(receiver)], **options)).start()


@pytest.fixture
def op(receiver: _Receiver) -> Iterator[ProviderProcess]:
    with _start(receiver) as provider:
        yield provider


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt_payload(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    result: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return result


def _authorize_url(op: ProviderProcess, receiver: _Receiver) -> tuple[str, str, str, str]:
    """Returns (authorize URL, state, nonce, code_verifier)."""
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    challenge = _b64url(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": f"{receiver.base}/cb",
        "scope": SCOPE,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    endpoint = op.discovery()["authorization_endpoint"]
    return f"{endpoint}?{urlencode(params)}", state, nonce, verifier


def _token(op: ProviderProcess, **form: str) -> httpx.Response:
    return httpx.post(
        op.discovery()["token_endpoint"], data=form, auth=(CLIENT_ID, CLIENT_SECRET), timeout=10
    )


def _login(op: ProviderProcess, receiver: _Receiver, username: str = "alice") -> dict[str, Any]:
    """Authorization code + PKCE by hand; returns the token response."""
    url, state, nonce, verifier = _authorize_url(op, receiver)
    with httpx.Client(timeout=10) as client:
        final = follow_login(client, url, username)
    assert final.startswith(f"{receiver.base}/cb?")
    query = parse_qs(urlsplit(final).query)
    assert query["state"] == [state]
    assert query["iss"] == [op.issuer]
    response = _token(
        op,
        grant_type="authorization_code",
        code=query["code"][0],
        redirect_uri=f"{receiver.base}/cb",
        code_verifier=verifier,
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    claims = _jwt_payload(tokens["id_token"])
    assert claims["nonce"] == nonce
    return tokens


def _refresh(op: ProviderProcess, refresh_token: str) -> httpx.Response:
    return _token(op, grant_type="refresh_token", refresh_token=refresh_token)


def test_code_flow_refresh_and_revocation(op: ProviderProcess, receiver: _Receiver) -> None:
    assert op.startup_seconds is not None and op.startup_seconds < 20
    tokens = _login(op, receiver, "alice")
    assert {"id_token", "access_token", "refresh_token"} <= tokens.keys()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 300
    assert set(tokens["scope"].split()) >= {"openid", "profile", "email"}
    claims = _jwt_payload(tokens["id_token"])
    assert claims["iss"] == op.issuer
    assert claims["aud"] == CLIENT_ID
    assert claims["sub"] == "alice"
    assert claims["name"] == "User alice"
    assert claims["email"] == "alice@example.test"
    assert claims["sid"]
    assert op.token_active(tokens["access_token"])
    assert op.token_active(tokens["refresh_token"])
    assert not op.token_active("not-a-token")

    op.set_access_token_ttl(7)
    refreshed = _refresh(op, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    body = refreshed.json()
    assert body["access_token"] != tokens["access_token"]
    assert body["expires_in"] == 7
    # no rotation by default: the same refresh token keeps working
    assert body.get("refresh_token", tokens["refresh_token"]) == tokens["refresh_token"]
    assert op.token_active(tokens["refresh_token"])

    stats = op.stats()
    assert stats["grants"]["authorization_code"] == 1
    assert stats["grants"]["refresh_token"] == 1
    assert stats["grant_errors"] == []

    revoke = httpx.post(
        op.discovery()["revocation_endpoint"],
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        auth=(CLIENT_ID, CLIENT_SECRET),
        timeout=10,
    )
    assert revoke.status_code == 200, revoke.text
    assert not op.token_active(tokens["refresh_token"])
    assert not op.token_active(body["access_token"])  # revoking the refresh token revokes the grant
    assert op.stats()["revocations"] == 1

    failed = _refresh(op, tokens["refresh_token"])
    assert failed.status_code == 400
    assert failed.json()["error"] == "invalid_grant"
    assert op.stats()["grant_errors"] == [
        {
            "error": "invalid_grant",
            "error_description": "grant request is invalid",
            "grant_type": "refresh_token",
        }
    ]
    op.reset_stats()
    assert op.stats()["grants"] == {"authorization_code": 0, "refresh_token": 0}


def test_rotated_refresh_token_reuse_fails(receiver: _Receiver) -> None:
    with _start(receiver, rotate_refresh_token=True, signing_algs=["ES256"]) as op:
        tokens = _login(op, receiver)
        header = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[0] + "=="))
        assert header["alg"] == "ES256"
        first = _refresh(op, tokens["refresh_token"])
        assert first.status_code == 200, first.text
        new_refresh = first.json()["refresh_token"]
        assert new_refresh != tokens["refresh_token"]
        assert not op.token_active(tokens["refresh_token"])
        assert op.token_active(new_refresh)

        reuse = _refresh(op, tokens["refresh_token"])
        assert reuse.status_code == 400
        assert reuse.json()["error"] == "invalid_grant"
        # reuse of a consumed refresh token revokes the whole grant
        assert not op.token_active(new_refresh)
        stats = op.stats()
        assert stats["grants"]["refresh_token"] == 1
        assert [e["grant_type"] for e in stats["grant_errors"]] == ["refresh_token"]


def test_backchannel_logout(op: ProviderProcess, receiver: _Receiver) -> None:
    tokens = _login(op, receiver, "bob")
    sid = _jwt_payload(tokens["id_token"])["sid"]
    outcome = op.send_backchannel_logout(CLIENT_ID, "bob", sid)
    assert outcome == {"client_id": CLIENT_ID, "sub": "bob", "sid": sid, "ok": True}
    assert len(receiver.posts) == 1
    path, form = receiver.posts[0]
    assert path == "/backchannel"
    claims = _jwt_payload(form["logout_token"][0])
    assert claims["events"] == {BACKCHANNEL_EVENT: {}}
    assert claims["sub"] == "bob"
    assert claims["sid"] == sid
    assert claims["iss"] == op.issuer
    assert claims["aud"] == CLIENT_ID
    assert "nonce" not in claims
    assert op.stats()["backchannel"] == [outcome]


def test_backchannel_logout_failure_is_reported(receiver: _Receiver) -> None:
    dead = f"http://127.0.0.1:{find_free_port()}/backchannel"
    client = {**_client_metadata(receiver), "backchannel_logout_uri": dead}
    with ProviderProcess(ProviderConfig(clients=[client])) as op:
        outcome = op.send_backchannel_logout(CLIENT_ID, "carol", "some-sid")
        assert outcome["ok"] is False
        assert outcome["error"]
        assert op.stats()["backchannel"] == [outcome]


def test_login_through_provider_sync_and_async(op: ProviderProcess, receiver: _Receiver) -> None:
    receiver.login_target = _authorize_url(op, receiver)[0]
    with httpx.Client(timeout=10) as client:
        response = login_through_provider(client, f"{receiver.base}/bff/login?return_to=/")
    assert response.status_code == 200
    assert set(response.json()) >= {"code", "state", "iss"}

    async def run() -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await alogin_through_provider(client, f"{receiver.base}/bff/login", "dave")

    receiver.login_target = _authorize_url(op, receiver)[0]
    response = asyncio.run(run())
    assert response.status_code == 200
    assert set(response.json()) >= {"code", "state", "iss"}


def test_second_login_reuses_provider_session(op: ProviderProcess, receiver: _Receiver) -> None:
    with httpx.Client(timeout=10) as client:
        follow_login(client, _authorize_url(op, receiver)[0], "erin")
        # the provider session cookie is in the jar: no login form this time
        url = _authorize_url(op, receiver)[0]
        first = client.get(url)
        assert first.is_redirect
        assert first.headers["location"].startswith(f"{receiver.base}/cb?code=")


def test_start_failure_reports_stderr() -> None:
    bad = ProviderConfig(clients=[{"client_id": "broken", "client_secret": "x"}])
    provider = ProviderProcess(bad)
    try:
        with pytest.raises(ProviderError, match="redirect_uris"):
            provider.start()
    finally:
        provider.stop()
