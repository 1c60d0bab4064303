"""The browser's request body, read from ASGI ``receive``: streamed, or buffered when small."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import Receive

# A body this small may be held in memory so a request can be sent again after a 401.
REPLAY_LIMIT = 64 * 1024


class BodyTooLarge(Exception):
    """The request body grew past the route's ``max_body_size``."""


class ClientGone(Exception):
    """The browser disconnected before the request body was complete."""


def content_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    """The declared Content-Length, or None when absent or unusable."""
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
            return length if length >= 0 else None
    return None


def has_body(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """True when the request announces a body (Content-Length > 0 or Transfer-Encoding)."""
    for name, value in headers:
        key = name.lower()
        if key == b"transfer-encoding":
            return True
        if key == b"content-length" and value.strip() not in (b"", b"0"):
            return True
    return False


class RequestBody:
    """An async iterator over the body chunks as they arrive; nothing is buffered.

    Raises BodyTooLarge past ``limit`` bytes (0 = no limit) and ClientGone on
    ``http.disconnect``; either exception aborts the upstream request that reads it.
    """

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._received = 0
        self._done = False

    def __aiter__(self) -> RequestBody:
        return self

    async def __anext__(self) -> bytes:
        while not self._done:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._done = True
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            self._done = not message.get("more_body", False)
            self._received += len(chunk)
            if self._limit and self._received > self._limit:
                self._done = True
                raise BodyTooLarge
            if chunk:
                return chunk
        raise StopAsyncIteration

    async def read_all(self) -> bytes:
        """The whole body in memory; only for bodies known to be small."""
        return b"".join([chunk async for chunk in self])
