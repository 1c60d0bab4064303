"""Pure functions over ASGI raw header lists: what goes to the upstream and what comes back.

Header names are compared after lower-casing and mapping ``_`` to ``-``: many servers
(nginx, CGI, WSGI, PHP) fold ``X_Forwarded_User`` and ``x-forwarded-user`` into the
same variable, so a spoofed identity header in any spelling must go.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from functools import lru_cache

RawHeaders = list[tuple[bytes, bytes]]

# RFC 9110 section 7.6.1, plus the non-standard Proxy-Connection.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
})

# Never forwarded from the browser: its credentials, its Host, and what the gateway sets itself.
_REQUEST_DROP = frozenset({
    "cookie", "cookie2", "authorization", "host", "expect", "forwarded", "x-real-ip",
    "x-request-id",
})

# Headers upstreams (and the auth proxies they sit behind) read as "who the user is".
IDENTITY_HEADERS = frozenset({
    "remote-user", "remote-email", "remote-groups", "remote-name",
    "x-user", "x-email", "x-user-id", "x-userid", "x-user-email", "x-user-name", "x-username",
    "x-user-groups", "x-groups", "x-preferred-username", "x-auth-user", "x-auth-email",
    "x-authenticated-user", "x-authenticated-userid", "x-authenticated-email",
    "x-authenticated-groups", "x-access-token", "x-id-token", "x-userinfo",
    "x-jwt-assertion", "x-jwt-payload", "x-consumer-id", "x-consumer-username",
    "x-credential-identifier", "x-anonymous-consumer", "x-webauth-user", "x-webauth-email",
    "x-webauth-name", "x-webauth-groups",
})
# Whole families: x-forwarded-user/-email/-groups/-access-token (oauth2-proxy),
# x-auth-request-* (oauth2-proxy), oidc-* (mod_auth_openidc's OIDC_CLAIM_*), the
# cloud load balancers' own, and every other X-Forwarded-* (the gateway sets its own).
IDENTITY_PREFIXES = (
    "x-forwarded-", "x-auth-request-", "x-remote-", "oidc-", "x-amzn-oidc-",
    "x-ms-client-principal", "x-goog-authenticated-user-", "cf-access-",
)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def normalise(name: str | bytes) -> str:
    """A header name as servers compare it: lower case, ``_`` read as ``-``."""
    text = name.decode("latin-1") if isinstance(name, bytes) else name
    return text.strip().lower().replace("_", "-")


# The same few header names arrive on every request: remember their verdicts
# (bounded, so a flood of made-up names only evicts entries).
_normalised = lru_cache(maxsize=2048)(normalise)


@lru_cache(maxsize=2048)
def _request_rule(name: bytes) -> tuple[str, bool]:
    """(normalised name, never forwarded to an upstream)."""
    key = _normalised(name)
    return key, key in HOP_BY_HOP or key in _REQUEST_DROP or is_identity_header(key)


def is_identity_header(name: str | bytes) -> bool:
    """True for any spelling of a header that claims the user's identity."""
    key = normalise(name)
    return key in IDENTITY_HEADERS or key.startswith(IDENTITY_PREFIXES)


def _connection_named(headers: Sequence[tuple[bytes, bytes]]) -> set[str]:
    named: set[str] = set()
    for name, value in headers:
        if _normalised(name) == "connection":
            named.update(normalise(token) for token in value.split(b",") if token.strip())
    return named


def _clean_value(value: str) -> bytes:
    # A claim with CR/LF must not become a second header line.
    if value.isascii() and value.isprintable():  # the usual token: nothing to remove
        return value.encode("ascii")
    return "".join(c for c in value if c >= " " and c != "\x7f").encode("utf-8")


def outbound_headers(
    headers: Sequence[tuple[bytes, bytes]],
    *,
    client_addr: str | None,
    scheme: str,
    host: str,
    trusted: bool,
    request_id: str,
    bearer: str | None,
    user_headers: Mapping[str, str] | None,
    strip: Iterable[str] = (),
) -> RawHeaders:
    """The headers for the upstream request, built from the browser's ``headers``.

    ``scheme`` and ``host`` are the values the gateway resolved (from trusted proxies
    or its own listener); ``trusted`` says whether the peer is a trusted proxy, whose
    ``X-Forwarded-For`` chain is then extended instead of replaced.
    """
    own = {normalise(name) for name in (user_headers or {})}
    dropped = _connection_named(headers) | {normalise(name) for name in strip} | own
    chain: list[bytes] = []
    out: RawHeaders = []
    for name, value in headers:
        key, never = _request_rule(name)
        if key == "x-forwarded-for":
            chain.append(value.strip())
            continue
        if never or key in dropped:
            continue
        out.append((name, value))
    peer = [client_addr.encode("latin-1")] if client_addr else []
    forwarded_for = [item for item in chain if item] + peer if trusted else peer
    if forwarded_for:
        out.append((b"x-forwarded-for", b", ".join(forwarded_for)))
    out.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    out.append((b"x-forwarded-host", host.encode("latin-1")))
    out.append((b"x-request-id", request_id.encode("latin-1")))
    if bearer is not None:
        out.append((b"authorization", b"Bearer " + _clean_value(bearer)))
    for user_name, user_value in (user_headers or {}).items():
        out.append((user_name.lower().encode("latin-1"), _clean_value(user_value)))
    return out


def inbound_headers(
    headers: Sequence[tuple[bytes, bytes]], protected_cookies: Collection[str] = ()
) -> RawHeaders:
    """The upstream response's headers minus hop-by-hop ones; Set-Cookie and Content-Length stay.

    A Set-Cookie for one of ``protected_cookies`` (the gateway's own session and
    login cookies) is dropped: an upstream must not be able to plant a session.
    """
    dropped = _connection_named(headers)
    protected = {name.encode("latin-1") for name in protected_cookies}
    return [
        (name, value)
        for name, value in headers
        if (key := _normalised(name)) not in HOP_BY_HOP and key not in dropped
        and not (key == "set-cookie" and value.split(b"=", 1)[0].strip() in protected)
    ]


class RequestIds:
    """Fresh request ids: a random prefix per instance and a counter (32 hex digits).

    Unique across instances and workers without a system call per request. Each
    uvicorn worker builds its app (and so its own RequestIds) after it started.
    """

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._count = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"


def request_id(headers: Sequence[tuple[bytes, bytes]],
               fresh: Callable[[], str] = lambda: secrets.token_hex(16)) -> str:
    """The browser's ``X-Request-ID`` when it is a sane token, else ``fresh()``."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            text = value.decode("latin-1").strip()
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return fresh()
