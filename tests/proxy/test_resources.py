"""Resources: 200 MB each way with bounded proxy memory, and no leaked sockets on failures."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from .conftest import RunningUpstream
from .servers import ProcessServer

MB = 1024 * 1024
TRANSFER = 200 * MB
RSS_BUDGET = 50 * MB


def vm_kib(pid: int, field: str) -> int:
    """A ``Vm*`` line of /proc/<pid>/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:  # the fd of the listdir itself, already gone
            pass
    return count


async def zeros(total: int, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    block = b"\0" * chunk
    while total > 0:
        piece = block[: min(chunk, total)]
        total -= len(piece)
        yield piece


async def test_200_mb_download_and_upload_keep_the_proxy_memory_bounded(
    upstream: RunningUpstream, record_property: Callable[[str, object], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["-m", "tests.proxy.gateway", "--route", f"/big={upstream.server.base_url}",
            "--max-body-size", "0"]
    with ProcessServer(args) as proxy:
        async with httpx.AsyncClient(base_url=proxy.base_url, timeout=60) as client:
            # Warm up: imports, pools and buffers exist before the baseline is taken.
            await client.get(f"/big/download?size={MB}")
            await client.post("/big/upload", content=b"\0" * MB)
            baseline = vm_kib(proxy.pid, "VmHWM")

            started = time.monotonic()
            received = 0
            async with client.stream("GET", f"/big/download?size={TRANSFER}") as response:
                async for chunk in response.aiter_raw():
                    received += len(chunk)
            download_peak = vm_kib(proxy.pid, "VmHWM")
            download_seconds = time.monotonic() - started

            started = time.monotonic()
            response = await client.post(
                "/big/upload", content=zeros(TRANSFER),
                headers={"Content-Length": str(TRANSFER)},
            )
            upload_seconds = time.monotonic() - started
            upload_peak = vm_kib(proxy.pid, "VmHWM")

    assert received == TRANSFER
    assert response.json() == {"received": TRANSFER}
    growth = upload_peak - baseline
    figures = (
        f"proxy VmHWM baseline {baseline / MB:.1f} MB; growth after 200 MB download "
        f"{(download_peak - baseline) / MB:.2f} MB ({download_seconds:.1f} s), after 200 MB "
        f"upload {growth / MB:.2f} MB ({upload_seconds:.1f} s)"
    )
    record_property("proxy_rss", figures)
    with capsys.disabled():
        print(f"\n[memory] {figures}")
    assert growth < RSS_BUDGET, figures


async def test_failed_calls_to_a_closed_port_leave_no_sockets_open(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/down/echo")  # the browser's keep-alive connection now exists
    assert first.status_code == 502
    before = open_sockets()
    for _ in range(200):
        response = await client.get("/down/echo")
        assert response.status_code == 502
    assert open_sockets() == before
