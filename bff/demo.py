"""``bff demo``: the gateway with everything it needs on one machine, offline.

One process runs: the embedded Redis (a child ``redis-server``), a development
OpenID Provider (``oidc-provider-mock`` in a werkzeug thread), the sample API
(:mod:`bff.demo_api`) and the gateway serving the sample SPA at ``/``. Ctrl-C
stops them all.

The building blocks are public for the tests: :class:`DemoProvider`,
:func:`spa_routes` and :func:`demo_settings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import secrets
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from importlib import resources
from types import TracebackType
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bff.app import create_app
from bff.config import Settings, load_settings
from bff.demo_api import create_api
from bff.embedded_redis import EmbeddedRedis
from bff.errors import BffError
from bff.logs import configure_logging

log = logging.getLogger("bff.demo")

CLIENT_ID = "bff-demo"
CLIENT_SECRET = "bff-demo-secret-not-for-production"  # the mock accepts any
ACCESS_TOKEN_TTL = 40
REFRESH_LEEWAY = 20
DEMO_USERS: tuple[tuple[str, dict[str, object]], ...] = (
    ("alice", {"name": "Alice Example", "email": "alice@example.test", "email_verified": True}),
    ("bob", {"name": "Bob Example", "email": "bob@example.test", "email_verified": True}),
)

# The sample SPA: files in bff/static/ and the strict policy they are served under.
SPA_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
SPA_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
           "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# The provider's pages, made offline (the package's own load a stylesheet from a CDN).
PROVIDER_TEMPLATES = {
    "_base.html": "provider-base.html",
    "authorization_form.html": "provider-authorize.html",
    "end_session_form.html": "provider-end-session.html",
    "error.html": "provider-error.html",
}


def static_text(name: str) -> str:
    return (resources.files("bff") / "static" / name).read_text(encoding="utf-8")


def spa_routes(prefix: str = "") -> list[Route]:
    """Starlette routes serving the sample SPA (for ``create_app(extra_routes=...)``)."""
    routes: list[Route] = []
    for path, (name, media_type) in SPA_FILES.items():
        body = static_text(name).encode()

        async def serve(request: Request, body: bytes = body,
                        media_type: str = media_type) -> Response:
            return Response(body, media_type=media_type, headers={
                "Content-Security-Policy": SPA_CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache",
            })

        routes.append(Route(prefix + path, serve, methods=["GET", "HEAD"]))
    return routes


# -- the development OpenID Provider ---------------------------------------------------------

def _import_mock() -> Any:
    """Import oidc-provider-mock without authlib's import-time deprecation warnings.

    authlib installs an ``always`` filter for its own warning class when first
    imported, so ours goes in after it and only for the import.
    """
    deprecate = importlib.import_module("authlib.deprecate")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=deprecate.AuthlibDeprecationWarning)
        return importlib.import_module("oidc_provider_mock")


def _quiet_mock_deprecations() -> None:
    """For this process: the mock's request handlers call authlib names authlib deprecated."""
    deprecate = importlib.import_module("authlib.deprecate")  # installs authlib's own filter first
    warnings.filterwarnings("ignore", category=deprecate.AuthlibDeprecationWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning,
                            module=r"(authlib|oidc_provider_mock)(\.|$)")


def _jwt_token_generator(ttl: int) -> Callable[..., dict[str, Any]]:
    """An authlib token generator issuing JWT access tokens signed with the mock's key.

    The mock's own tokens are random strings, and after a refresh they live an
    hour whatever ``access_token_max_age`` says; JWTs with ``iat``/``exp`` let the
    SPA show each silent refresh.
    """
    flask = importlib.import_module("flask")
    jwt = importlib.import_module("joserfc.jwt")
    rsa = importlib.import_module("joserfc.jwk")
    storage = importlib.import_module("oidc_provider_mock._storage").storage

    def generate(grant_type: str, client: Any, user: Any = None, scope: str | None = None,
                 expires_in: int | None = None,
                 include_refresh_token: bool = True) -> dict[str, Any]:
        now = int(time.time())
        private = storage.jwk.as_dict(is_private=True)
        claims = {
            "iss": flask.request.host_url.rstrip("/"), "sub": user.sub, "client_id": client.id,
            "scope": scope or "", "iat": now, "exp": now + ttl, "jti": secrets.token_urlsafe(12),
        }
        for claim in ("name", "email"):
            if claim in user.claims:
                claims[claim] = user.claims[claim]
        header = {"alg": "RS256", "typ": "at+jwt", "kid": private["kid"]}
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": jwt.encode(header, claims, rsa.RSAKey.import_key(private)),
            "expires_in": ttl,
            "scope": scope or "",
        }
        if include_refresh_token:
            token["refresh_token"] = secrets.token_urlsafe(48)
        return token

    return generate


class DemoProvider:
    """oidc-provider-mock in a werkzeug server thread; ``issuer`` once started.

    It accepts any client id and secret and any redirect URI, signs in any user
    name without a password (``alice`` and ``bob`` have full profiles), issues
    refresh tokens and has an end-session page, but no token revocation and no
    back-channel logout.
    """

    def __init__(self, *, host: str = "127.0.0.1", public_host: str | None = None,
                 access_token_ttl: int = ACCESS_TOKEN_TTL) -> None:
        self.host = host
        self.public_host = public_host or host
        self.access_token_ttl = access_token_ttl
        self.issuer = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _app(self) -> Any:
        mock = _import_mock()
        flask = importlib.import_module("flask")
        jinja2 = importlib.import_module("jinja2")
        app = flask.Flask(__name__, template_folder=None, static_folder=None)
        mock.init_app(
            app,
            access_token_max_age=timedelta(seconds=self.access_token_ttl),
            user_claims=[mock.User(sub=sub, claims=dict(claims)) for sub, claims in DEMO_USERS],
        )
        app.secret_key = secrets.token_bytes(32)
        # init_app turns on Flask debug mode and werkzeug's traceback page: not here.
        app.debug = False
        app.wsgi_app = getattr(app.wsgi_app, "app", app.wsgi_app)
        env = app.jinja_env
        env.loader = jinja2.ChoiceLoader([
            jinja2.DictLoader({name: static_text(f) for name, f in PROVIDER_TEMPLATES.items()}),
            env.loader,
        ])
        try:
            generator = _jwt_token_generator(self.access_token_ttl)
        except (ImportError, AttributeError):  # another oidc-provider-mock than 0.3's
            log.warning("demo provider: keeping oidc-provider-mock's own opaque access tokens")
            generator = None
        installed: list[object] = []

        @app.before_request  # type: ignore[untyped-decorator]
        def _use_jwt_access_tokens() -> None:
            # The mock keeps its authlib AuthorizationServer here for each request.
            server = getattr(flask.g, "_authlib_authorization_server", None)
            if generator is not None and server is not None and server not in installed:
                server.register_token_generator("default", generator)
                installed.append(server)

        @app.after_request  # type: ignore[untyped-decorator]
        def _advertise_sign_up(response: Any) -> Any:
            # Any new user name creates an account, so prompt=create (OpenID Connect
            # Initiating User Registration) is honoured: say so, or the gateway drops it.
            if flask.request.path == "/.well-known/openid-configuration" and response.is_json:
                metadata = response.get_json()
                metadata["prompt_values_supported"] = ["login", "create"]
                response.set_data(flask.json.dumps(metadata))
            return response

        return app

    def start(self) -> str:
        serving = importlib.import_module("werkzeug.serving")
        self._server = serving.make_server(self.host, 0, self._app(), threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, name="bff-demo-provider",
                                        daemon=True)
        self._thread.start()
        self.issuer = f"http://{_url_host(self.public_host)}:{self.port}"
        return self.issuer

    @property
    def port(self) -> int:
        port: int = self._server.server_port
        return port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> DemoProvider:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# -- the gateway and the servers --------------------------------------------------------------

def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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
