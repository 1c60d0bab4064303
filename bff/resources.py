"""What lives for the app's lifetime: HTTP clients, Redis, the store, the OIDC client.

Opened in the lifespan, closed in reverse order. Tests build one with their own
parts (a private Redis, a real provider) through the same function.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx

from bff.config import Settings
from bff.metrics import Metrics
from bff.oidc.client import OidcClient
from bff.oidc.jwks import JwksCache
from bff.oidc.metadata import MetadataCache
from bff.proxy.forward import Forwarder
from bff.session.connect import redis_from_url
from bff.session.cookies import CookieSigner
from bff.session.crypto import TokenCipher
from bff.session.fast_read import fast_reader_for
from bff.session.redis import AnyRedis, RedisSessionStore
from bff.session.refresh import TokenRefresher
from bff.session.service import SessionService


@dataclass
class Resources:
    settings: Settings
    redis: AnyRedis
    store: RedisSessionStore
    sessions: SessionService
    oidc: OidcClient
    metadata: MetadataCache
    refresher: TokenRefresher
    forwarder: Forwarder
    login_signer: CookieSigner
    metrics: Metrics
    provider_http: httpx.AsyncClient
    clock: Callable[[], float]
    # One connection pool per route prefix: a slow upstream holding all of its
    # connections cannot make the other routes queue for one.
    route_forwarders: dict[str, Forwarder] = field(default_factory=dict)

    def forwarder_for(self, prefix: str) -> Forwarder:
        return self.route_forwarders.get(prefix, self.forwarder)


@contextlib.asynccontextmanager
async def open_resources(
    settings: Settings, *, clock: Callable[[], float] = time.time
) -> AsyncIterator[Resources]:
    if settings.redis_url is None:
        raise RuntimeError("open_resources needs a Redis URL (the CLI starts the embedded one)")
    metrics = Metrics()
    redis = redis_from_url(settings.redis_url)
    store = RedisSessionStore(
        redis, idle_timeout=settings.idle_timeout, absolute_timeout=settings.absolute_timeout,
        fast_reader=fast_reader_for(redis),  # None (redis-py reads) where it cannot match the client
    )
    sessions = SessionService(
        store,
        TokenCipher(settings.session_secrets),
        CookieSigner(settings.session_secrets, salt="bff.session"),
        idle_timeout=settings.idle_timeout,
        binding=settings.session_binding,
        max_cookie_size=settings.max_cookie_size,
        clock=clock,
    )
    # Provider calls get their own client: no cookies are ever kept between calls.
    provider_http = httpx.AsyncClient(
        timeout=httpx.Timeout(10.0, connect=5.0),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
        headers={"User-Agent": "bff"},
    )
    metadata = MetadataCache(provider_http, settings.issuer)
    jwks = JwksCache(provider_http, metadata)
    oidc = OidcClient(
        provider_http, metadata, jwks,
        client_id=settings.client_id, client_secret=settings.client_secret,
        redirect_uri=settings.redirect_uri, scopes=settings.scopes,
        clock_skew=settings.clock_skew, clock=clock,
    )
    refresher = TokenRefresher(
        sessions, oidc.refresh, leeway=settings.refresh_leeway,
        on_result=lambda outcome: metrics.refreshes.labels(outcome).inc(), clock=clock,
    )
    forwarder = Forwarder.create()
    forwarder.protected_cookies = (settings.cookie_name, settings.login_cookie_name)
    route_forwarders = {route.prefix: Forwarder.create() for route in settings.routes}
    for each in route_forwarders.values():
        each.protected_cookies = forwarder.protected_cookies
    try:
        yield Resources(
            settings=settings, redis=redis, store=store, sessions=sessions, oidc=oidc,
            metadata=metadata, refresher=refresher, forwarder=forwarder,
            login_signer=CookieSigner(settings.session_secrets, salt="bff.login"),
            metrics=metrics, provider_http=provider_http, clock=clock,
            route_forwarders=route_forwarders,
        )
    finally:
        for each in route_forwarders.values():
            await each.aclose()
        await forwarder.aclose()
        await provider_http.aclose()
        if store.fast_reader is not None:
            with contextlib.suppress(Exception):
                await store.fast_reader.aclose()
        with contextlib.suppress(Exception):
            await redis.aclose()
