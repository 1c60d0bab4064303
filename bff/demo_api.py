"""A small sample upstream API: what an API behind the gateway receives.

Used by ``bff demo`` and the compose example (``python -m bff.demo_api --port 9000``).
Every endpoint but ``/healthz`` wants ``Authorization: Bearer <token>`` (which the
gateway adds) and answers 401 JSON without it:

* ``GET /whoami``: what the API can see of the token. A JWT's header and claims are
  shown **decoded without verifying the signature** (and labelled so); an opaque
  token only by length, first characters and a fingerprint. Never the whole token.
* ``GET /items``, ``POST /items`` (``{"text": ...}``): a shared in-memory list, to show
  a state-changing call going through the gateway's CSRF check.
* ``GET /time``: the API's clock.

A real API must *verify* the access token (signature against the provider's JWKS,
issuer, audience, expiry) or introspect it; this one only reports what arrived.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("bff.demo.api")

MAX_TEXT_LENGTH = 200
MAX_ITEMS = 100
MAX_BODY_BYTES = 4096
MAX_TOKEN_LENGTH = 16 * 1024
SEEN_TOKENS = 1000
OPAQUE_PREFIX = 4
UNVERIFIED_NOTE = (
    "Decoded WITHOUT verifying the signature: this demo API only shows what it received. "
    "A real API must verify the token (signature, issuer, audience, expiry)."
)
# Request headers worth showing: what the gateway adds or deliberately drops.
SHOWN_HEADERS = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id",
                 "x-forwarded-user", "x-forwarded-email", "user-agent")


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _b64_json(part: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return value if isinstance(value, dict) else None


def unverified_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A compact JWS's header and claims, *without* checking the signature; None if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        return None
    header, claims = _b64_json(parts[0]), _b64_json(parts[1])
    if header is None or claims is None or "alg" not in header:
        return None
    return header, claims


@dataclass(frozen=True)
class Item:
    id: int
    text: str
    author: str | None
    created: float

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "author": self.author,
                "created": int(self.created), "created_iso": _iso(self.created)}


class DemoApi:
    """The API's in-memory state: the items and when each token fingerprint was first seen."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._items: collections.deque[Item] = collections.deque(maxlen=MAX_ITEMS)
        self._next_id = 1
        self._seen: collections.OrderedDict[str, float] = collections.OrderedDict()

    def first_seen(self, fingerprint: str) -> float:
        with self._lock:
            when = self._seen.get(fingerprint)
            if when is None:
                when = self._seen[fingerprint] = self.clock()
                while len(self._seen) > SEEN_TOKENS:
                    self._seen.popitem(last=False)
            return when

    def add(self, text: str, author: str | None) -> Item:
        with self._lock:
            item = Item(self._next_id, text, author, self.clock())
            self._next_id += 1
            self._items.append(item)
            return item

    def items(self) -> list[Item]:
        with self._lock:
            return list(self._items)


def bearer_token(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return token


def fingerprint(token: str) -> str:
    """A short stable name for a token, so the SPA can tell when it changed."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def describe_token(token: str, first_seen: float, now: float) -> dict[str, Any]:
    """What the API can tell about ``token`` without keeping or echoing it."""
    info: dict[str, Any] = {
        "fingerprint": fingerprint(token),
        "length": len(token),
        "first_seen": int(first_seen),
        "first_seen_iso": _iso(first_seen),
    }
    decoded = unverified_jwt(token)
    if decoded is None:
        info.update(kind="opaque", prefix=token[:OPAQUE_PREFIX] + "…")
        return info
    header, claims = decoded
    info.update(kind="jwt", signature_verified=False, note=UNVERIFIED_NOTE,
                header={k: header[k] for k in ("alg", "kid", "typ") if k in header},
                claims=claims)
    for claim in ("iat", "exp"):
        value = claims.get(claim)
        if isinstance(value, int | float) and not isinstance(value, bool):
            info[f"{claim}_iso"] = _iso(value)
    exp = claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        info["expires_in"] = int(exp - now)
    return info


def _author(token: str) -> str | None:
    decoded = unverified_jwt(token)
    if decoded is None:
        return None
    claims = decoded[1]
    for claim in ("name", "email", "sub"):
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return value[:100]
    return None


def create_api(clock: Callable[[], float] = time.time) -> Starlette:
    """The sample API as an ASGI app."""
    state = DemoApi(clock)

    def unauthorized() -> Response:
        return _error(401, "unauthenticated", "This API needs an 'Authorization: Bearer' token.",
                      {"WWW-Authenticate": 'Bearer realm="bff-demo-api"'})

    async def whoami(request: Request) -> Response:
        token = bearer_token(request)
        if token is None:
            return unauthorized()
        now = state.clock()
        info = describe_token(token, state.first_seen(fingerprint(token)), now)
        log.info("whoami", extra={"token": info["fingerprint"], "kind": info["kind"]})
        headers = {name: request.headers[name] for name in SHOWN_HEADERS if name in request.headers}
        return JSONResponse({
            "api": "bff demo API",
            "now": int(now),
            "now_iso": _iso(now),
            "token": info,
            "request": {
                "method": request.method,
                "path": request.url.path,
                "headers": headers,
                # The gateway must not pass these on: the API gets a token, never the session.
                "cookie_received": "cookie" in request.headers,
                "csrf_header_received": "x-csrf" in request.headers,
            },
        })

    async def list_items(request: Request) -> Response:
        if bearer_token(request) is None:
            return unauthorized()
        return JSONResponse({"items": [item.to_json() for item in state.items()]})

    async def add_item(request: Request) -> Response:
        token = bearer_token(request)
        if token is None:
            return unauthorized()
        if "application/json" not in request.headers.get("content-type", ""):
            return _error(415, "unsupported_media_type", "Send a JSON body: {\"text\": \"...\"}.")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _error(413, "too_large", f"The body may be at most {MAX_BODY_BYTES} bytes.")
        try:
            data = json.loads(body)
        except ValueError:
            return _error(400, "invalid_json", "The body is not valid JSON.")
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str):
            return _error(422, "invalid_item", "'text' must be a string.")
        text = text.strip()
        if not text:
            return _error(422, "invalid_item", "'text' must not be empty.")
        if len(text) > MAX_TEXT_LENGTH:
            return _error(422, "invalid_item",
                          f"'text' may be at most {MAX_TEXT_LENGTH} characters.")
        if any(ord(c) < 32 for c in text):
            return _error(422, "invalid_item", "'text' must not contain control characters.")
        item = state.add(text, _author(token))
        log.info("item added", extra={"item": item.id})
        return JSONResponse(item.to_json(), status_code=201)

    async def now(request: Request) -> Response:
        if bearer_token(request) is None:
            return unauthorized()
        when = state.clock()
        return JSONResponse({"now": int(when), "now_iso": _iso(when)})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def not_found(request: Request, exc: Exception) -> Response:
        if bearer_token(request) is None:
            return unauthorized()
        return _error(404, "not_found", "This demo API has /whoami, /items and /time.")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, "method_not_allowed", "This method is not allowed here.")

    app = Starlette(
        routes=[
            Route("/whoami", whoami, methods=["GET"]),
            Route("/items", list_items, methods=["GET"]),
            Route("/items", add_item, methods=["POST"]),
            Route("/time", now, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
    )
    app.state.demo = state
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bff.demo_api",
                                     description="the sample API that bff demo proxies to")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)

    import uvicorn

    from bff.logs import configure_logging

    configure_logging("json")
    uvicorn.run(create_api(), host=args.host, port=args.port, log_config=None,
                access_log=False, server_header=False, proxy_headers=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
