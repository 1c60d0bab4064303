"""Discovery: exact issuer match, https endpoints, TTL, stale-on-failure, shared fetch."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from bff.errors import ProviderError, ProviderUnavailable
from bff.oidc.metadata import MetadataCache, discovery_url

from .helpers import ISSUER, FakeClock, discovery

DISCO = f"{ISSUER}/.well-known/openid-configuration"




async def test_metadata_is_parsed_from_the_discovery_document(http, router):
    router.get(DISCO).respond(200, json=discovery(prompt_values_supported=["none", "login"]))
    meta = await MetadataCache(http, ISSUER).get()
    assert meta.issuer == ISSUER
    assert meta.token_endpoint == f"{ISSUER}/token"
    assert meta.id_token_signing_alg_values_supported == ("RS256", "ES256")
    assert meta.prompt_values_supported == ("none", "login")
    assert meta.backchannel_logout_supported is True
    assert meta.raw["jwks_uri"] == f"{ISSUER}/jwks"


async def test_absent_optional_fields_take_their_spec_defaults(http, router):
    doc = discovery(
        userinfo_endpoint=None,
        end_session_endpoint=None,
        revocation_endpoint=None,
        token_endpoint_auth_methods_supported=None,
        id_token_signing_alg_values_supported=None,
        backchannel_logout_supported=None,
    )
    router.get(DISCO).respond(200, json=doc)
    meta = await MetadataCache(http, ISSUER).get()
    assert (meta.userinfo_endpoint, meta.end_session_endpoint, meta.revocation_endpoint) == (
        None,
        None,
        None,
    )
    assert meta.token_endpoint_auth_methods_supported == ("client_secret_basic",)
    assert meta.id_token_signing_alg_values_supported == ("RS256",)
    assert meta.backchannel_logout_supported is False


async def test_discovery_naming_another_issuer_is_refused(http, router):
    router.get(DISCO).respond(200, json=discovery(issuer="https://evil.example.com"))
    with pytest.raises(ProviderError, match="must be identical") as info:
        await MetadataCache(http, ISSUER).get()
    assert not isinstance(info.value, ProviderUnavailable)


def test_discovery_url_has_exactly_one_slash_before_well_known():
    assert discovery_url("https://op.example.com/realms/a/") == (
        "https://op.example.com/realms/a/.well-known/openid-configuration"
    )
    assert discovery_url("https://op.example.com") == (
        "https://op.example.com/.well-known/openid-configuration"
    )


async def test_configured_issuer_with_trailing_slash_must_match_a_document_with_one(http, router):
    issuer = "https://op.example.com/realms/a/"
    router.get(f"{issuer}.well-known/openid-configuration").respond(200, json=discovery(issuer))
    assert (await MetadataCache(http, issuer).get()).issuer == issuer


async def test_configured_issuer_with_trailing_slash_refuses_a_document_without(http, router):
    issuer = "https://op.example.com/realms/a/"
    doc = discovery(issuer.rstrip("/"))
    router.get(f"{issuer}.well-known/openid-configuration").respond(200, json=doc)
    with pytest.raises(ProviderError, match="trailing slash"):
        await MetadataCache(http, issuer).get()


async def test_configured_issuer_without_slash_refuses_a_document_with_one(http, router):
    router.get(DISCO).respond(200, json=discovery(ISSUER + "/"))
    with pytest.raises(ProviderError, match="identical"):
        await MetadataCache(http, ISSUER).get()


async def test_plain_http_endpoints_are_refused_for_an_https_issuer(http, router):
    router.get(DISCO).respond(200, json=discovery(token_endpoint="http://op.example.com/token"))
    with pytest.raises(ProviderError, match="token_endpoint must be an https URL"):
        await MetadataCache(http, ISSUER).get()


async def test_plain_http_endpoints_are_allowed_for_an_http_issuer(http, router):
    issuer = "http://127.0.0.1:9000"
    router.get(f"{issuer}/.well-known/openid-configuration").respond(200, json=discovery(issuer))
    assert (await MetadataCache(http, issuer).get()).token_endpoint == f"{issuer}/token"


async def test_missing_jwks_uri_is_refused(http, router):
    router.get(DISCO).respond(200, json=discovery(jwks_uri=None))
    with pytest.raises(ProviderError, match="jwks_uri"):
        await MetadataCache(http, ISSUER).get()


async def test_non_list_algorithm_field_is_refused(http, router):
    router.get(DISCO).respond(200, json=discovery(id_token_signing_alg_values_supported="RS256"))
    with pytest.raises(ProviderError, match="list of strings"):
        await MetadataCache(http, ISSUER).get()


async def test_unreachable_provider_is_unavailable(http, router):
    router.get(DISCO).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ProviderUnavailable):
        await MetadataCache(http, ISSUER).get()


async def test_timeout_is_unavailable(http, router):
    router.get(DISCO).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(ProviderUnavailable, match="timed out"):
        await MetadataCache(http, ISSUER).get()


async def test_5xx_is_unavailable(http, router):
    router.get(DISCO).respond(503)
    with pytest.raises(ProviderUnavailable):
        await MetadataCache(http, ISSUER).get()


async def test_html_error_page_is_unavailable(http, router):
    router.get(DISCO).respond(200, text="<html>proxy error</html>")
    with pytest.raises(ProviderUnavailable, match="not JSON"):
        await MetadataCache(http, ISSUER).get()


async def test_404_is_a_provider_error_not_a_transient_one(http, router):
    router.get(DISCO).respond(404)
    with pytest.raises(ProviderError) as info:
        await MetadataCache(http, ISSUER).get()
    assert not isinstance(info.value, ProviderUnavailable)


async def test_metadata_is_cached_until_the_ttl_passes(http, router):
    route = router.get(DISCO).respond(200, json=discovery())
    clock = FakeClock()
    cache = MetadataCache(http, ISSUER, ttl=100, clock=clock)
    await cache.get()
    clock.now += 99
    await cache.get()
    assert route.call_count == 1
    clock.now += 2
    await cache.get()
    assert route.call_count == 2


async def test_stale_metadata_is_served_when_a_refetch_fails_and_retried_later(
    http, router, caplog
):
    route = router.get(DISCO)
    route.side_effect = [
        httpx.Response(200, json=discovery()),
        httpx.Response(503),
        httpx.Response(200, json=discovery(token_endpoint=f"{ISSUER}/token2")),
    ]
    clock = FakeClock()
    cache = MetadataCache(http, ISSUER, ttl=100, clock=clock, retry_interval=30)
    first = await cache.get()
    clock.now += 101
    with caplog.at_level(logging.WARNING, logger="bff.oidc.metadata"):
        assert await cache.get() is first
    assert "serving the cached copy" in caplog.text
    clock.now += 10
    assert await cache.get() is first  # within retry_interval: no new attempt
    assert route.call_count == 2
    clock.now += 21
    assert (await cache.get()).token_endpoint == f"{ISSUER}/token2"
    assert route.call_count == 3


async def test_concurrent_callers_share_one_fetch(http, router):
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json=discovery())

    route = router.get(DISCO).mock(side_effect=slow)
    cache = MetadataCache(http, ISSUER)
    tasks = [asyncio.create_task(cache.get()) for _ in range(10)]
    await asyncio.sleep(0.01)
    release.set()
    results = await asyncio.gather(*tasks)
    assert route.call_count == 1
    assert all(r is results[0] for r in results)


async def test_concurrent_callers_share_one_failure(http, router):
    async def slow_fail(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        return httpx.Response(502)

    route = router.get(DISCO).mock(side_effect=slow_fail)
    cache = MetadataCache(http, ISSUER)
    results = await asyncio.gather(*(cache.get() for _ in range(5)), return_exceptions=True)
    assert route.call_count == 1
    assert all(isinstance(r, ProviderUnavailable) for r in results)


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(http, router):
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json=discovery())

    router.get(DISCO).mock(side_effect=slow)
    cache = MetadataCache(http, ISSUER)
    impatient = asyncio.create_task(cache.get())
    patient = asyncio.create_task(cache.get())
    await asyncio.sleep(0.01)
    impatient.cancel()
    release.set()
    assert (await patient).issuer == ISSUER
    with pytest.raises(asyncio.CancelledError):
        await impatient
