"""The gateway as a real process (``python -m bff serve``): for multi-instance and kill tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


class GatewayProcess:
    def __init__(self, env: Mapping[str, str], port: int, *, workers: int = 1) -> None:
        self.port = port
        self.env = {**os.environ, **env, "BFF_LOG_FORMAT": "json"}
        self.workers = workers
        self.log = Path(tempfile.mkstemp(prefix="bff-gw-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> GatewayProcess:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bff", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", str(self.workers)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gateway did not start: {self.log.read_text()[-3000:]}")

    def terminate(self, timeout: float = 40) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
        self.log.unlink(missing_ok=True)
