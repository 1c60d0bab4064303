"""The demo's development OpenID Provider: oidc-provider-mock in a thread, made offline."""

from __future__ import annotations

import importlib
import logging
import secrets
import threading
import time
import warnings
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any

from bff.demo.spa import static_text

log = logging.getLogger("bff.demo")

CLIENT_ID = "bff-demo"
CLIENT_SECRET = "bff-demo-secret-not-for-production"  # the mock accepts any
ACCESS_TOKEN_TTL = 40
REFRESH_LEEWAY = 20
DEMO_USERS: tuple[tuple[str, dict[str, object]], ...] = (
    ("alice", {"name": "Alice Example", "email": "alice@example.test", "email_verified": True}),
    ("bob", {"name": "Bob Example", "email": "bob@example.test", "email_verified": True}),
)

# The provider's pages, made offline (the package's own load a stylesheet from a CDN).
PROVIDER_TEMPLATES = {
    "_base.html": "provider-base.html",
    "authorization_form.html": "provider-authorize.html",
    "end_session_form.html": "provider-end-session.html",
    "error.html": "provider-error.html",
}

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


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host



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


