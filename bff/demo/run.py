"""``bff demo``: embedded Redis, the development provider, the sample API and the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import uvicorn

from bff.app import create_app
from bff.config import Settings, load_settings
from bff.demo.provider import (
    ACCESS_TOKEN_TTL,
    CLIENT_ID,
    CLIENT_SECRET,
    REFRESH_LEEWAY,
    DemoProvider,
    _quiet_mock_deprecations,
    _url_host,
)
from bff.demo.spa import spa_routes
from bff.demo_api import create_api
from bff.embedded_redis import EmbeddedRedis
from bff.errors import BffError
from bff.logs import configure_logging

log = logging.getLogger("bff.demo")

# -- the gateway and the servers --------------------------------------------------------------

def _public_host(host: str) -> str:
    """The host the browser uses: a wildcard bind is reached as the loopback address."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def demo_settings(*, public_url: str, issuer: str, redis_url: str, api_url: str,
                  access_token_ttl: int = ACCESS_TOKEN_TTL) -> Settings:
    """The gateway's settings for the demo: the built-in secret, console logs, /api routed."""
    return load_settings({
        "BFF_ISSUER": issuer,
        "BFF_CLIENT_ID": CLIENT_ID,
        "BFF_CLIENT_SECRET": CLIENT_SECRET,
        "BFF_PUBLIC_URL": public_url,
        "BFF_REDIS_URL": redis_url,
        "BFF_ROUTES": f"/api={api_url}",
        "BFF_REFRESH_LEEWAY": str(min(REFRESH_LEEWAY, max(access_token_ttl - 5, 0))),
        "BFF_SHUTDOWN_TIMEOUT": "3",
        "BFF_LOG_FORMAT": "console",
    }, demo=True)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`run_demo` (which stops all at once)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BffError(f"cannot listen on {host}:{port} ({exc.strerror}); "
                       "choose another port with --port") from exc
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def _server(app: Any, sock: socket.socket) -> _Server:
    host, port = sock.getsockname()[:2]
    return _Server(uvicorn.Config(
        app, host=host, port=port, lifespan="on", log_config=None, access_log=False,
        proxy_headers=False, server_header=False, timeout_graceful_shutdown=3,
    ))


async def _serve(servers: Sequence[tuple[_Server, socket.socket]],
                 on_ready: Callable[[], None]) -> bool:
    """Run the servers until a signal or until one stops; True if all had started."""
    loop = asyncio.get_running_loop()
    stopping = False

    def stop(force: bool = False) -> None:
        for server, _ in servers:
            server.should_exit = True
            server.force_exit = server.force_exit or force

    def on_signal() -> None:
        nonlocal stopping
        stop(force=stopping)  # a second Ctrl-C stops without waiting for requests
        if not stopping:
            print("\nStopping the demo...", flush=True)
        stopping = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        # Where the loop cannot (Windows), Ctrl-C stays a KeyboardInterrupt: still cleaned up.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    try:
        tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
        while not all(server.started for server, _ in servers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.02)
        started = all(server.started for server, _ in servers)
        if started:
            on_ready()
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        return started
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


def _banner(url: str, provider: DemoProvider, api_url: str, leeway: int) -> str:
    return "\n".join([
        "",
        f"  bff demo is running: open {url}/ in your browser",
        "",
        f"  gateway       {url}  (sample SPA at /, sample API proxied at /api)",
        f"  provider      {provider.issuer}  (oidc-provider-mock: sign in as any name, "
        "e.g. alice; no password)",
        f"  sample API    {api_url}  (reached only through the gateway)",
        "  session store embedded redis-server (in memory, gone when the demo stops)",
        f"  access tokens live {provider.access_token_ttl} s; the gateway refreshes them silently "
        f"{leeway} s before they expire",
        "",
        "  Press Ctrl-C to stop.",
        "",
    ])


def run_demo(host: str = "127.0.0.1", port: int = 8080) -> int:
    """Run the whole demo until Ctrl-C (or SIGTERM); 0 after a clean shutdown."""
    public = _public_host(host)
    url = f"http://{_url_host(public)}:{port}"
    configure_logging("console")
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with contextlib.ExitStack() as stack:
        gateway_sock = stack.enter_context(_listen(host, port))
        api_sock = stack.enter_context(_listen("127.0.0.1", 0))
        redis = stack.enter_context(EmbeddedRedis())
        _quiet_mock_deprecations()
        provider = stack.enter_context(DemoProvider(host=host, public_host=public))
        api_url = f"http://127.0.0.1:{api_sock.getsockname()[1]}"
        settings = demo_settings(public_url=url, issuer=provider.issuer, redis_url=redis.url,
                                 api_url=api_url)
        gateway = create_app(settings, extra_routes=spa_routes(settings.base_path))
        servers = [(_server(create_api(), api_sock), api_sock),
                   (_server(gateway, gateway_sock), gateway_sock)]

        def ready() -> None:
            print(_banner(url, provider, api_url, settings.refresh_leeway), flush=True)

        if not asyncio.run(_serve(servers, ready)):
            raise BffError("the demo did not start; see the log above")
    print("bff demo stopped.", flush=True)
    return 0
