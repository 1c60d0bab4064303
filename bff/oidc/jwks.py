"""The provider's signing keys (JWKS) with one rate-limited refetch for an unknown ``kid``.

Providers publish a new key before signing with it, but a process that fetched
the set earlier has not seen it yet; a token naming an unknown ``kid`` is
therefore worth exactly one refetch. Such refetches are limited to one per
``min_refetch_interval`` so a flood of forged ``kid`` values cannot turn bff
into a load generator against the provider.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key, KeySet

from bff.errors import ProviderError
from bff.singleflight import SingleFlight

from ._http import DEFAULT_TIMEOUT, json_object, send

if TYPE_CHECKING:  # metadata.py re-exports JwksCache, so no runtime import back
    from .metadata import MetadataCache

__all__ = ["JwksCache", "parse_jwks"]

log = logging.getLogger(__name__)


def parse_jwks(doc: dict[str, Any]) -> KeySet:
    """Public signature keys of a JWK Set; unusable members are skipped (RFC 7517 §5).

    Symmetric (``oct``) keys and encryption keys are never used to verify a
    provider's signature, so they are dropped here rather than trusted later.
    """
    members = doc.get("keys")
    if not isinstance(members, list):
        raise ProviderError("JWKS: 'keys' is missing or not a list")
    keys: list[Key] = []
    for member in members:
        if not isinstance(member, dict) or member.get("kty") == "oct":
            continue
        if member.get("use", "sig") != "sig":
            continue
        try:
            key = JWKRegistry.import_key(member)
        except (JoseError, ValueError, TypeError) as exc:
            log.warning(
                "JWKS: skipping a key that cannot be imported (kid=%r): %s", member.get("kid"), exc
            )
            continue
        if key.is_private:
            # A provider publishing a private key is broken; never keep the secret half.
            key = JWKRegistry.import_key(key.as_dict(private=False))
        keys.append(key)
    if not keys:
        raise ProviderError("JWKS: no usable signature keys")
    return KeySet(keys)


class JwksCache:
    """The key set from the provider's ``jwks_uri``, cached for ``ttl`` seconds."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        metadata: MetadataCache,
        min_refetch_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        ttl: float = 3600,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._http = http
        self._metadata = metadata
        self._min_refetch_interval = min_refetch_interval
        self._clock = clock
        self._ttl = ttl
        self._timeout = timeout
        self._keys: KeySet | None = None
        self._expires_at = 0.0
        self._last_forced: float | None = None
        self._flight: SingleFlight[KeySet] = SingleFlight()

    async def key_set(self) -> KeySet:
        """The cached keys, fetched when absent or older than ``ttl``."""
        if self._keys is not None and self._clock() < self._expires_at:
            return self._keys
        return await self._flight.run(self._refresh)

    async def refetch_for_unknown_kid(self) -> KeySet | None:
        """Refetch now, unless another such refetch ran within the interval (then None)."""
        now = self._clock()
        if self._last_forced is not None and now - self._last_forced < self._min_refetch_interval:
            return None
        self._last_forced = now
        self._expires_at = 0.0
        return await self._flight.run(self._refresh)

    async def _refresh(self) -> KeySet:
        try:
            keys = await self._fetch()
        except ProviderError as exc:
            if self._keys is None:
                raise
            log.warning("JWKS refresh failed, serving the cached keys: %s", exc)
            self._expires_at = self._clock() + self._min_refetch_interval
            return self._keys
        self._keys = keys
        self._expires_at = self._clock() + self._ttl
        return keys

    async def _fetch(self) -> KeySet:
        what = "provider JWKS"
        jwks_uri = (await self._metadata.get()).jwks_uri
        response = await send(self._http, "GET", jwks_uri, what=what, time_limit=self._timeout)
        if response.status_code != 200:
            raise ProviderError(f"{what}: HTTP {response.status_code}")
        return parse_jwks(json_object(response, what))
