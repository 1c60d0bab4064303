"""Forwarder.http called directly with ASGI callables (no server in front of it)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Message

from bff.proxy import CLIENT_CLOSED, Forwarder

from .conftest import RunningUpstream

WAIT = 5.0


def http_scope(method: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": method, "headers": headers, "path": "/upload",
            "raw_path": b"/upload", "query_string": b""}


async def test_browser_leaving_mid_upload_aborts_the_upstream_request(
    upstream: RunningUpstream,
) -> None:
    sent: list[Message] = []
    messages: list[Message] = [
        {"type": "http.request", "body": b"x" * 1000, "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    forwarder = Forwarder.create()
    try:
        status = await forwarder.http(
            http_scope("POST", [(b"content-length", b"1000000")]), receive, send,
            url=upstream.server.url("/upload"), headers=[(b"content-length", b"1000000")],
            timeout=WAIT, max_body_size=0,
        )
    finally:
        await forwarder.aclose()
    assert status == CLIENT_CLOSED
    assert sent == []
    # The upstream saw its request end early (recorded as a negative count).
    await asyncio.wait_for(upstream.app.upload_ended.wait(), WAIT)
    assert upstream.app.uploads[0] <= 0


async def test_forwarder_keeps_no_cookie_jar_between_requests(upstream: RunningUpstream) -> None:
    forwarder = Forwarder.create()
    seen: list[bytes] = []
    finished = asyncio.Event()  # never set: like a server whose browser stays connected

    async def receive() -> Message:
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            seen.append(message.get("body", b""))

    try:
        for path in ("/set-cookie?secret", "/echo"):
            await forwarder.http(http_scope("GET", []), receive, send,
                                 url=upstream.server.url(path), headers=[], timeout=WAIT,
                                 max_body_size=0)
    finally:
        await forwarder.aclose()
    assert b"secret" not in b"".join(seen[1:])
    assert "cookie" not in str(upstream.app.requests[-1]["headers"]).lower()
