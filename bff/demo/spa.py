"""The sample SPA: static files served under a strict Content-Security-Policy."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# The sample SPA: files in bff/static/ and the strict policy they are served under.
SPA_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
SPA_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
           "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")

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


