"""Streaming: nothing is buffered, disconnects reach the upstream, broken streams stay broken."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from .conftest import RunningGateway, RunningUpstream

WAIT = 5.0  # a ceiling for failure, never a stand-in for synchronisation


async def test_sse_events_arrive_one_by_one_before_the_stream_ends(
    client: httpx.AsyncClient, upstream: RunningUpstream,
) -> None:
    async with client.stream("GET", "/api/sse") as response:
        assert response.headers["content-type"] == "text/event-stream"
        lines = response.aiter_lines()
        first = await asyncio.wait_for(anext(lines), WAIT)
        # The upstream is still holding the stream open, waiting on this very event.
        assert first == "data: one"
        assert not upstream.app.sse_release.is_set()
        upstream.app.sse_release.set()
        rest = [line async for line in lines]
    assert rest == ["", "data: two", ""]


async def test_browser_leaving_mid_stream_closes_the_upstream_stream(
    gateway: RunningGateway, upstream: RunningUpstream,
) -> None:
    async with (
        httpx.AsyncClient(base_url=gateway.server.base_url) as client,
        client.stream("GET", "/api/hold") as response,
    ):
        first = await asyncio.wait_for(anext(response.aiter_lines()), WAIT)
        assert first == "data: one"
    # Leaving the block closed the browser's connection; the proxy must hang up upstream.
    await asyncio.wait_for(upstream.app.hold_closed.wait(), WAIT)


async def test_upstream_breaking_mid_response_is_not_turned_into_a_complete_response(
    client: httpx.AsyncClient,
) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get("/api/broken")


async def test_large_streamed_download_arrives_intact(client: httpx.AsyncClient) -> None:
    size = 5 * 1024 * 1024 + 17
    received = 0
    async with client.stream("GET", f"/api/download?size={size}") as response:
        assert response.headers["content-length"] == str(size)
        async for chunk in response.aiter_raw():
            received += len(chunk)
    assert received == size


async def test_chunked_upload_without_length_is_streamed_to_the_upstream(
    client: httpx.AsyncClient, upstream: RunningUpstream,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"y" * 65536

    response = await client.post("/api/upload", content=chunks())
    assert response.json() == {"received": 64 * 65536}
