"""The demo's building blocks in-process: the mock provider's silent refresh, the SPA routes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from bff.app import create_app
from bff.config import Settings
from bff.demo import ACCESS_TOKEN_TTL, SPA_CSP, DemoProvider, demo_settings, spa_routes
from bff.demo_api import create_api
from bff.embedded_redis import EmbeddedRedis
from tests.support.asgi_server import ServerThread
from tests.support.clock import MovableClock
from tests.support.provider import find_free_port

from .mock_provider import login

# oidc-provider-mock runs on authlib names that authlib itself has deprecated.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:authlib"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:oidc_provider_mock"),
]

CSRF = {"X-CSRF": "1"}


@dataclass
class DemoParts:
    url: str
    clock: MovableClock
    settings: Settings
    provider: DemoProvider


@pytest.fixture
def parts() -> Iterator[DemoParts]:
    port = find_free_port()
    with (EmbeddedRedis() as redis, DemoProvider() as provider,
          ServerThread(create_api()) as api):
        settings = demo_settings(public_url=f"http://127.0.0.1:{port}", issuer=provider.issuer,
                                 redis_url=redis.url, api_url=api.url)
        clock = MovableClock()
        app = create_app(settings, clock=clock, extra_routes=spa_routes())
        with ServerThread(app, port=port) as gateway:
            yield DemoParts(gateway.url, clock, settings, provider)


def whoami(browser: httpx.Client, parts: DemoParts) -> dict[str, object]:
    response = browser.get(f"{parts.url}/api/whoami", headers=CSRF)
    assert response.status_code == 200, response.text
    token: dict[str, object] = response.json()["token"]
    return token


def test_demo_settings_are_complete_without_any_environment() -> None:
    settings = demo_settings(public_url="http://127.0.0.1:8080", issuer="http://127.0.0.1:9",
                             redis_url="unix:///tmp/x.sock", api_url="http://127.0.0.1:9000")
    assert settings.demo and settings.log_format == "console"
    assert settings.redirect_uri == "http://127.0.0.1:8080/bff/callback"
    assert [(r.prefix, r.upstream) for r in settings.routes] == [("/api", "http://127.0.0.1:9000")]
    assert 0 < settings.refresh_leeway < ACCESS_TOKEN_TTL


def test_the_gateway_refreshes_the_mock_providers_short_lived_tokens_again_and_again(
    parts: DemoParts,
) -> None:
    with httpx.Client(timeout=10) as browser:
        assert login(browser, parts.url).status_code == 302
        first = whoami(browser, parts)
        assert whoami(browser, parts)["fingerprint"] == first["fingerprint"]
        seen = [first]
        for _ in range(2):
            parts.clock.advance(ACCESS_TOKEN_TTL - parts.settings.refresh_leeway + 1)
            token = whoami(browser, parts)
            assert token["fingerprint"] not in [t["fingerprint"] for t in seen]
            claims = token["claims"]
            assert isinstance(claims, dict)
            assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == ACCESS_TOKEN_TTL
            seen.append(token)
        user = browser.get(f"{parts.url}/bff/user", headers=CSRF)
        assert user.status_code == 200 and user.json()["sub"] == "alice"


def test_the_demo_providers_access_tokens_name_a_key_of_its_jwks(parts: DemoParts) -> None:
    with httpx.Client(timeout=10) as browser:
        login(browser, parts.url)
        header = whoami(browser, parts)["header"]
    jwks = httpx.get(f"{parts.provider.issuer}/jwks").json()
    assert isinstance(header, dict) and header["alg"] == "RS256" and header["typ"] == "at+jwt"
    assert header["kid"] in [key["kid"] for key in jwks["keys"]]


def test_spa_files_are_served_with_the_strict_policy(parts: DemoParts) -> None:
    for path, media in [("/", "text/html"), ("/app.js", "text/javascript"),
                        ("/style.css", "text/css"), ("/favicon.svg", "image/svg+xml")]:
        response = httpx.get(parts.url + path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media)
        assert response.headers["content-security-policy"] == SPA_CSP
        assert response.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(parts.url + "/provider-base.html").status_code == 404


def test_the_provider_advertises_sign_up_and_serves_offline_pages(parts: DemoParts) -> None:
    metadata = httpx.get(f"{parts.provider.issuer}/.well-known/openid-configuration").json()
    assert metadata["issuer"] == parts.provider.issuer
    assert "create" in metadata["prompt_values_supported"]
    assert "refresh_token" in metadata["grant_types_supported"]
    assert metadata["end_session_endpoint"]
