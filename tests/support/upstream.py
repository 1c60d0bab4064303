"""A real upstream API for gateway tests: echoes what it received, can be slow or picky."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class UpstreamLog:
    """What the upstream saw: the bearer tokens, in arrival order."""

    bearers: list[str] = field(default_factory=list)
    rejected_tokens: set[str] = field(default_factory=set)


def upstream_app(log: UpstreamLog) -> Starlette:
    async def echo(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            log.bearers.append(auth[7:])
            if auth[7:] in log.rejected_tokens:
                return JSONResponse({"error": "token revoked"}, status_code=401)
        body = await request.body()
        response = JSONResponse({
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
            "query": request.url.query,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_length": len(body),
        })
        response.headers.append("Set-Cookie", "upstream=kept; Path=/")
        if request.query_params.get("plant"):
            response.headers.append("Set-Cookie", f"{request.query_params['plant']}=planted; Path=/")
        return response

    async def slow(request: Request) -> Response:
        await asyncio.sleep(float(request.query_params.get("s", "5")))
        return JSONResponse({"slow": True})

    return Starlette(routes=[
        Route("/slow", slow),
        Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ])
