"""What the numbers were measured on: CPU, kernel and the versions of every program involved."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import subprocess
from pathlib import Path

from benchmarks.servers import REPO


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _first(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    return match.group(1) if match else "-"


def _dpkg(package: str) -> str:
    return _run(["dpkg-query", "-W", "-f=${Version}", package]) or "-"


def _pkg(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _oidc_provider() -> str:
    path = REPO / "tests" / "oidc_provider" / "node_modules" / "oidc-provider" / "package.json"
    try:
        return str(json.loads(path.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "-"


def describe() -> list[tuple[str, str]]:
    mem_kb = 0
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    python = {name: _pkg(name) for name in (
        "uvicorn", "uvloop", "httptools", "starlette", "httpx", "httpcore", "redis", "hiredis",
        "cryptography",
    )}
    return [
        ("nproc", str(os.cpu_count())),
        ("CPU", _cpu_model()),
        ("memory", f"{mem_kb / 1024 / 1024:.1f} GiB"),
        ("kernel", platform.release()),
        ("OS", _first(r'PRETTY_NAME="([^"]+)"', _safe_read("/etc/os-release"))),
        ("Python", platform.python_version()),
        ("Python packages", ", ".join(f"{k} {v}" for k, v in python.items())),
        ("nginx", _first(r"nginx/(\S+)", _run(["nginx", "-v"]))),
        ("Apache", _first(r"Apache/(\S+)", _run(["apache2", "-v"]))),
        ("mod_auth_openidc", _dpkg("libapache2-mod-auth-openidc")),
        ("redis-server", _first(r"v=(\S+)", _run(["redis-server", "--version"]))),
        ("wrk", _first(r"wrk (\S+)", _run(["wrk", "-v"]))),
        ("node", _run(["node", "--version"]) or "-"),
        ("oidc-provider", _oidc_provider()),
    ]


def _safe_read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
