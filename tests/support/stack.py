"""The whole thing for end-to-end tests: a real provider, a private Redis, a gateway.

One provider and one Redis serve the whole test session; each test starts its
own gateway (on a port the provider knows as a redirect URI) with the settings
it needs, and a movable clock so timeouts can be tested without waiting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from bff.app import create_app
from bff.config import Settings, load_settings

from .asgi_server import ServerThread
from .clock import MovableClock
from .provider import ProviderConfig, ProviderProcess, find_free_port, login_through_provider
from .redis_server import RedisServer

CLIENT_ID = "bff-test"
CLIENT_SECRET = "bff-test-secret-with: odd/chars+&="  # exercises client_secret_basic encoding
SECRET = "test-session-secret-0123456789abcdef-0123456789"
PORT_POOL_SIZE = 12
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) bff-tests Firefox/140.0"


BCL_CLIENT_ID = "bff-backchannel"


@dataclass
class Infra:
    """The shared parts: provider (with a pool of registered gateway ports) and Redis.

    ``bcl_port`` belongs to a second client registered with a back-channel logout
    URI (a provider knows one such URI per client).
    """

    provider: ProviderProcess
    redis: RedisServer
    ports: list[int]
    bcl_port: int
    in_use: set[int] = field(default_factory=set)

    def take_port(self) -> int:
        for port in self.ports:
            if port not in self.in_use:
                self.in_use.add(port)
                return port
        raise RuntimeError("no free registered gateway port left")


def start_infra() -> Infra:
    ports = [find_free_port() for _ in range(PORT_POOL_SIZE)]
    client = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"http://127.0.0.1:{p}/bff/callback" for p in ports],
        "post_logout_redirect_uris": [f"http://127.0.0.1:{p}/" for p in ports],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    bcl_port = find_free_port()
    bcl_client = {
        "client_id": BCL_CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"http://127.0.0.1:{bcl_port}/bff/callback"],
        "post_logout_redirect_uris": [f"http://127.0.0.1:{bcl_port}/"],
        "backchannel_logout_uri": f"http://127.0.0.1:{bcl_port}/bff/backchannel-logout",
        "backchannel_logout_session_required": True,
    }
    redis = RedisServer().start()
    provider = ProviderProcess(ProviderConfig(clients=[client, bcl_client])).start()
    return Infra(provider=provider, redis=redis, ports=ports, bcl_port=bcl_port)


@dataclass
class Stack:
    infra: Infra
    settings: Settings
    server: ServerThread
    clock: MovableClock
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def provider(self) -> ProviderProcess:
        return self.infra.provider

    @property
    def app(self) -> Any:
        return self.server.server.config.app

    def browser(self, user_agent: str = BROWSER_UA) -> httpx.Client:
        """A cookie jar of its own: one browser."""
        client = httpx.Client(base_url=self.url, headers={"User-Agent": user_agent}, timeout=30)
        self.clients.append(client)
        return client

    def close_clients(self) -> None:
        for client in self.clients:
            client.close()

    def login(self, browser: httpx.Client, username: str = "alice",
              return_to: str | None = None) -> httpx.Response:
        query = f"?returnTo={return_to}" if return_to else ""
        return login_through_provider(browser, f"{self.url}/bff/login{query}", username=username)

    def api(self, browser: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-CSRF": "1", **kwargs.pop("headers", {})}
        return browser.request(method, path, headers=headers, **kwargs)


def gateway_env(infra: Infra, port: int, overrides: Mapping[str, str]) -> dict[str, str]:
    env = {
        "BFF_ISSUER": infra.provider.issuer,
        "BFF_CLIENT_ID": BCL_CLIENT_ID if port == infra.bcl_port else CLIENT_ID,
        "BFF_CLIENT_SECRET": CLIENT_SECRET,
        "BFF_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "BFF_SESSION_SECRET": SECRET,
        "BFF_REDIS_URL": infra.redis.url,
        "BFF_LOG_FORMAT": "console",
    }
    env.update(overrides)
    return env


@contextlib.contextmanager
def running_stack(
    infra: Infra, *, backchannel: bool = False, extra_routes: list[Any] | None = None,
    **overrides: str,
) -> Iterator[Stack]:
    if backchannel:
        if infra.bcl_port in infra.in_use:
            raise RuntimeError("the back-channel client's gateway is already running")
        infra.in_use.add(infra.bcl_port)
        port = infra.bcl_port
    else:
        port = infra.take_port()
    try:
        settings = load_settings(gateway_env(infra, port, overrides))
        clock = MovableClock()
        app = create_app(settings, clock=clock, extra_routes=extra_routes)
        with ServerThread(app, port=port) as server:
            stack = Stack(infra=infra, settings=settings, server=server, clock=clock)
            try:
                yield stack
            finally:
                stack.close_clients()
    finally:
        infra.in_use.discard(port)
