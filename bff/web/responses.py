"""Errors in the contract's shape: JSON for API calls, a readable page for navigations."""

from __future__ import annotations

import html
from collections.abc import Mapping

from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Scope

from bff.asgi import send_error_json

__all__ = ["error_json", "error_page", "error_response", "send_error_json", "wants_html"]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# Pages the gateway renders itself may not be framed, sniffed or leak referrers.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}

TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Request too large",
    429: "Too many requests",
    431: "Request headers too large",
    500: "Internal error",
    502: "Upstream error",
    503: "Temporarily unavailable",
    504: "Upstream timeout",
}


def _header_map(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def wants_html(scope: Scope, csrf_header: str = "x-csrf") -> bool:
    """True for a top-level browser navigation, false for fetch/XHR and API clients.

    fetch() sends ``Sec-Fetch-Mode: cors``/``same-origin`` and ``Sec-Fetch-Dest: empty``;
    a navigation sends ``navigate``/``document``. Without those headers (older
    browsers, curl) ``Accept: text/html`` decides; the CSRF header always means API.
    """
    headers = _header_map(scope)
    if csrf_header.lower() in headers:
        return False
    mode = headers.get("sec-fetch-mode")
    if mode is not None:
        return mode == "navigate"
    dest = headers.get("sec-fetch-dest")
    if dest is not None:
        return dest in ("document", "iframe")
    if headers.get("x-requested-with", "").lower() == "xmlhttprequest":
        return False
    return "text/html" in headers.get("accept", "")


def error_json(
    status: int, error: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The contract's JSON error: ``{"error": code, "detail": sentence}``."""
    return JSONResponse(
        {"error": error, "detail": detail}, status_code=status, headers={**NO_STORE, **(headers or {})}
    )


def error_page(
    status: int, error: str, detail: str, headers: Mapping[str, str] | None = None,
    *, link: tuple[str, str] | None = None,
) -> Response:
    """A small readable HTML page for browser navigations."""
    title = TITLES.get(status, "Error")
    action = ""
    if link is not None:
        action = f'<p><a href="{html.escape(link[0], quote=True)}">{html.escape(link[1])}</a></p>'
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;"
        "padding:0 1rem;color:#222}h1{font-size:1.4rem}code{color:#666}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(detail)}</p>{action}"
        f"<p><code>{status} {html.escape(error)}</code></p></body></html>"
    )
    return HTMLResponse(
        body, status_code=status, headers={**NO_STORE, **SECURITY_HEADERS, **(headers or {})}
    )


def error_response(
    scope: Scope, status: int, error: str, detail: str,
    headers: Mapping[str, str] | None = None, *, csrf_header: str = "x-csrf",
    link: tuple[str, str] | None = None,
) -> Response:
    """JSON for API calls, a page for navigations."""
    if wants_html(scope, csrf_header):
        return error_page(status, error, detail, headers, link=link)
    return error_json(status, error, detail, headers)
