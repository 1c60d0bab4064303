"""An echo backend and end-to-end checks for a reverse-proxy chain.

:class:`EchoBackend` is a stdlib HTTP/1.1 server that stands in for the
thing behind a proxy.  It answers

* ``.../echo``    JSON of the method, path and headers it received;
* ``.../stream``  a chunked body: ``first`` then, once the client has seen
  it (:attr:`EchoBackend.stream_gate`), ``second``;
* ``.../upload``  JSON with the length/sha256/transfer-encoding of the body;
* ``.../ws``      a WebSocket handshake (101), then a text frame with the
  request headers as JSON, then echoes frames;
* ``.../metrics`` a marker body, so a test can see whether a proxy lets it
  through.

:func:`check_proxy_chain` takes the public base URL of a chain (nginx
directly in front of the backend, or nginx -> gateway -> backend with a route
prefix) and asserts forwarded headers, streaming both ways and the WebSocket
upgrade.  Matching is on the last path segment, so a route prefix that the
gateway strips or keeps both work.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STREAM_FIRST = b"first\n"
STREAM_SECOND = b"second\n"
METRICS_MARKER = b"echo-backend-metrics"
SPOOFED_CLIENT_IP = "203.0.113.77"
STREAM_GATE_TIMEOUT = 10.0


def websocket_accept(key: str) -> str:
    digest = hashlib.sha1((key + WS_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def encode_frame(payload: bytes, *, opcode: int = 0x1, mask: bool) -> bytes:
    """One final WebSocket frame (RFC 6455); clients must mask, servers must not."""
    header = bytearray([0x80 | opcode])
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        header.append(mask_bit | length)
    elif length < 1 << 16:
        header.append(mask_bit | 126)
        header += struct.pack("!H", length)
    else:
        header.append(mask_bit | 127)
        header += struct.pack("!Q", length)
    if not mask:
        return bytes(header) + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(header) + key + masked


def _recv_exact(read: Any, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk: bytes = read(count - len(data))
        if not chunk:
            raise ConnectionError("connection closed in the middle of a WebSocket frame")
        data += chunk
    return data


def read_frame(read: Any) -> tuple[int, bytes]:
    """Read one frame with ``read(n) -> bytes``; returns (opcode, payload)."""
    first, second = _recv_exact(read, 2)
    opcode = first & 0x0F
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _recv_exact(read, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _recv_exact(read, 8))
    key = _recv_exact(read, 4) if second & 0x80 else b""
    payload = _recv_exact(read, length)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return opcode, payload


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    backend: EchoBackend

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-stream is not a test failure by itself;
        # keep the traceback out of stderr (the checks assert on results).
        self.backend.errors.append(f"error while serving {client_address}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    # -- helpers ---------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        return merged

    def _record(self) -> dict[str, str]:
        headers = self._headers()
        self.server.backend.requests.append(RecordedRequest(self.command, self.path, headers))
        return headers

    def _endpoint(self) -> str:
        return urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]

    def _send_json(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # -- endpoints -------------------------------------------------------
    def do_GET(self) -> None:
        headers = self._record()
        endpoint = self._endpoint()
        if endpoint == "ws" and headers.get("upgrade", "").lower() == "websocket":
            self._websocket(headers)
        elif endpoint == "stream":
            self._stream()
        elif endpoint == "metrics":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(METRICS_MARKER)))
            self.end_headers()
            self.wfile.write(METRICS_MARKER)
        else:
            self._send_json(200, {"method": self.command, "path": self.path, "headers": headers})

    def do_POST(self) -> None:
        headers = self._record()
        body = self._read_body()
        self._send_json(
            200,
            {
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            },
        )

    def _stream(self) -> None:
        backend = self.server.backend
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(STREAM_FIRST)
        # Hold the rest back until the client has seen the first chunk: a
        # buffering proxy would make this wait run into its timeout.
        backend.stream_released.append(backend.stream_gate.wait(STREAM_GATE_TIMEOUT))
        self._chunk(STREAM_SECOND)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _websocket(self, headers: dict[str, str]) -> None:
        self.close_connection = True
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", websocket_accept(headers.get("sec-websocket-key", "")))
        self.end_headers()
        self.wfile.write(encode_frame(json.dumps(headers).encode(), mask=False))
        self.wfile.flush()
        while True:
            try:
                opcode, payload = read_frame(self.rfile.read)
            except (ConnectionError, OSError, ValueError):
                return
            if opcode == 0x8:  # close
                self.wfile.write(encode_frame(payload[:2], opcode=0x8, mask=False))
                self.wfile.flush()
                return
            if opcode == 0x9:  # ping
                self.wfile.write(encode_frame(payload, opcode=0xA, mask=False))
            else:
                self.wfile.write(encode_frame(payload, opcode=opcode, mask=False))
            self.wfile.flush()


@dataclass
class EchoBackend:
    """Context manager running the echo server on 127.0.0.1 (free port)."""

    host: str = "127.0.0.1"
    requests: list[RecordedRequest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stream_gate: threading.Event = field(default_factory=threading.Event)
    stream_released: list[bool] = field(default_factory=list)
    _server: _Server | None = None
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "EchoBackend is not running"
        port: int = self._server.server_address[1]
        return port

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> EchoBackend:
        server = _Server((self.host, 0), _Handler)
        server.backend = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="echo-backend", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stream_gate.set()  # never leave a handler waiting
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass(frozen=True)
class ChainReport:
    """What the backend saw, for further assertions by the caller."""

    echo_headers: dict[str, str]
    upload_headers: dict[str, str]
    websocket_headers: dict[str, str] | None


def _websocket_roundtrip(
    base_url: str,
    path: str,
    *,
    host_header: str,
    verify: ssl.SSLContext | bool,
    extra_headers: Mapping[str, str],
    timeout: float,
) -> dict[str, str]:
    url = urlsplit(base_url)
    assert url.hostname is not None
    secure = url.scheme == "https"
    port = url.port or (443 if secure else 80)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host_header}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"Origin: {url.scheme}://{host_header}",
        *(f"{name}: {value}" for name, value in extra_headers.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    with socket.create_connection((url.hostname, port), timeout=timeout) as raw:
        sock: socket.socket
        if secure:
            if isinstance(verify, ssl.SSLContext):
                context = verify
            else:
                context = ssl.create_default_context()
                if not verify:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(raw, server_hostname=url.hostname)
        else:
            sock = raw
        with sock, sock.makefile("rb") as reader:
            sock.sendall(request)
            status_line = reader.readline().decode("latin-1").strip()
            response_headers: dict[str, str] = {}
            while True:
                line = reader.readline().decode("latin-1")
                if line in ("\r\n", "\n", ""):
                    break
                name, _, value = line.partition(":")
                response_headers[name.strip().lower()] = value.strip()
            assert status_line.split(" ")[1:2] == ["101"], f"no WebSocket upgrade: {status_line!r}"
            assert response_headers.get("upgrade", "").lower() == "websocket", response_headers
            assert response_headers.get("sec-websocket-accept") == websocket_accept(key), response_headers

            opcode, payload = read_frame(reader.read)
            assert opcode == 0x1, f"expected a text frame, got opcode {opcode}"
            seen: dict[str, str] = json.loads(payload)

            message = f"hello through the proxy {time.monotonic_ns()}".encode()
            sock.sendall(encode_frame(message, mask=True))
            assert read_frame(reader.read) == (0x1, message)
            sock.sendall(encode_frame(struct.pack("!H", 1000), opcode=0x8, mask=True))
            close_opcode, _ = read_frame(reader.read)
            assert close_opcode == 0x8
    return seen


def _upload_chunks() -> Iterator[bytes]:
    for i in range(8):
        yield bytes([65 + i]) * 4096


def check_proxy_chain(
    base_url: str,
    backend: EchoBackend,
    *,
    verify: ssl.SSLContext | bool,
    prefix: str = "",
    host_header: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
    websocket: bool = True,
    expect_chunked_upload: bool = True,
    timeout: float = 20.0,
) -> ChainReport:
    """Assert that ``base_url`` (https) proxies to ``backend`` correctly.

    ``prefix`` is the route prefix in front of the backend paths (``""`` when
    nginx talks to the backend directly, e.g. ``"/api"`` through the gateway).
    ``host_header`` is the public Host the browser would send (defaults to
    the host:port of ``base_url``).  ``extra_headers`` go on every request
    (e.g. ``{"X-CSRF": "1"}`` or a session cookie through the gateway).
    """
    parsed = urlsplit(base_url)
    host = host_header or parsed.netloc
    headers = {"Host": host, **(extra_headers or {})}
    base = base_url.rstrip("/") + prefix

    with httpx.Client(verify=verify, timeout=timeout) as client:
        # 1. Forwarded headers, with spoofing attempts from the client.
        response = client.get(
            f"{base}/echo",
            headers={
                **headers,
                "X-Forwarded-For": SPOOFED_CLIENT_IP,
                "X-Forwarded-Proto": "http",
                "X-Forwarded-Host": "evil.example",
            },
        )
        assert response.status_code == 200, response.text
        echo: dict[str, str] = response.json()["headers"]
        assert echo.get("x-forwarded-proto") == "https", echo
        assert echo.get("x-forwarded-host") == host, echo
        forwarded_for = echo.get("x-forwarded-for", "")
        assert "127.0.0.1" in forwarded_for, echo
        assert SPOOFED_CLIENT_IP not in forwarded_for, echo
        assert "upgrade" not in echo.get("connection", "").lower(), echo
        assert "upgrade" not in echo, echo

        # 2. Streamed (chunked) response: the first chunk must arrive while
        # the backend still holds back the second one.
        backend.stream_gate.clear()
        released_before = len(backend.stream_released)
        received = b""
        first_chunk_at: float | None = None
        with client.stream("GET", f"{base}/stream", headers=headers) as streamed:
            assert streamed.status_code == 200
            for chunk in streamed.iter_bytes():
                received += chunk
                if first_chunk_at is None and STREAM_FIRST in received:
                    first_chunk_at = time.monotonic()
                    assert STREAM_SECOND not in received, "response was buffered by the proxy"
                    backend.stream_gate.set()
        assert received == STREAM_FIRST + STREAM_SECOND, received
        assert backend.stream_released[released_before:] == [True], (
            "the backend never learnt that the client saw the first chunk: the proxy buffers responses"
        )

        # 3. Streamed request body (no Content-Length: chunked upload).
        expected = b"".join(_upload_chunks())
        upload = client.post(f"{base}/upload", headers=headers, content=_upload_chunks())
        assert upload.status_code == 200, upload.text
        result = upload.json()
        assert result["length"] == len(expected)
        assert result["sha256"] == hashlib.sha256(expected).hexdigest()
        upload_headers: dict[str, str] = result["headers"]
        if expect_chunked_upload:
            assert upload_headers.get("transfer-encoding", "").lower() == "chunked", (
                "the request body reached the backend buffered (with a Content-Length)"
            )

    # 4. WebSocket upgrade through the chain.
    ws_headers = None
    if websocket:
        ws_headers = _websocket_roundtrip(
            base_url,
            f"{prefix}/ws",
            host_header=host,
            verify=verify,
            extra_headers=extra_headers or {},
            timeout=timeout,
        )
        assert ws_headers.get("upgrade", "").lower() == "websocket", ws_headers
        assert "upgrade" in ws_headers.get("connection", "").lower(), ws_headers
        assert ws_headers.get("sec-websocket-version") == "13", ws_headers
        assert ws_headers.get("x-forwarded-proto") == "https", ws_headers

    return ChainReport(echo, upload_headers, ws_headers)
