"""ASGI-level helpers shared by the web layer and the proxy (no Starlette routing here)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import Send


async def send_error_json(
    send: Send, status: int, error: str, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    """Send the contract's JSON error ``{"error", "detail"}`` straight over ASGI."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
