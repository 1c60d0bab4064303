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
    """Ready when Redis answers and the provider answers its discovery document now.

    The provider is asked at most every couple of seconds (its answer is shared
    with the sign-in's own reachability check). ``?provider=cached`` accepts
    metadata already held instead: signed-in users are served through a provider
    outage, so an orchestrator may prefer to keep such an instance in rotation.
    """
    res = resources(request)
    cached_is_enough = request.query_params.get("provider") == "cached"
    checks: dict[str, str] = {}

    async def store() -> None:
        try:
            await asyncio.wait_for(res.store.ping(), 2.0)
            checks["redis"] = "ok"
        except (BffError, TimeoutError, OSError):
            checks["redis"] = "unreachable"

    async def provider() -> None:
        try:
            fetch = res.metadata.get() if cached_is_enough else res.metadata.ensure_reachable()
            await asyncio.wait_for(fetch, 5.0)
            checks["provider"] = "ok"
        except (BffError, TimeoutError, OSError):
            checks["provider"] = "unreachable"

    await asyncio.gather(store(), provider())
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    down = " and ".join({"redis": "the session store", "provider": "the identity provider"}[name]
                        for name, state in checks.items() if state != "ok")
    return JSONResponse(
        {"error": "unavailable", "detail": f"Not ready: {down} cannot be reached.",
         "status": "unavailable", "checks": checks},
        status_code=503, headers={"Retry-After": "5"},
    )


async def metrics(request: Request) -> Response:
    return Response(resources(request).metrics.render(),
                    media_type="text/plain; version=0.0.4; charset=utf-8")
