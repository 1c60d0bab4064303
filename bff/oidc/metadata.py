"""Provider discovery (OpenID Connect Discovery 1.0) with a TTL cache.

The discovery document is checked once when fetched: its ``issuer`` must equal
the configured issuer exactly (a mismatch is a misconfiguration or a
mix-up attack, never retried into success) and its endpoints must be https
unless the issuer itself is plain http (local development).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from bff.errors import ProviderError, ProviderUnavailable
from bff.singleflight import SingleFlight

from ._http import DEFAULT_TIMEOUT, json_object, send
from .jwks import JwksCache, parse_jwks

# JwksCache lives in jwks.py and is re-exported here, next to the cache it depends on.
__all__ = [
    "JwksCache",
    "MetadataCache",
    "ProviderMetadata",
    "discovery_url",
    "parse_jwks",
    "parse_metadata",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the discovery document bff uses; ``raw`` keeps the rest."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    end_session_endpoint: str | None = None
    revocation_endpoint: str | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] = ("client_secret_basic",)
    id_token_signing_alg_values_supported: tuple[str, ...] = ("RS256",)
    prompt_values_supported: tuple[str, ...] = ()
    code_challenge_methods_supported: tuple[str, ...] = ()
    backchannel_logout_supported: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def discovery_url(issuer: str) -> str:
    """``{issuer}/.well-known/openid-configuration`` with one slash between."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def parse_metadata(doc: dict[str, Any], issuer: str) -> ProviderMetadata:
    """Validate a discovery document for ``issuer``; raise ProviderError on any problem."""
    if doc.get("issuer") != issuer:
        raise ProviderError(
            f"discovery document names issuer {doc.get('issuer')!r} but BFF_ISSUER is "
            f"{issuer!r}; they must be identical (check a trailing slash)"
        )
    http_ok = urlsplit(issuer).scheme == "http"
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=_required_url(doc, "authorization_endpoint", http_ok),
        token_endpoint=_required_url(doc, "token_endpoint", http_ok),
        jwks_uri=_required_url(doc, "jwks_uri", http_ok),
        userinfo_endpoint=_url(doc, "userinfo_endpoint", http_ok),
        end_session_endpoint=_url(doc, "end_session_endpoint", http_ok),
        revocation_endpoint=_url(doc, "revocation_endpoint", http_ok),
        token_endpoint_auth_methods_supported=_strings(
            doc, "token_endpoint_auth_methods_supported", ("client_secret_basic",)
        ),
        id_token_signing_alg_values_supported=_strings(
            doc, "id_token_signing_alg_values_supported", ("RS256",)
        ),
        prompt_values_supported=_strings(doc, "prompt_values_supported", ()),
        code_challenge_methods_supported=_strings(doc, "code_challenge_methods_supported", ()),
        backchannel_logout_supported=doc.get("backchannel_logout_supported") is True,
        raw=dict(doc),
    )


def _url(doc: dict[str, Any], name: str, http_ok: bool) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    return _required_url(doc, name, http_ok)


def _required_url(doc: dict[str, Any], name: str, http_ok: bool) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise ProviderError(f"discovery document: {name} is missing or not a string")
    scheme = urlsplit(value).scheme
    if scheme != "https" and not (http_ok and scheme == "http"):
        raise ProviderError(f"discovery document: {name} must be an https URL")
    return value


def _strings(doc: dict[str, Any], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = doc.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProviderError(f"discovery document: {name} must be a list of strings")
    return tuple(value)


class MetadataCache:
    """The provider's metadata, fetched on first use and again after ``ttl`` seconds.

    When a refetch fails and an older document is held, the old one keeps being
    served (with a warning) and the next attempt waits ``retry_interval``
    seconds, so a provider outage neither breaks logins that could work nor
    makes every request wait for a timeout. Concurrent callers share one fetch.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        issuer: str,
        ttl: float = 3600,
        clock: Callable[[], float] = time.monotonic,
        *,
        retry_interval: float = 30.0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._http = http
        self.issuer = issuer
        self._ttl = ttl
        self._clock = clock
        self._retry_interval = retry_interval
        self._timeout = timeout
        self._value: ProviderMetadata | None = None
        self._next_fetch = 0.0
        self._flight: SingleFlight[ProviderMetadata] = SingleFlight()
        self._last_ok = -math.inf
        self._down_until = -math.inf
        self._probe_flight: SingleFlight[ProviderMetadata] = SingleFlight()

    async def get(self) -> ProviderMetadata:
        """The current metadata; raises ProviderError only when nothing is cached yet."""
        if self._value is not None and self._clock() < self._next_fetch:
            return self._value
        return await self._flight.run(self._refresh)

    async def ensure_reachable(
        self, *, max_age: float = 2.0, time_limit: float = 3.0, down_for: float = 1.0
    ) -> ProviderMetadata:
        """The metadata, but only if the provider answered within ``max_age`` seconds or does now.

        For sending a browser to the provider: a cached document says nothing
        about whether the provider is up. Raises ProviderUnavailable (without
        asking again for ``down_for`` seconds) or ProviderError.
        """
        now = self._clock()
        if self._value is not None and now - self._last_ok < max_age:
            return self._value
        if now < self._down_until:
            raise ProviderUnavailable("provider discovery: unreachable a moment ago")
        return await self._probe_flight.run(lambda: self._probe(time_limit, down_for))

    def note_unreachable(self) -> None:
        """Another call just failed to reach the provider: the next ``ensure_reachable`` asks."""
        self._last_ok = -math.inf

    async def _probe(self, time_limit: float, down_for: float) -> ProviderMetadata:
        try:
            value = await self._fetch(time_limit)
        except ProviderUnavailable:
            self._down_until = self._clock() + down_for
            raise
        self._store(value)
        return value

    async def _refresh(self) -> ProviderMetadata:
        try:
            value = await self._fetch()
        except ProviderError as exc:
            if self._value is None:
                raise
            log.warning("provider metadata refresh failed, serving the cached copy: %s", exc)
            self._next_fetch = self._clock() + self._retry_interval
            return self._value
        self._store(value)
        return value

    def _store(self, value: ProviderMetadata) -> None:
        self._value = value
        self._next_fetch = self._clock() + self._ttl
        self._last_ok = self._clock()

    async def _fetch(self, time_limit: float | None = None) -> ProviderMetadata:
        what = "provider discovery"
        response = await send(
            self._http, "GET", discovery_url(self.issuer), what=what,
            time_limit=time_limit if time_limit is not None else self._timeout,
        )
        if response.status_code != 200:
            raise ProviderError(f"{what}: HTTP {response.status_code} from {response.url}")
        return parse_metadata(json_object(response, what), self.issuer)
