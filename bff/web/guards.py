"""Plain ASGI middleware: request context and error boundary, CSRF for the gateway's JSON API.

The boundary turns the expected failures into the contract's answers (503 with
Retry-After for an unreachable store or provider, 401 for an ended session) and
anything unexpected into a logged 500 without a traceback to the browser.
"""

from __future__ import annotations

import hmac
import logging

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bff.config import Settings
from bff.errors import ProviderUnavailable, SessionEnded, StoreUnavailable
from bff.metrics import Metrics
from bff.proxy.headers import RequestIds, request_id
from bff.web.responses import error_response

log = logging.getLogger("bff.web")

# The gateway's own JSON endpoints that need the CSRF header (the rest are
# navigations, or server-to-server like the back-channel logout).
OPS_PATHS = ("/healthz", "/readyz", "/metrics")
CSRF_EXEMPT = ("/bff/login", "/bff/callback", "/bff/backchannel-logout")
# On every answer of the gateway's own endpoints unless the endpoint set its own
# (the HTML error pages carry a CSP that also allows their inline style).
OWN_HEADERS = (
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class ErrorBoundary:
    """Request id, header limits, security headers, and errors in the contract's shape."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.new_request_id = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = request_id(scope.get("headers", ()), self.new_request_id)
        scope["bff.request_id"] = rid
        path: str = scope.get("path", "")
        own = path.startswith(self.settings.base_path + "/bff/") or path in OPS_PATHS
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                if own:
                    names = {k.lower() for k, _ in headers}
                    if b"cache-control" not in names:
                        headers.append((b"cache-control", b"no-store"))
                    for name, value in OWN_HEADERS:
                        if name not in names:
                            headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        size = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ()))
        if size > self.settings.max_header_size:
            await self._reject(scope, send_wrapper, 431, "headers_too_large",
                               "The request's headers are too large.")
            return
        for key, value in scope.get("headers", ()):
            if key == b"cookie" and len(value) > self.settings.max_cookie_size:
                await self._reject(scope, send_wrapper, 431, "headers_too_large",
                                   "The request's cookies are too large.")
                return
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            self._note(exc, rid, path)
            if not started:
                await self._reject(scope, send_wrapper, *describe_failure(exc))

    def _note(self, exc: Exception, rid: str, path: str) -> None:
        if isinstance(exc, StoreUnavailable):
            self.metrics.store_errors.inc()
            log.warning("session store unavailable: %s", exc, extra={"request_id": rid})
        elif isinstance(exc, ProviderUnavailable):
            self.metrics.provider_errors.labels("request").inc()
            log.warning("provider unavailable: %s", exc, extra={"request_id": rid})
        elif not isinstance(exc, SessionEnded):
            log.error("unhandled error", exc_info=exc, extra={"request_id": rid, "path": path})

    async def _reject(self, scope: Scope, send: Send, status: int, error: str, detail: str,
                      headers: dict[str, str] | None = None) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011 if status >= 500 else 1008})
            return
        response = error_response(scope, status, error, detail, headers,
                                  csrf_header=self.settings.csrf_header)
        await response(scope, _no_receive, send)


Failure = tuple[int, str, str, dict[str, str] | None]


def describe_failure(exc: BaseException) -> Failure:
    """The contract's answer for an exception that reached the edge of the app."""
    if isinstance(exc, StoreUnavailable):
        return (503, "unavailable", "The session store is temporarily unreachable. Please retry.",
                {"Retry-After": "2"})
    if isinstance(exc, ProviderUnavailable):
        return (503, "unavailable",
                "The identity provider is temporarily unreachable. Please retry.", {"Retry-After": "5"})
    if isinstance(exc, SessionEnded):
        return 401, "unauthenticated", "Your session has ended. Please sign in again.", None
    return 500, "internal_error", "Something went wrong in the gateway.", None


def failure_response(scope: Scope, exc: BaseException, settings: Settings) -> Response:
    """``describe_failure`` as a response (JSON, or a page for navigations).

    Starlette's outermost middleware answers any exception from an endpoint with
    its own plain-text 500 before re-raising it; the app registers this as its
    handler so endpoints get the same answers as ErrorBoundary gives elsewhere.
    """
    status, error, detail, headers = describe_failure(exc)
    return error_response(scope, status, error, detail, headers, csrf_header=settings.csrf_header)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def csrf_problem(scope: Scope, settings: Settings, *, websocket: bool = False) -> str | None:
    """Why a call fails the CSRF rules, or None when it passes.

    API calls must carry the CSRF header with value ``1`` (a cross-site form or
    link cannot add a custom header); a present ``Origin`` must be ours. Browsers
    cannot add headers to a WebSocket, so there the ``Origin`` is required.
    """
    header = settings.csrf_header.lower().encode()
    value: bytes | None = None
    origin: bytes | None = None
    for key, item in scope.get("headers", ()):
        if key == header:
            value = item
        elif key == b"origin":
            origin = item
    expected = settings.public_origin.encode()
    if websocket:
        if origin is None or not hmac.compare_digest(origin, expected):
            return "websocket origin is not the gateway's own"
        return None
    if origin is not None and origin != b"null" and not hmac.compare_digest(origin, expected):
        return "foreign origin"
    if origin == b"null":
        return "opaque origin"
    if value != b"1":
        return f"missing {settings.csrf_header}: 1 header"
    return None


class CsrfGuard:
    """CSRF checks for the gateway's own JSON endpoints, before any session lookup."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.prefix = settings.base_path + "/bff/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        rest = path[len(self.settings.base_path):]
        method = scope.get("method", "GET")
        exempt = rest in CSRF_EXEMPT or (rest == "/bff/logout" and method == "GET")
        if not exempt:
            problem = csrf_problem(scope, self.settings)
            if problem is not None:
                log.info("csrf rejected: %s", problem, extra={"path": path})
                response = error_response(scope, 403, "csrf", "This request is missing the "
                                          "gateway's CSRF protection.", csrf_header=self.settings.csrf_header)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

