"""A stand-in for the lead's gateway: route match, outbound headers, then ``Forwarder``.

No sessions or OIDC here: the bearer token, the refreshed token, the user headers and
whether the session is alive are knobs on ``GatewayOptions`` that tests turn.

Run in another process (for memory measurements) with
``python -m tests.proxy.gateway --route /big=http://127.0.0.1:PORT [--max-body-size N]``;
it prints ``LISTENING PORT <n>`` (see ``servers.ProcessServer``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Receive, Scope, Send

from bff.config import Route
from bff.proxy import Forwarder, RouteTable, UnsafePath, outbound_headers, request_id
from bff.web.responses import send_error_json

from .servers import announce_and_serve


@dataclass
class GatewayOptions:
    bearer: str | None = "token-1"
    refreshed: str | None = None  # what retry_unauthorized answers
    trusted: bool = False  # is the peer a trusted proxy?
    user: dict[str, str] = field(
        default_factory=lambda: {"X-Forwarded-User": "alice", "X-Forwarded-Email": "a@example.org"}
    )
    session_alive: bool = True
    check_interval: float = 5.0
    csrf_header: str = "X-CSRF"
    refresh_calls: int = 0
    statuses: list[int] = field(default_factory=list)


class StandInGateway:
    def __init__(
        self, routes: Sequence[Route], forwarder: Forwarder | None = None,
        options: GatewayOptions | None = None,
    ) -> None:
        self.table = RouteTable(routes)
        self.forwarder = forwarder
        self.options = options or GatewayOptions()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self.forwarder is not None
        match = self.table.match(scope["path"])
        if match is None:
            if scope["type"] == "http":
                await send_error_json(send, 404, "not_found", "No route.")
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        try:
            url = match.upstream_url(scope["raw_path"], scope["query_string"])
        except UnsafePath:
            if scope["type"] == "http":
                await send_error_json(send, 400, "bad_request", "The path is not allowed.")
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        headers = self._headers(scope, match.route)
        if scope["type"] == "websocket":
            await self.forwarder.websocket(
                scope, receive, send, url=url, headers=headers,
                session_alive=self._alive, check_interval=self.options.check_interval,
                open_timeout=match.route.timeout,
            )
            return
        status = await self.forwarder.http(
            scope, receive, send, url=url, headers=headers, timeout=match.route.timeout,
            max_body_size=match.route.max_body_size, retry_unauthorized=self._refresh,
        )
        self.options.statuses.append(status)

    def _headers(self, scope: Scope, route: Route) -> list[tuple[bytes, bytes]]:
        raw = scope["headers"]
        host = dict(raw).get(b"host", b"").decode("latin-1")
        return outbound_headers(
            raw, client_addr=scope["client"][0] if scope.get("client") else None,
            scheme=scope["scheme"], host=host, trusted=self.options.trusted,
            request_id=request_id(raw),
            bearer=self.options.bearer if route.token != "none" else None,
            user_headers=self.options.user if route.pass_user_headers else None,
            strip=[self.options.csrf_header],
        )

    async def _refresh(self) -> str | None:
        self.options.refresh_calls += 1
        return self.options.refreshed

    async def _alive(self) -> bool:
        return self.options.session_alive

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.forwarder = self.forwarder or Forwarder.create()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.forwarder is not None:
                    await self.forwarder.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _parse(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--route", action="append", default=[])
    parser.add_argument("--max-body-size", type=int, default=0)
    args = parser.parse_args(argv)
    routes = []
    for item in args.route:
        prefix, _, upstream = item.partition("=")
        routes.append(Route(prefix=prefix, upstream=upstream, max_body_size=args.max_body_size))
    return {"routes": routes}


def main(argv: Sequence[str] | None = None) -> None:
    gateway = StandInGateway(**_parse(argv))
    announce_and_serve(gateway, lifespan="on")


if __name__ == "__main__":
    main()
