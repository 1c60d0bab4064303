"""Forward one request to its upstream: stream the body out, stream the response back, close.

Requests go through one ``UpstreamPool`` (bff.proxy.transport) that lives as long as
the app: keep-alive connections, and no cookie jar, so one user's upstream
``Set-Cookie`` is never replayed on another user's request.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence

import anyio
from starlette.types import Receive, Scope, Send

from bff.asgi import send_error_json
from bff.proxy.body import REPLAY_LIMIT, BodyTooLarge, ClientGone, RequestBody, content_length
from bff.proxy.body import has_body as _has_body
from bff.proxy.headers import inbound_headers
from bff.proxy.transport import UpstreamError, UpstreamPool, UpstreamResponse, UpstreamTimeout
from bff.proxy.websocket import TIMEOUT_DETAIL, UNREACHABLE_DETAIL, relay_websocket

logger = logging.getLogger("bff.proxy")

RawHeaders = list[tuple[bytes, bytes]]
Content = bytes | RequestBody | None
# Status returned by ``Forwarder.http`` when the browser left before any response was sent.
CLIENT_CLOSED = 499
# A length-delimited body up to this size is relayed without a disconnect watcher: the
# upstream has already sized it, so a browser that leaves cannot hold the upstream
# connection open for long, and most API answers skip a task and a cancel scope each.
UNWATCHED_BODY_LIMIT = 64 * 1024


class Forwarder:
    """Streams HTTP requests and relays WebSockets to upstreams; one per app."""

    def __init__(self, pool: UpstreamPool, protected_cookies: Sequence[str] = ()) -> None:
        self._pool = pool
        self.protected_cookies = tuple(protected_cookies)

    @classmethod
    def create(
        cls,
        *,
        max_connections: int = 100,
        max_keepalive_connections: int = 32,
        keepalive_expiry: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Forwarder:
        """A Forwarder with its own connection pool: no cookie jar, no proxy from the env."""
        return cls(UpstreamPool(
            max_connections=max_connections, max_idle=max_keepalive_connections,
            keepalive_expiry=keepalive_expiry, ssl_context=ssl_context,
        ))

    async def aclose(self) -> None:
        """Close every pooled upstream connection."""
        await self._pool.aclose()

    async def http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        url: str,
        headers: list[tuple[bytes, bytes]],
        timeout: float,  # noqa: ASYNC109 - per-phase timeout, not a deadline
        max_body_size: int,
        retry_unauthorized: Callable[[], Awaitable[str | None]] | None = None,
    ) -> int:
        """Forward the request in ``scope`` to ``url`` and stream the answer back.

        Returns the status sent to the browser (499 when it left before anything was
        sent). ``headers`` are the outbound headers, bearer included. On a 401 with a
        replayable body, ``retry_unauthorized`` is asked for a new bearer token and the
        request is sent once more with it; None passes the 401 through.
        """
        incoming: Sequence[tuple[bytes, bytes]] = scope.get("headers", [])
        length = content_length(incoming)
        if max_body_size and length is not None and length > max_body_size:
            return await _too_large(send)
        replayable = not _has_body(incoming) or (length is not None and length <= REPLAY_LIMIT)
        retry = retry_unauthorized if replayable else None
        try:
            content: Content = None
            if _has_body(incoming):
                body = RequestBody(receive, max_body_size)
                content = await body.read_all() if retry is not None else body
            response = await self._pool.request(scope["method"], url, headers, content, timeout)
            if response.status == 401 and retry is not None:
                response = await self._retry(response, retry, scope["method"], url, headers,
                                             content, timeout)
        except BodyTooLarge:
            return await _too_large(send)
        except ClientGone:
            return CLIENT_CLOSED
        except UpstreamTimeout:
            await send_error_json(send, 504, "upstream_timeout", TIMEOUT_DETAIL)
            return 504
        except UpstreamError as exc:
            logger.warning("upstream request failed: %s: %s", type(exc).__name__, exc)
            await send_error_json(send, 502, "upstream_error", UNREACHABLE_DETAIL)
            return 502
        await _relay_response(response, receive, send, self.protected_cookies)
        return response.status

    async def websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        url: str,
        headers: list[tuple[bytes, bytes]],
        session_alive: Callable[[], Awaitable[bool]],
        check_interval: float = 5.0,
        open_timeout: float = 10.0,
    ) -> None:
        """Relay the WebSocket in ``scope`` to ``url`` (ws(s)://, or http(s):// turned into it).

        The browser's socket is accepted only once the upstream accepted (else 502/504
        as an HTTP denial); every ``check_interval`` seconds ``session_alive()`` is
        asked, and False closes both sides with 1008.
        """
        await relay_websocket(
            scope, receive, send, url=url, headers=headers, session_alive=session_alive,
            check_interval=check_interval, open_timeout=open_timeout,
        )

    async def _retry(
        self, response: UpstreamResponse, retry: Callable[[], Awaitable[str | None]],
        method: str, url: str, headers: RawHeaders, content: Content, seconds: float,
    ) -> UpstreamResponse:
        # The 401 stays open while the token is refreshed so it can still be passed through.
        try:
            token = await retry()
        except BaseException:
            await response.aclose()
            raise
        if token is None:
            return response
        await response.aclose()
        renewed = [(k, v) for k, v in headers if k.lower() != b"authorization"]
        renewed.append((b"authorization", b"Bearer " + token.encode("ascii")))
        return await self._pool.request(method, url, renewed, content, seconds)


async def _too_large(send: Send) -> int:
    await send_error_json(send, 413, "payload_too_large", "The request body is too large.")
    return 413


async def _relay_response(
    response: UpstreamResponse, receive: Receive, send: Send, protected_cookies: Sequence[str]
) -> None:
    """Send the upstream response chunk by chunk; stop and close it if the browser leaves."""
    complete = False
    try:
        await send({
            "type": "http.response.start",
            "status": response.status,
            "headers": inbound_headers(response.headers, protected_cookies),
        })
        length = content_length(response.headers)
        if length is not None and length <= UNWATCHED_BODY_LIMIT:
            complete = await _pump(response, send)
        else:
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                complete = await _pump(response, send)
                group.cancel_scope.cancel()
        if complete:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        # Otherwise return without finishing: the server closes the connection, so the
        # browser sees a truncated response rather than a falsely complete one.
    except OSError:  # the browser went away before the response started
        pass
    finally:
        # aclose() never suspends (it hands the connection back or closes it), so a
        # pending cancellation cannot interrupt it: no shield needed.
        await response.aclose()


async def _pump(response: UpstreamResponse, send: Send) -> bool:
    """Copy the (de-chunked, still content-encoded) body; False if either side broke mid-stream."""
    try:
        async for chunk in response.chunks():
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamError as exc:
        logger.warning("upstream response broke: %s: %s", type(exc).__name__, exc)
        return False
    except OSError:  # servers that raise on send once the browser has gone
        return False
    return True
