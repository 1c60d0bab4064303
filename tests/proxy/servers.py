"""Run an ASGI app with a real uvicorn server on a free port (httpx's ASGITransport buffers).

Three ways, same result (a ``LiveServer`` with the address):

    async with serve(app) as server:            # in the running event loop
        await client.get(server.url("/path"))

    with serve_in_thread(app) as server:         # in its own thread and event loop
        httpx.get(server.url("/path"))

    with ProcessServer(["-m", "tests.proxy.gateway", ...]) as proc:   # another process
        proc.pid, proc.url("/path")              # the child calls announce_and_serve(app)

The socket is bound before uvicorn starts, so there is no port race, and connections
made before uvicorn is ready wait in the listen backlog. ``proxy_headers`` is always
off: bff decides which ``X-Forwarded-*`` to believe, not uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from bff.http_server import UVICORN_HTTP

REPO_ROOT = Path(__file__).resolve().parents[2]
ANNOUNCE = "LISTENING PORT "


@dataclass(frozen=True)
class LiveServer:
    """Where a test server listens."""

    host: str
    port: int

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


class _TestServer(uvicorn.Server):
    # Leave the test runner's signal handlers alone.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_free_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening TCP socket on a port the kernel picked.

    The protocol is named explicitly: asyncio sets TCP_NODELAY on accepted connections
    only when ``proto == IPPROTO_TCP``; with 0 every small response waits ~40 ms for a
    delayed ACK (Nagle).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def closed_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (connections to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def _config(app: Any, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "interface": "asgi3",
        "lifespan": "off",
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": 2,
        "http": UVICORN_HTTP,  # as `bff serve`: streaming and WebSockets are tested on it
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


@contextlib.asynccontextmanager
async def serve(app: Any, **config: Any) -> AsyncIterator[LiveServer]:
    """Serve ``app`` in the current event loop until the block ends."""
    sock = bind_free_socket()
    server = _TestServer(_config(app, **config))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped during startup")
            await asyncio.sleep(0.005)
        yield LiveServer("127.0.0.1", sock.getsockname()[1])
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.contextmanager
def serve_in_thread(app: Any, **config: Any) -> Iterator[LiveServer]:
    """Serve ``app`` from a background thread with its own event loop."""
    sock = bind_free_socket()
    server = _TestServer(_config(app, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn stopped during startup")
            threading.Event().wait(0.005)
        yield LiveServer("127.0.0.1", sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def announce_and_serve(app: Any, **config: Any) -> None:
    """For a child process: bind a free port, print it for ProcessServer, serve forever."""
    sock = bind_free_socket()
    print(f"{ANNOUNCE}{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(_config(app, **config)).run(sockets=[sock])


class ProcessServer:
    """A server in a child Python process, started with ``python <args>`` from the repo root."""

    def __init__(self, args: list[str], *, start_timeout: float = 20.0) -> None:
        self.args = args
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[str] | None = None
        self.server: LiveServer | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def url(self, path: str = "/", scheme: str = "http") -> str:
        assert self.server is not None
        return self.server.url(path, scheme)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    def __enter__(self) -> ProcessServer:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, *self.args], cwd=REPO_ROOT, env=env,
            stdout=subprocess.PIPE, text=True,
        )
        port = self._read_port()
        self.server = LiveServer("127.0.0.1", port)
        return self

    def _read_port(self) -> int:
        assert self.process is not None and self.process.stdout is not None
        found: list[int] = []
        stdout = self.process.stdout

        def reader() -> None:
            for line in stdout:
                if line.startswith(ANNOUNCE):
                    found.append(int(line[len(ANNOUNCE):]))
                    return

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        thread.join(self.start_timeout)
        if not found:
            self.process.kill()
            raise RuntimeError(f"{self.args} did not announce its port")
        return found[0]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
