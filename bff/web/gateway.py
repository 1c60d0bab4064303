"""The proxied routes: CSRF, session, fresh token, then hand over to the forwarder.

A proxied request: CSRF guard -> session loader -> route match -> ensure_fresh
(the only place that writes) -> outbound headers -> stream to upstream ->
stream back. XHR/fetch calls are never redirected to the provider; a browser
navigation without a session is sent to ``/bff/login``.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import quote

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send

from bff.config import Route
from bff.errors import SessionEnded, StoreUnavailable
from bff.proxy.forward import Forwarder
from bff.proxy.headers import outbound_headers
from bff.proxy.paths import UnsafePath, join_upstream, strip_raw_prefix
from bff.proxy.routes import RouteTable
from bff.resources import Resources
from bff.session.cookies import read_cookie
from bff.session.model import Session
from bff.session.refresh import Fresh
from bff.web.client import client_info, header, resolve_origin
from bff.web.guards import csrf_problem
from bff.web.responses import send_error_json, wants_html

log = logging.getLogger("bff.gateway")


class Gateway:
    """Dispatches route prefixes to the proxy and everything else to ``app``."""

    def __init__(self, app: ASGIApp, resources: Resources) -> None:
        self.app = app
        self.res = resources
        self.settings = resources.settings
        self.table = RouteTable(self.settings.routes)
        self.forwarder: Forwarder = resources.forwarder
        # Metric children by (route, status): ``labels()`` takes a lock and builds a key each time.
        self._counters: dict[tuple[str, int], Counter] = {}
        self._latencies: dict[str, Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        base = self.settings.base_path
        if base and not path.startswith(base):
            await self.app(scope, receive, send)
            return
        match = self.table.match(path[len(base):] or "/")
        if match is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        prefix = match.route.prefix
        status = await self._proxy(scope, receive, send, match.route, match.remainder)
        counter = self._counters.get((prefix, status))
        if counter is None:
            counter = self._counters[prefix, status] = self.res.metrics.requests.labels(
                prefix, str(status))
        counter.inc()
        if status < 500 or status in (502, 504):
            latency = self._latencies.get(prefix)
            if latency is None:
                latency = self._latencies[prefix] = self.res.metrics.upstream_latency.labels(prefix)
            latency.observe(time.perf_counter() - started)

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, route: Route,
                     remainder: str) -> int:
        websocket = scope["type"] == "websocket"
        if route.csrf or websocket:
            problem = csrf_problem(scope, self.settings, websocket=websocket)
            if problem is not None:
                if (not websocket and route.token == "required"
                        and await self._navigation_without_session(scope)):
                    return await self._redirect_to_login(scope, send)
                log.info("csrf rejected on %s: %s", route.prefix, problem)
                return await self._deny(scope, send, 403, "csrf",
                                        "This request is missing the gateway's CSRF protection.")
        try:
            raw = scope.get("raw_path") or scope["path"].encode()
            if self.settings.base_path:
                raw = strip_raw_prefix(raw, self.settings.base_path)
            if route.strip_prefix:
                raw = strip_raw_prefix(raw, route.prefix)
            url = join_upstream(route.upstream, raw, scope.get("query_string", b""))
        except UnsafePath:
            return await self._deny(scope, send, 400, "bad_request",
                                    "The request path is not allowed.")
        fresh: Fresh | None = None
        session: Session | None = None
        origin = resolve_origin(scope, self.settings.trusted_proxies, "http")
        if route.token != "none" or route.pass_user_headers:
            who = client_info(scope, self.settings.trusted_proxies,
                              scope.get("bff.request_id", ""), origin)
            session = await self.res.sessions.load(self._cookie(scope), who)
            if session is None and route.token == "required":
                if not websocket and wants_html(scope, self.settings.csrf_header):
                    return await self._redirect_to_login(scope, send)
                return await self._deny(scope, send, 401, "unauthenticated",
                                        "You are not signed in, or your session has ended.")
            if session is not None and route.token != "none":
                try:
                    fresh = await self.res.refresher.ensure_fresh(session)
                except SessionEnded:
                    if route.token == "required":
                        return await self._deny(scope, send, 401, "unauthenticated",
                                                "Your session has ended. Please sign in again.")
                    session = None
        user_headers = None
        if route.pass_user_headers and session is not None:
            user_headers = {"X-Forwarded-User": session.sub}
            email = session.claims.get("email")
            if isinstance(email, str):
                user_headers["X-Forwarded-Email"] = email
        headers = outbound_headers(
            scope.get("headers", []), client_addr=origin.ip or None, scheme=origin.scheme,
            host=origin.host, trusted=origin.peer_trusted,
            request_id=scope.get("bff.request_id", ""),
            bearer=fresh.access_token if fresh else None, user_headers=user_headers,
            strip=(self.settings.csrf_header,),
        )
        if websocket:
            key = session.key if session is not None else None
            await self.res.forwarder_for(route.prefix).websocket(
                scope, receive, send, url=url, headers=headers,
                session_alive=lambda: self._alive(key),
                check_interval=self.settings.websocket_check_interval,
            )
            return 101

        async def retry_unauthorized() -> str | None:
            if fresh is None:
                return None
            try:
                again = await self.res.refresher.ensure_fresh(fresh.session, force=True)
            except SessionEnded:
                return None
            return again.access_token

        return await self.res.forwarder_for(route.prefix).http(
            scope, receive, send, url=url, headers=headers, timeout=route.timeout,
            max_body_size=route.max_body_size,
            retry_unauthorized=retry_unauthorized if fresh is not None else None,
        )

    def _cookie(self, scope: Scope) -> str | None:
        return read_cookie(header(scope, b"cookie"), self.settings.cookie_name)

    async def _navigation_without_session(self, scope: Scope) -> bool:
        """A top-level GET without a live session: it goes to the login, not to a 403.

        Only safe methods qualify, and nothing is proxied either way: the store is
        read just to choose between the login redirect and the CSRF refusal.
        """
        if scope.get("method") not in ("GET", "HEAD") or not wants_html(scope, self.settings.csrf_header):
            return False
        cookie = self._cookie(scope)
        if self.res.sessions.key_from_cookie(cookie) is None:
            return True
        who = client_info(scope, self.settings.trusted_proxies, scope.get("bff.request_id", ""))
        return await self.res.sessions.load(cookie, who) is None

    async def _alive(self, key: str | None) -> bool:
        if key is None:
            return True
        try:
            session = await self.res.store.get(key)
        except StoreUnavailable:  # a store outage does not end the socket; the next check decides
            return True
        return session is not None and self.res.sessions.timed_out(session, self.res.clock()) is None

    async def _redirect_to_login(self, scope: Scope, send: Send) -> int:
        path = scope.get("raw_path") or scope["path"].encode()
        target = path.decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        location = f"{self.settings.base_path}/bff/login?returnTo={quote(target, safe='')}"
        await send({"type": "http.response.start", "status": 302, "headers": [
            (b"location", location.encode("latin-1")), (b"cache-control", b"no-store"),
            (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return 302

    async def _deny(self, scope: Scope, send: Send, status: int, error: str, detail: str) -> int:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return status
        await send_error_json(send, status, error, detail)
        return status

