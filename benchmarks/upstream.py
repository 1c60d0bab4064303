"""A minimal asyncio HTTP/1.1 upstream: small JSON, a streamed download, a counting upload.

Used for the streaming scenario (it reports how many bytes it received, so a
1 GB upload is verified end to end) and as the fast upstream when nginx is not
installed. Keep-alive, Content-Length and chunked request bodies; no more.

    python -m benchmarks.upstream --port 9000

    GET  /json                 a small JSON document
    GET  /auth-echo            the Authorization header it received, as text
    GET  /download?bytes=N     N zero bytes, streamed with a Content-Length
    PUT  /upload (or POST)     reads and discards the body; answers {"received": N}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from urllib.parse import parse_qs, urlsplit

JSON_BODY = b'{"hello":"world","items":[1,2,3],"ok":true}'
CHUNK = bytes(1024 * 1024)


class BadRequest(Exception):
    pass


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def _drain_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> int:
    """Read and discard the request body; the number of body bytes."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                return total
            remaining = size
            while remaining:
                data = await reader.read(min(remaining, 1 << 20))
                if not data:
                    raise BadRequest("body ended early")
                remaining -= len(data)
            total += size
            await reader.readexactly(2)
    remaining = int(headers.get("content-length", "0") or 0)
    total = remaining
    while remaining:
        data = await reader.read(min(remaining, 1 << 20))
        if not data:
            raise BadRequest("body ended early")
        remaining -= len(data)
    return total


def _head(status: str, content_type: str, length: int) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode("latin-1")


async def _download(writer: asyncio.StreamWriter, size: int) -> None:
    writer.write(_head("200 OK", "application/octet-stream", size))
    remaining = size
    view = memoryview(CHUNK)
    while remaining:
        part = view[: min(remaining, len(CHUNK))]
        writer.write(part)
        remaining -= len(part)
        await writer.drain()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            request = await _read_head(reader)
            if request is None:
                return
            method, target, headers = request
            received = await _drain_body(reader, headers)
            url = urlsplit(target)
            if url.path.endswith("/download"):
                size = int(parse_qs(url.query).get("bytes", ["0"])[0])
                await _download(writer, size)
                continue
            if url.path.endswith("/upload"):
                body = json.dumps({"received": received, "method": method}).encode()
            elif url.path.endswith("/auth-echo"):
                body = headers.get("authorization", "").encode("latin-1")
            else:
                body = JSON_BODY
            writer.write(_head("200 OK", "application/json", len(body)) + body)
            await writer.drain()
    except (ConnectionError, BadRequest, ValueError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(handle, host, port, backlog=4096, limit=1 << 20)
    print(f"READY {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
