"""JWKS: import rules, caching, and the one rate-limited refetch on an unknown kid."""

from __future__ import annotations

import httpx
import pytest
from joserfc.jwk import OctKey

from bff.errors import ProviderError, ProviderUnavailable
from bff.oidc.jwks import JwksCache, parse_jwks
from bff.oidc.metadata import MetadataCache

from .helpers import EC_KEY, ISSUER, RSA_KEY, RSA_KEY_2, FakeClock, jwks_json, mock_provider


def test_symmetric_and_encryption_keys_are_dropped_from_the_set():
    enc = RSA_KEY_2.as_dict(private=False) | {"use": "enc"}
    oct_key = OctKey.generate_key(256, parameters={"kid": "hmac"}).as_dict(private=True)
    keys = parse_jwks({"keys": [RSA_KEY.as_dict(private=False), enc, oct_key]})
    assert [k.kid for k in keys] == ["rsa-1"]


def test_keys_that_cannot_be_imported_are_skipped():
    broken = {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"}
    unknown = {"kty": "PQC", "kid": "future"}
    keys = parse_jwks({"keys": [broken, unknown, "junk", EC_KEY.as_dict(private=False)]})
    assert [k.kid for k in keys] == ["ec-1"]


def test_a_published_private_key_is_kept_only_as_its_public_half():
    (key,) = parse_jwks({"keys": [RSA_KEY.as_dict(private=True)]})
    assert not key.is_private


def test_a_set_without_usable_keys_is_a_provider_error():
    with pytest.raises(ProviderError):
        parse_jwks({"keys": []})
    with pytest.raises(ProviderError):
        parse_jwks({"nokeys": 1})


async def test_keys_are_fetched_from_the_jwks_uri_and_cached(http, router):
    _, jwks_route = mock_provider(router, keys=(RSA_KEY, EC_KEY))
    clock = FakeClock()
    jwks = JwksCache(http, MetadataCache(http, ISSUER), clock=clock, ttl=600)
    assert {k.kid for k in await jwks.key_set()} == {"rsa-1", "ec-1"}
    clock.now += 599
    await jwks.key_set()
    assert jwks_route.call_count == 1
    clock.now += 2
    await jwks.key_set()
    assert jwks_route.call_count == 2


async def test_unknown_kid_refetch_is_limited_to_one_per_interval(http, router):
    _, jwks_route = mock_provider(router)
    clock = FakeClock()
    jwks = JwksCache(http, MetadataCache(http, ISSUER), min_refetch_interval=30, clock=clock)
    await jwks.key_set()
    jwks_route.respond(200, json=jwks_json(RSA_KEY, RSA_KEY_2))
    fresh = await jwks.refetch_for_unknown_kid()
    assert fresh is not None and {k.kid for k in fresh} == {"rsa-1", "rsa-2"}
    clock.now += 29
    assert await jwks.refetch_for_unknown_kid() is None
    assert jwks_route.call_count == 2
    clock.now += 1
    assert await jwks.refetch_for_unknown_kid() is not None
    assert jwks_route.call_count == 3


async def test_failed_refetch_keeps_serving_the_cached_keys(http, router):
    _, jwks_route = mock_provider(router)
    clock = FakeClock()
    jwks = JwksCache(http, MetadataCache(http, ISSUER), clock=clock)
    first = await jwks.key_set()
    jwks_route.respond(503)
    assert await jwks.refetch_for_unknown_kid() is first


async def test_first_fetch_failure_is_unavailable(http, router):
    _, jwks_route = mock_provider(router)
    jwks_route.mock(side_effect=httpx.ConnectTimeout("slow"))
    with pytest.raises(ProviderUnavailable):
        await JwksCache(http, MetadataCache(http, ISSUER)).key_set()
