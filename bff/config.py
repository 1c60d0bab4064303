"""Settings: built once from an injected mapping, frozen, every problem collected.

Sources, lowest precedence first: the TOML file named by ``BFF_CONFIG`` (keys
lower-case without the ``BFF_`` prefix), then the environment mapping passed in
(which the CLI fills from ``os.environ`` and an optional ``.env``). Nothing here
reads the process environment or touches the network.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from bff.errors import ConfigError

TokenMode = Literal["required", "optional", "none"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_SCOPES = ("openid", "profile", "email", "offline_access")
BINDINGS = frozenset({"user-agent", "ip"})
LOG_FORMATS = frozenset({"json", "console"})
RESERVED_AUTH_PARAMS = frozenset({
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge",
    "code_challenge_method", "response_mode", "request", "request_uri",
})
DEMO_SECRET = "demo-only-secret-not-for-production-use-0123456789"


@dataclass(frozen=True)
class Route:
    """One proxied prefix and its options."""

    prefix: str
    upstream: str
    token: TokenMode = "required"
    csrf: bool = True
    strip_prefix: bool = True
    timeout: float = 30.0
    pass_user_headers: bool = False
    max_body_size: int = 100 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Everything the gateway needs to know, validated."""

    issuer: str
    client_id: str
    public_url: str
    session_secrets: tuple[str, ...] = field(repr=False)
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    redis_url: str | None = field(default=None, repr=False)
    routes: tuple[Route, ...] = ()
    idle_timeout: int = 1800
    absolute_timeout: int = 28800
    refresh_leeway: int = 60
    cookie_name: str = "bff"
    csrf_header: str = "X-CSRF"
    post_logout_redirect: str = "/"
    trusted_proxies: tuple[Network, ...] = ()
    session_binding: frozenset[str] = frozenset({"user-agent"})
    log_format: str = "json"
    clock_skew: int = 60
    shutdown_timeout: int = 30
    login_rate_limit: int = 30
    login_global_limit: int = 5000
    max_header_size: int = 16384
    max_cookie_size: int = 8192
    websocket_check_interval: int = 5
    extra_auth_params: tuple[tuple[str, str], ...] = ()
    demo: bool = False

    @property
    def secure(self) -> bool:
        return self.public_url.startswith("https://")

    @functools.cached_property  # compared on every API call
    def public_origin(self) -> str:
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"

    @functools.cached_property  # read several times per request
    def base_path(self) -> str:
        """The public URL's path prefix, without trailing slash ('' at the root)."""
        return urlsplit(self.public_url).path.rstrip("/")

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_url}/bff/callback"

    @property
    def login_cookie_name(self) -> str:
        return f"{self.cookie_name}-login"


class _Reader:
    """Reads typed values from the merged mapping, collecting problems instead of raising."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        raw = self.values.get(name)
        if raw is None or raw.strip() == "":
            if required:
                self.problems.append(f"{name} is required")
            return default
        return raw.strip()

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be a whole number, got {raw!r}")
            return default
        if value < minimum:
            self.problems.append(f"{name} must be at least {minimum}, got {value}")
            return default
        return value


def _env_key(key: str) -> str:
    return "BFF_" + key.upper()


def _flatten_toml(data: Mapping[str, Any], problems: list[str]) -> tuple[dict[str, str], list[Any]]:
    flat: dict[str, str] = {}
    routes: list[Any] = []
    for key, value in data.items():
        if key == "routes":
            if isinstance(value, list):
                routes = value
            else:
                problems.append("routes in the BFF_CONFIG file must be an array of tables")
        elif isinstance(value, bool):
            flat[_env_key(key)] = "true" if value else "false"
        elif isinstance(value, list):
            flat[_env_key(key)] = ",".join(str(v) for v in value)
        elif isinstance(value, str | int | float):
            flat[_env_key(key)] = str(value)
        else:
            problems.append(f"{key} in the BFF_CONFIG file has an unsupported type")
    return flat, routes


def _check_url(name: str, value: str, problems: list[str], *, allow_path: bool = True) -> str:
    parts = urlsplit(value)
    # urlsplit silently drops tabs and newlines; they must not reach a request line.
    if any(c <= " " or c == "\x7f" for c in value):
        problems.append(f"{name} must not contain spaces or control characters, got {value!r}")
    elif parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"{name} must be an absolute http(s) URL, got {value!r}")
    elif parts.query or parts.fragment:
        problems.append(f"{name} must not have a query or fragment")
    elif not allow_path and parts.path not in ("", "/"):
        problems.append(f"{name} must not have a path")
    return value.rstrip("/")


def _check_prefix(prefix: str, where: str, problems: list[str]) -> str:
    if not prefix.startswith("/") or any(c in prefix for c in "?#%\\ ") or "//" in prefix:
        problems.append(f"{where}: route prefix must be a plain path starting with '/', got {prefix!r}")
        return prefix
    normalised = prefix.rstrip("/") or "/"
    if normalised == "/bff" or normalised.startswith("/bff/") or normalised == "/":
        problems.append(f"{where}: route prefix {prefix!r} would shadow the gateway's own endpoints")
    if normalised in ("/healthz", "/readyz", "/metrics"):
        problems.append(f"{where}: route prefix {prefix!r} would shadow {normalised}")
    return normalised


def _bool(value: Any, where: str, problems: list[str], default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    problems.append(f"{where} must be true or false, got {value!r}")
    return default


def _parse_routes(env_routes: str | None, toml_routes: list[Any], problems: list[str]) -> tuple[Route, ...]:
    routes: list[Route] = []
    if env_routes:
        for item in env_routes.split(","):
            item = item.strip()
            if not item:
                continue
            prefix, sep, upstream = item.partition("=")
            if not sep:
                problems.append(f"BFF_ROUTES: {item!r} is not PREFIX=URL")
                continue
            where = f"BFF_ROUTES {prefix.strip()!r}"
            routes.append(
                Route(
                    prefix=_check_prefix(prefix.strip(), where, problems),
                    upstream=_check_url(where, upstream.strip(), problems),
                )
            )
    for index, table in enumerate(toml_routes):
        where = f"routes[{index}]"
        if not isinstance(table, dict):
            problems.append(f"{where} must be a table")
            continue
        unknown = set(table) - {
            "prefix", "upstream", "token", "csrf", "strip_prefix", "timeout",
            "pass_user_headers", "max_body_size",
        }
        if unknown:
            problems.append(f"{where}: unknown option(s) {', '.join(sorted(unknown))}")
        t_prefix, t_upstream = table.get("prefix"), table.get("upstream")
        if not isinstance(t_prefix, str) or not isinstance(t_upstream, str):
            problems.append(f"{where}: prefix and upstream are required strings")
            continue
        token: TokenMode = table.get("token", "required")
        if token not in ("required", "optional", "none"):
            problems.append(f"{where}: token must be required, optional or none, got {token!r}")
            token = "required"
        timeout = table.get("timeout", 30.0)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not (
            0 < timeout and math.isfinite(timeout)
        ):
            problems.append(f"{where}: timeout must be a positive number of seconds")
            timeout = 30.0
        max_body = table.get("max_body_size", Route.max_body_size)
        if not isinstance(max_body, int) or isinstance(max_body, bool) or max_body < 0:
            problems.append(f"{where}: max_body_size must be a whole number of bytes (0 = no limit)")
            max_body = Route.max_body_size
        routes.append(
            Route(
                prefix=_check_prefix(t_prefix, where, problems),
                upstream=_check_url(where, t_upstream, problems),
                token=token,
                csrf=_bool(table.get("csrf"), f"{where}.csrf", problems, True),
                strip_prefix=_bool(table.get("strip_prefix"), f"{where}.strip_prefix", problems, True),
                timeout=float(timeout),
                pass_user_headers=_bool(
                    table.get("pass_user_headers"), f"{where}.pass_user_headers", problems, False
                ),
                max_body_size=max_body,
            )
        )
    seen: set[str] = set()
    for route in routes:
        if route.prefix in seen:
            problems.append(f"route prefix {route.prefix!r} is defined twice")
        seen.add(route.prefix)
    return tuple(routes)


def load_settings(env: Mapping[str, str], *, demo: bool = False) -> Settings:
    """Build Settings from ``env`` (and the TOML file it names), or raise ConfigError."""
    problems: list[str] = []
    merged: dict[str, str] = {}
    toml_routes: list[Any] = []
    config_path = env.get("BFF_CONFIG", "").strip()
    if config_path:
        try:
            data = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            problems.append(f"BFF_CONFIG: file {config_path!r} does not exist")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"BFF_CONFIG: cannot read {config_path!r}: {exc}")
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"BFF_CONFIG: {config_path!r} is not valid TOML: {exc}")
        else:
            merged, toml_routes = _flatten_toml(data, problems)
    merged.update({k: v for k, v in env.items() if k.startswith("BFF_")})
    read = _Reader(merged)

    issuer = read.text("BFF_ISSUER", required=True) or ""
    if issuer:
        _check_url("BFF_ISSUER", issuer, problems)
        if issuer.endswith("/") and issuer != issuer.rstrip("/"):
            pass  # kept verbatim: the discovery document's issuer must equal it exactly
    client_id = read.text("BFF_CLIENT_ID", required=True) or ""
    public_url = read.text("BFF_PUBLIC_URL", required=True) or ""
    if public_url:
        public_url = _check_url("BFF_PUBLIC_URL", public_url, problems)

    raw_secrets = read.text("BFF_SESSION_SECRET")
    if raw_secrets is None:
        if demo:
            raw_secrets = DEMO_SECRET
        else:
            problems.append("BFF_SESSION_SECRET is required (generate one with `bff keygen`)")
            raw_secrets = ""
    secrets = tuple(s.strip() for s in raw_secrets.split(",") if s.strip())
    for position, secret in enumerate(secrets, start=1):
        if len(secret.encode()) < 32:
            problems.append(f"BFF_SESSION_SECRET: secret #{position} is shorter than 32 bytes")

    scopes = tuple((read.text("BFF_SCOPES") or " ".join(DEFAULT_SCOPES)).split())
    if "openid" not in scopes:
        problems.append("BFF_SCOPES must include openid")

    redis_url = read.text("BFF_REDIS_URL")
    if redis_url is not None:
        scheme = urlsplit(redis_url).scheme
        if scheme not in ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster"):
            problems.append(
                "BFF_REDIS_URL must start with redis://, rediss://, unix://, "
                f"redis+sentinel:// or redis+cluster://, got scheme {scheme!r}"
            )

    idle = read.integer("BFF_SESSION_IDLE_TIMEOUT", 1800, minimum=1)
    absolute = read.integer("BFF_SESSION_ABSOLUTE_TIMEOUT", 28800, minimum=1)
    leeway = read.integer("BFF_REFRESH_LEEWAY", 60)
    clock_skew = read.integer("BFF_CLOCK_SKEW", 60)
    shutdown = read.integer("BFF_SHUTDOWN_TIMEOUT", 30)
    login_rate = read.integer("BFF_LOGIN_RATE_LIMIT", 30, minimum=1)
    login_global = read.integer("BFF_LOGIN_GLOBAL_LIMIT", 5000, minimum=1)
    max_header = read.integer("BFF_MAX_HEADER_SIZE", 16384, minimum=1024)
    max_cookie = read.integer("BFF_MAX_COOKIE_SIZE", 8192, minimum=256)
    ws_check = read.integer("BFF_WEBSOCKET_CHECK_INTERVAL", 5, minimum=1)
    extra_params = tuple(parse_qsl(read.text("BFF_EXTRA_AUTH_PARAMS") or "", keep_blank_values=False))
    for name, _ in extra_params:
        if name in RESERVED_AUTH_PARAMS:
            problems.append(f"BFF_EXTRA_AUTH_PARAMS must not set {name!r}: bff sets it itself")

    secure = public_url.startswith("https://")
    cookie_name = read.text("BFF_COOKIE_NAME") or ("__Host-bff" if secure else "bff")
    if cookie_name.startswith("__Host-") and not secure:
        problems.append("BFF_COOKIE_NAME: a __Host- cookie needs an https BFF_PUBLIC_URL")
    if not all(c.isalnum() or c in "-_." for c in cookie_name):
        problems.append(f"BFF_COOKIE_NAME {cookie_name!r} has characters not allowed in a cookie name")
    csrf_header = read.text("BFF_CSRF_HEADER") or "X-CSRF"
    if not all(c.isalnum() or c == "-" for c in csrf_header):
        problems.append(f"BFF_CSRF_HEADER {csrf_header!r} is not a valid header name")

    post_logout = read.text("BFF_POST_LOGOUT_REDIRECT") or "/"
    if not (post_logout.startswith("/") and not post_logout.startswith(("//", "/\\"))):
        if not post_logout.startswith(("https://", "http://")):
            problems.append("BFF_POST_LOGOUT_REDIRECT must be a local path or an absolute URL")

    proxies: list[Network] = []
    for item in (read.text("BFF_TRUSTED_PROXIES") or "").split(","):
        if item.strip():
            try:
                proxies.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                problems.append(f"BFF_TRUSTED_PROXIES: {item.strip()!r} is not an address or CIDR")

    binding_raw = (read.text("BFF_SESSION_BINDING") or "user-agent").replace(" ", "")
    binding = frozenset(b for b in binding_raw.split(",") if b and b != "none")
    if binding - BINDINGS or ("none" in binding_raw.split(",") and binding):
        problems.append(
            "BFF_SESSION_BINDING must be none, user-agent, ip or user-agent,ip, "
            f"got {binding_raw!r}"
        )
        binding = frozenset({"user-agent"})

    log_format = read.text("BFF_LOG_FORMAT") or ("console" if demo else "json")
    if log_format not in LOG_FORMATS:
        problems.append(f"BFF_LOG_FORMAT must be json or console, got {log_format!r}")

    routes = _parse_routes(read.text("BFF_ROUTES"), toml_routes, problems)
    problems.extend(read.problems)
    if problems:
        raise ConfigError(problems)
    return Settings(
        issuer=issuer,
        client_id=client_id,
        client_secret=read.text("BFF_CLIENT_SECRET"),
        public_url=public_url,
        session_secrets=secrets,
        scopes=scopes,
        redis_url=redis_url,
        routes=routes,
        idle_timeout=idle,
        absolute_timeout=absolute,
        refresh_leeway=leeway,
        cookie_name=cookie_name,
        csrf_header=csrf_header,
        post_logout_redirect=post_logout,
        trusted_proxies=tuple(proxies),
        session_binding=binding,
        log_format=log_format,
        clock_skew=clock_skew,
        shutdown_timeout=shutdown,
        login_rate_limit=login_rate,
        login_global_limit=login_global,
        max_header_size=max_header,
        max_cookie_size=max_cookie,
        websocket_check_interval=ws_check,
        extra_auth_params=extra_params,
        demo=demo,
    )
