"""A fixed number of requests over N keep-alive connections, latency per request.

wrk runs for a duration, not a count (its Lua ``wrk.thread:stop()`` stops sending
but the run still lasts ``-d``), so the refresh storm uses this small asyncio client:
every connection sends its next request as soon as the previous answer is in,
until ``total`` requests have been sent.
"""

from __future__ import annotations

import asyncio
import collections
import math
import statistics
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from benchmarks.load import WrkResult


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    size = len(head)
    if chunked:
        while True:
            chunk = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            body = await reader.readexactly(chunk + 2)
            size += len(body)
            if chunk == 0:
                break
    elif length:
        size += len(await reader.readexactly(length))
    return status, size


async def _burst(url: str, headers: Mapping[str, str], total: int, connections: int) -> WrkResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    request = head.encode("latin-1")
    latencies: list[float] = []
    errors = 0
    problems: collections.Counter[str] = collections.Counter()
    sent = 0
    received = 0
    streams = [await asyncio.open_connection(host, port) for _ in range(connections)]
    start = asyncio.Event()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent, errors, received
        await start.wait()
        while sent < total:
            sent += 1
            began = time.perf_counter()
            for attempt in (0, 1):
                writer.write(request)
                try:
                    status, size = await _read_response(reader)
                    break
                except asyncio.IncompleteReadError as exc:
                    # A server may close an idle keep-alive connection; like a browser,
                    # send the request again on a new one if nothing of the answer came.
                    writer.close()
                    if exc.partial or attempt:
                        errors += 1
                        problems["IncompleteReadError"] += 1
                        return
                    problems["reconnect"] += 1
                    reader, writer = await asyncio.open_connection(host, port)
                    streams.append((reader, writer))
                except (ConnectionError, ValueError) as exc:
                    errors += 1
                    problems[type(exc).__name__] += 1
                    return
            latencies.append(time.perf_counter() - began)
            received += size
            if status != 200:
                errors += 1
                problems[f"HTTP {status}"] += 1

    tasks = [asyncio.ensure_future(connection(r, w)) for r, w in streams]
    began = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - began
    for _, writer in streams:
        writer.close()
    micros = sorted(value * 1e6 for value in latencies) or [0.0]

    def pct(p: float) -> float:
        return micros[max(0, min(len(micros), math.ceil(p / 100 * len(micros))) - 1)]  # nearest rank

    return WrkResult(
        requests=len(latencies), seconds=seconds, bytes=received,
        errors=errors, p50_us=statistics.median(micros),
        p90_us=pct(90), p99_us=pct(99), max_us=micros[-1],
        problems=tuple(f"{kind} x{n}" for kind, n in problems.items()),
    )


def burst(url: str, headers: Mapping[str, str], *, total: int, connections: int) -> WrkResult:
    """Send ``total`` GETs to ``url`` over ``connections`` connections; latency statistics."""
    return asyncio.run(_burst(url, headers, total, connections))
