"""``/healthz``, ``/readyz`` and ``/metrics`` for orchestrators and Prometheus."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bff.errors import BffError
from bff.web.deps import resources


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when Redis answers and the provider's metadata can be had."""
    res = resources(request)
    checks: dict[str, str] = {}

    async def store() -> None:
        try:
            await asyncio.wait_for(res.store.ping(), 2.0)
            checks["redis"] = "ok"
        except (BffError, TimeoutError, OSError):
            checks["redis"] = "unreachable"

    async def provider() -> None:
        try:
            await asyncio.wait_for(res.metadata.get(), 5.0)
            checks["provider"] = "ok"
        except (BffError, TimeoutError, OSError):
            checks["provider"] = "unreachable"

    await asyncio.gather(store(), provider())
    ready = all(v == "ok" for v in checks.values())
    headers = {} if ready else {"Retry-After": "5"}
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503, headers=headers)


async def metrics(request: Request) -> Response:
    return Response(resources(request).metrics.render(),
                    media_type="text/plain; version=0.0.4; charset=utf-8")
