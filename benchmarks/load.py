"""Drive load with wrk and read its results through a Lua ``done`` hook (no text scraping)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Only a ``done`` hook: defining ``response`` would make wrk parse every answer in Lua.
WRK_SCRIPT = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.3f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    bytes: int
    errors: int
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    problems: tuple[str, ...] = ()

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    return found


def write_script(run_dir: Path) -> Path:
    path = run_dir / "bench.lua"
    path.write_text(WRK_SCRIPT)
    return path


def run_wrk(
    url: str,
    headers: Mapping[str, str],
    *,
    script: Path,
    seconds: float,
    connections: int,
    threads: int = 1,
) -> WrkResult:
    """One wrk run of ``seconds`` with ``connections`` keep-alive connections."""
    argv = [wrk_path(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--latency", "--timeout", "30s", "-s", str(script)]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    done = subprocess.run(argv, capture_output=True, text=True, check=False,
                          timeout=seconds + 120)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            errors = sum(data[k] for k in ("status_errors", "connect_errors", "read_errors",
                                           "write_errors", "timeouts"))
            return WrkResult(
                requests=data["requests"], seconds=data["duration_us"] / 1e6, bytes=data["bytes"],
                errors=errors, p50_us=data["p50"], p90_us=data["p90"], p99_us=data["p99"],
                max_us=data["max"],
            )
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
