"""OidcClient against a mocked provider (respx)."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey

from bff.errors import (
    InvalidGrant,
    OAuthError,
    ProviderError,
    ProviderUnavailable,
    TokenValidationError,
)
from bff.oidc import JwksCache, MetadataCache, OidcClient, TokenResponse

from .helpers import (
    CLIENT_ID,
    EC_KEY,
    ISSUER,
    NONCE,
    NOW,
    RSA_KEY,
    RSA_KEY_2,
    FakeClock,
    discovery,
    id_claims,
    jwks_json,
    logout_claims,
    mock_provider,
    sign,
)

REDIRECT = "https://app.example.com/bff/callback"
TOKENS = {
    "access_token": "AT-secret",
    "token_type": "Bearer",
    "expires_in": 300,
    "refresh_token": "RT-secret",
    "id_token": "ID-secret",
    "scope": "openid",
}




def make_client(http, router, *, doc=None, secret="s3cret", keys=(RSA_KEY,), mono=None):
    mock_provider(router, doc or discovery(), keys)
    mono = mono or FakeClock()
    metadata = MetadataCache(http, ISSUER, clock=mono)
    jwks = JwksCache(http, metadata, min_refetch_interval=30, clock=mono)
    return OidcClient(
        http,
        metadata,
        jwks,
        client_id=CLIENT_ID,
        client_secret=secret,
        redirect_uri=REDIRECT,
        scopes=["openid", "profile", "offline_access"],
        clock_skew=60,
        clock=lambda: NOW,
    )


def form(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode()))


def basic(request: httpx.Request) -> tuple[str, str]:
    scheme, _, value = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(value).decode().partition(":")
    return unquote(user), unquote(password)


# --- authorization URL -------------------------------------------------------------------


async def test_authorization_url_carries_the_code_flow_with_pkce(http, router):
    client = make_client(http, router)
    url = await client.authorization_url(state="st", nonce="no", code_challenge="ch")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{ISSUER}/auth"
    assert {k: v[0] for k, v in parse_qs(parts.query).items()} == {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "openid profile offline_access",
        "state": "st",
        "nonce": "no",
        "code_challenge": "ch",
        "code_challenge_method": "S256",
    }


async def test_authorization_url_keeps_a_query_the_endpoint_already_has(http, router):
    client = make_client(http, router, doc=discovery(authorization_endpoint=f"{ISSUER}/auth?p=b2c"))
    query = parse_qs(
        urlsplit(await client.authorization_url(state="st", nonce="no", code_challenge="ch")).query
    )
    assert query["p"] == ["b2c"] and query["state"] == ["st"]


async def test_prompt_is_passed_only_with_values_the_provider_lists(http, router):
    client = make_client(http, router, doc=discovery(prompt_values_supported=["none", "login"]))
    url = await client.authorization_url(
        state="s",
        nonce="n",
        code_challenge="c",
        extra={"prompt": "login consent", "login_hint": "a@example.com"},
    )
    query = parse_qs(urlsplit(url).query)
    assert query["prompt"] == ["login"] and query["login_hint"] == ["a@example.com"]


async def test_prompt_falls_back_to_common_values_when_the_provider_lists_none(http, router):
    client = make_client(http, router)
    url = await client.authorization_url(
        state="s", nonce="n", code_challenge="c", extra={"prompt": "bogus"}
    )
    assert "prompt" not in parse_qs(urlsplit(url).query)
    url = await client.authorization_url(
        state="s", nonce="n", code_challenge="c", extra={"prompt": "select_account"}
    )
    assert parse_qs(urlsplit(url).query)["prompt"] == ["select_account"]


async def test_extra_parameters_cannot_override_the_protocol_ones(http, router):
    client = make_client(http, router)
    with pytest.raises(ValueError, match="redirect_uri"):
        await client.authorization_url(
            state="s", nonce="n", code_challenge="c", extra={"redirect_uri": "https://evil"}
        )


# --- token endpoint ----------------------------------------------------------------------


async def test_code_exchange_uses_client_secret_basic_with_form_encoded_credentials(http, router):
    client = make_client(http, router, secret="p@ss:w%rd +&=/é")
    route = router.post(f"{ISSUER}/token").respond(200, json=TOKENS)
    tokens = await client.exchange_code("the-code", "the-verifier")
    assert tokens.access_token == "AT-secret" and tokens.refresh_token == "RT-secret"
    request = route.calls.last.request
    assert basic(request) == (CLIENT_ID, "p@ss:w%rd +&=/é")
    raw = base64.b64decode(request.headers["authorization"].split()[1]).decode()
    assert raw == f"{CLIENT_ID}:p%40ss%3Aw%25rd%20%2B%26%3D%2F%C3%A9"
    assert form(request) == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": REDIRECT,
        "code_verifier": "the-verifier",
    }


async def test_client_secret_post_is_used_when_the_provider_lists_only_it(http, router):
    doc = discovery(token_endpoint_auth_methods_supported=["client_secret_post"])
    client = make_client(http, router, doc=doc, secret="p@ss word")
    route = router.post(f"{ISSUER}/token").respond(200, json=TOKENS)
    await client.exchange_code("c", "v")
    request = route.calls.last.request
    assert "authorization" not in request.headers
    assert form(request)["client_id"] == CLIENT_ID
    assert form(request)["client_secret"] == "p@ss word"


async def test_client_secret_basic_is_the_default_when_the_provider_lists_nothing(http, router):
    client = make_client(http, router, doc=discovery(token_endpoint_auth_methods_supported=None))
    route = router.post(f"{ISSUER}/token").respond(200, json=TOKENS)
    await client.exchange_code("c", "v")
    assert basic(route.calls.last.request) == (CLIENT_ID, "s3cret")


async def test_public_client_sends_only_its_id_in_the_body(http, router):
    client = make_client(http, router, secret=None)
    route = router.post(f"{ISSUER}/token").respond(200, json=TOKENS)
    await client.exchange_code("c", "v")
    request = route.calls.last.request
    assert "authorization" not in request.headers
    assert form(request)["client_id"] == CLIENT_ID and "client_secret" not in form(request)


async def test_refresh_sends_no_scope(http, router):
    client = make_client(http, router)
    route = router.post(f"{ISSUER}/token").respond(200, json=TOKENS | {"id_token": None})
    tokens = await client.refresh("RT-old")
    assert form(route.calls.last.request) == {
        "grant_type": "refresh_token",
        "refresh_token": "RT-old",
    }
    assert tokens.id_token is None


async def test_invalid_grant_raises_invalid_grant(http, router):
    client = make_client(http, router)
    router.post(f"{ISSUER}/token").respond(
        400, json={"error": "invalid_grant", "error_description": "refresh token revoked"}
    )
    with pytest.raises(InvalidGrant, match="refresh token revoked"):
        await client.refresh("RT")


async def test_other_oauth_errors_raise_oauth_error_with_the_code(http, router):
    client = make_client(http, router)
    router.post(f"{ISSUER}/token").respond(401, json={"error": "invalid_client"})
    with pytest.raises(OAuthError) as info:
        await client.refresh("RT")
    assert info.value.error == "invalid_client" and not isinstance(info.value, InvalidGrant)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503),
        httpx.Response(500, json={"error": "server_error"}),
        httpx.Response(429),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.Response(200, text="<html>gateway</html>"),
    ],
    ids=["503", "500", "429", "timeout", "connect-error", "html-200"],
)
async def test_transient_failures_raise_provider_unavailable(http, router, answer):
    client = make_client(http, router)
    router.post(f"{ISSUER}/token").mock(side_effect=[answer])
    with pytest.raises(ProviderUnavailable):
        await client.refresh("RT")


async def test_4xx_without_an_oauth_error_body_is_a_provider_error(http, router):
    client = make_client(http, router)
    router.post(f"{ISSUER}/token").respond(404, text="not found")
    with pytest.raises(ProviderError) as info:
        await client.refresh("RT")
    assert not isinstance(info.value, ProviderUnavailable | OAuthError)


@pytest.mark.parametrize(
    "body",
    [
        TOKENS | {"token_type": "mac"},
        TOKENS | {"access_token": None},
        TOKENS | {"expires_in": "soon"},
        TOKENS | {"expires_in": -1},
        TOKENS | {"refresh_token": 7},
    ],
    ids=["not-bearer", "no-access-token", "expires-in-text", "expires-in-negative", "rt-int"],
)
async def test_unusable_token_responses_are_provider_errors(http, router, body):
    client = make_client(http, router)
    router.post(f"{ISSUER}/token").respond(
        200, json={k: v for k, v in body.items() if v is not None}
    )
    with pytest.raises(ProviderError):
        await client.refresh("RT")


async def test_token_type_is_case_insensitive_and_expires_in_may_be_a_numeric_string(http, router):
    client = make_client(http, router)
    router.post(f"{ISSUER}/token").respond(
        200, json=TOKENS | {"token_type": "bearer", "expires_in": "3600"}
    )
    tokens = await client.refresh("RT")
    assert (tokens.token_type, tokens.expires_in) == ("Bearer", 3600)


async def test_code_exchange_without_an_id_token_is_refused_for_openid_scope(http, router):
    client = make_client(http, router)
    router.post(f"{ISSUER}/token").respond(200, json=TOKENS | {"id_token": None})
    with pytest.raises(ProviderError, match="id_token"):
        await client.exchange_code("c", "v")


def test_token_response_repr_hides_the_tokens():
    tokens = TokenResponse("AT-secret", "Bearer", 300, "RT-secret", "ID-secret", "openid")
    assert "secret" not in repr(tokens) and "secret" not in str(tokens)
    assert "expires_in=300" in repr(tokens)


# --- ID and logout tokens through the client ---------------------------------------------


async def test_id_token_is_validated_with_the_providers_keys(http, router):
    client = make_client(http, router)
    claims = await client.validate_id_token(sign(id_claims()), NONCE)
    assert claims.sub == "user-1"


async def test_id_token_alg_must_be_advertised_by_the_provider(http, router):
    doc = discovery(id_token_signing_alg_values_supported=["RS256"])
    client = make_client(http, router, doc=doc, keys=(RSA_KEY, EC_KEY))
    with pytest.raises(TokenValidationError) as info:
        await client.validate_id_token(sign(id_claims(), EC_KEY, "ES256"), NONCE)
    assert info.value.reason == "alg_not_allowed"


async def test_provider_advertising_hs256_does_not_make_it_acceptable(http, router):
    doc = discovery(id_token_signing_alg_values_supported=["HS256", "none"])
    client = make_client(http, router, doc=doc)
    with pytest.raises(TokenValidationError) as info:
        await client.validate_id_token(sign(id_claims()), NONCE)
    assert info.value.reason == "alg_not_allowed"


async def test_unknown_kid_refetches_the_keys_once_and_succeeds_after_rotation(http, router):
    client = make_client(http, router)
    jwks_route = router.routes[1]
    await client.validate_id_token(sign(id_claims()), NONCE)  # warm the cache
    jwks_route.respond(200, json=jwks_json(RSA_KEY, RSA_KEY_2))  # the provider rotates
    claims = await client.validate_id_token(sign(id_claims(), RSA_KEY_2), NONCE)
    assert claims.sub == "user-1"
    assert jwks_route.call_count == 2


async def test_a_second_unknown_kid_within_the_interval_does_not_refetch(http, router):
    mono = FakeClock()
    client = make_client(http, router, mono=mono)
    jwks_route = router.routes[1]
    forged = sign(id_claims(), RSAKey.generate_key(2048, parameters={"kid": "x"}))
    for _ in range(2):
        with pytest.raises(TokenValidationError) as info:
            await client.validate_id_token(forged, NONCE)
        assert info.value.reason == "unknown_kid"
    assert jwks_route.call_count == 2  # the first fetch, and one refetch
    mono.now += 31
    with pytest.raises(TokenValidationError):
        await client.validate_id_token(forged, NONCE)
    assert jwks_route.call_count == 3


async def test_logout_token_is_validated_with_the_same_keys(http, router):
    client = make_client(http, router)
    claims = await client.validate_logout_token(sign(logout_claims(), typ="logout+jwt"))
    assert (claims.sub, claims.sid, claims.jti) == ("user-1", "sid-1", "jti-1")


# --- userinfo ----------------------------------------------------------------------------


async def test_userinfo_sends_the_access_token_as_bearer(http, router):
    client = make_client(http, router)
    route = router.get(f"{ISSUER}/userinfo").respond(200, json={"sub": "user-1", "name": "A"})
    assert await client.userinfo("AT") == {"sub": "user-1", "name": "A"}
    assert route.calls.last.request.headers["authorization"] == "Bearer AT"


async def test_userinfo_refusing_the_token_is_an_invalid_token_oauth_error(http, router):
    client = make_client(http, router)
    router.get(f"{ISSUER}/userinfo").respond(401, headers={"WWW-Authenticate": "Bearer"})
    with pytest.raises(OAuthError) as info:
        await client.userinfo("AT")
    assert info.value.error == "invalid_token"


async def test_signed_userinfo_responses_are_refused(http, router):
    client = make_client(http, router)
    router.get(f"{ISSUER}/userinfo").respond(
        200, content=b"eyJ.eyJ.sig", headers={"Content-Type": "application/jwt"}
    )
    with pytest.raises(ProviderError, match="signed userinfo"):
        await client.userinfo("AT")


@pytest.mark.parametrize("body", [[{"sub": "a"}], {"name": "no sub"}, {"sub": 5}])
async def test_userinfo_must_be_an_object_with_a_sub(http, router, body):
    client = make_client(http, router)
    router.get(f"{ISSUER}/userinfo").respond(200, json=body)
    with pytest.raises(ProviderError):
        await client.userinfo("AT")


# --- revocation --------------------------------------------------------------------------


async def test_revoke_posts_the_token_with_a_hint_and_client_auth(http, router):
    client = make_client(http, router)
    route = router.post(f"{ISSUER}/revoke").respond(200)
    assert await client.revoke("RT") is True
    request = route.calls.last.request
    assert form(request) == {"token": "RT", "token_type_hint": "refresh_token"}
    assert basic(request) == (CLIENT_ID, "s3cret")


async def test_revoke_without_an_endpoint_returns_false(http, router):
    client = make_client(http, router, doc=discovery(revocation_endpoint=None))
    assert await client.revoke("RT") is False


@pytest.mark.parametrize(
    "answer", [httpx.ConnectError("down"), httpx.Response(503)], ids=["connect-error", "503"]
)
async def test_revoke_on_an_unreachable_provider_is_unavailable(http, router, answer):
    client = make_client(http, router)
    router.post(f"{ISSUER}/revoke").mock(side_effect=[answer])
    with pytest.raises(ProviderUnavailable):
        await client.revoke("RT")


# --- end session -------------------------------------------------------------------------


async def test_end_session_url_carries_hint_redirect_client_and_state(http, router):
    client = make_client(http, router)
    url = await client.end_session_url(
        id_token_hint="ID", post_logout_redirect_uri="https://app.example.com/", state="xyz"
    )
    assert url is not None and url.startswith(f"{ISSUER}/logout?")
    assert {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()} == {
        "id_token_hint": "ID",
        "post_logout_redirect_uri": "https://app.example.com/",
        "client_id": CLIENT_ID,
        "state": "xyz",
    }


async def test_end_session_url_without_hint_or_state_omits_them(http, router):
    client = make_client(http, router)
    url = await client.end_session_url(
        id_token_hint=None, post_logout_redirect_uri="https://app.example.com/"
    )
    assert url is not None
    assert set(parse_qs(urlsplit(url).query)) == {"post_logout_redirect_uri", "client_id"}


async def test_end_session_url_is_none_without_an_endpoint(http, router):
    client = make_client(http, router, doc=discovery(end_session_endpoint=None))
    url = await client.end_session_url(id_token_hint="ID", post_logout_redirect_uri="https://a/")
    assert url is None


async def test_userinfo_is_none_when_the_provider_has_no_endpoint(http, router):
    client = make_client(http, router, doc=discovery(userinfo_endpoint=None))
    assert await client.userinfo("AT") is None


async def test_error_messages_never_contain_token_values(http, router):
    client = make_client(http, router)
    router.post(f"{ISSUER}/token").respond(400, json={"error": "invalid_request"})
    with pytest.raises(OAuthError) as info:
        await client.refresh("RT-very-secret")
    assert "RT-very-secret" not in str(info.value)
    token = sign(id_claims(nonce="other"))
    with pytest.raises(TokenValidationError) as bad:
        await client.validate_id_token(token, NONCE)
    assert token not in str(bad.value) and NONCE not in str(bad.value)
