"""The app factory and ``serve()``: routes, middleware order, lifespan."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bff.config import Settings
from bff.resources import Resources, open_resources
from bff.web import login, logout, ops, sessions
from bff.web.gateway import Gateway
from bff.web.guards import CsrfGuard, ErrorBoundary, failure_response
from bff.web.responses import error_json


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_json(404, "not_found", "There is nothing at this address.")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return error_json(405, "method_not_allowed", "This method is not allowed here.")


def build_routes(prefix: str, extra: list[Route] | None = None) -> list[Route]:
    bff = prefix + "/bff"
    return [
        Route(f"{bff}/login", login.login, methods=["GET"]),
        Route(f"{bff}/callback", login.callback, methods=["GET"]),
        Route(f"{bff}/user", sessions.user, methods=["GET"]),
        Route(f"{bff}/logout", logout.logout_post, methods=["POST"]),
        Route(f"{bff}/logout", logout.logout_get, methods=["GET"]),
        Route(f"{bff}/logout-all", logout.logout_all, methods=["POST"]),
        Route(f"{bff}/sessions", sessions.list_sessions, methods=["GET"]),
        Route(f"{bff}/sessions/{{session_id}}", sessions.delete_session, methods=["DELETE"]),
        Route(f"{bff}/backchannel-logout", logout.backchannel_logout, methods=["POST"]),
        Route("/healthz", ops.healthz, methods=["GET"]),
        Route("/readyz", ops.readyz, methods=["GET"]),
        Route("/metrics", ops.metrics, methods=["GET"]),
        *(extra or []),
    ]


class BffApp:
    """The ASGI app: error boundary -> CSRF guard -> gateway dispatch -> Starlette routes.

    Resources are opened in the lifespan; the middleware stack is built then,
    because it needs them.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        extra_routes: list[Route] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.resources: Resources | None = None
        self._stack: ASGIApp | None = None

        async def failure(request: Request, exc: Exception) -> Response:
            # Starlette answers an endpoint's exception itself, then re-raises it to
            # ErrorBoundary (which logs and counts it): give the contract's answer.
            return failure_response(request.scope, exc, settings)

        self.router = Starlette(
            routes=build_routes(settings.base_path, extra_routes),
            exception_handlers={404: _not_found, 405: _not_allowed, Exception: failure},
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[Mapping[str, Any]]:
        async with open_resources(self.settings, clock=self.clock) as res:
            self.resources = res
            app.state.resources = res
            gateway = Gateway(app, res)
            self._stack = ErrorBoundary(CsrfGuard(gateway, self.settings), self.settings, res.metrics)
            yield {}
            self._stack = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or self._stack is None:
            await self.router(scope, receive, send)
            return
        scope["app"] = self.router
        await self._stack(scope, receive, send)


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time,
               extra_routes: list[Route] | None = None) -> BffApp:
    """An ASGI app for ``settings`` (which must name a Redis URL)."""
    return BffApp(settings, clock=clock, extra_routes=extra_routes)
