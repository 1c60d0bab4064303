"""One steady-state round against one target: wrk load plus CPU and Redis deltas around it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.load import WrkResult, run_wrk
from benchmarks.procs import cpu_seconds, system_busy_seconds

# Commands the benchmark itself sends to Redis while measuring.
_OWN_COMMANDS = {"info", "config|resetstat", "config"}


@dataclass(frozen=True)
class Target:
    """Something to load: a URL, the headers of the logged-in browser, the process tree to meter."""

    name: str
    base: str
    path: str
    headers: dict[str, str]
    pid: int
    expect_bearer: bool

    @property
    def url(self) -> str:
        return self.base + self.path


@dataclass(frozen=True)
class Round:
    target: str
    index: int
    wrk: WrkResult
    cpu_us_per_req: float
    redis_cmds_per_req: float
    redis_us_per_req: float
    redis_by_command: dict[str, float] = field(default_factory=dict)
    # CPU (in cores) used during the round by processes that are not the benchmark's own.
    other_load: float = 0.0


def redis_calls(client: Any) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name.removeprefix("cmdstat_") not in _OWN_COMMANDS
    }


def redis_cpu_seconds(client: Any) -> float:
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def check(target: Target) -> str:
    """One request as the browser; raise unless the upstream answered (with a Bearer token)."""
    with httpx.Client(timeout=10) as client:
        response = client.get(target.url, headers=target.headers)
        if response.status_code != 200 or '"hello"' not in response.text:
            raise RuntimeError(
                f"{target.name}: {target.url} -> {response.status_code} {response.text[:300]}"
            )
        if not target.expect_bearer:
            return ""
        echo = client.get(target.base + target.path.replace("/json", "/auth-echo"),
                          headers=target.headers)
        token = echo.text.strip()
        if echo.status_code != 200 or not token.startswith("Bearer ") or "(null)" in token:
            raise RuntimeError(f"{target.name}: upstream saw no bearer token: {token[:80]!r}")
        return token


def run_round(target: Target, index: int, redis: Any, script: Path, *, seconds: float,
              connections: int) -> Round:
    check(target)
    calls_before = redis_calls(redis)
    redis_cpu_before = redis_cpu_seconds(redis)
    cpu_before = cpu_seconds(target.pid)
    ours_before, busy_before, wall_before = (cpu_seconds(os.getpid()), system_busy_seconds(),
                                             time.monotonic())
    result = run_wrk(target.url, target.headers, script=script, seconds=seconds,
                     connections=connections)
    cpu_after = cpu_seconds(target.pid)
    ours_after, busy_after, wall_after = (cpu_seconds(os.getpid()), system_busy_seconds(),
                                          time.monotonic())
    redis_cpu_after = redis_cpu_seconds(redis)
    calls_after = redis_calls(redis)
    check(target)  # the session must still be live: a round of fast 302/401s would be worthless
    if result.errors:
        raise RuntimeError(f"{target.name}: {result.errors} errors or non-2xx/3xx answers in round")
    # wrk counts completed answers only; when it stops, every connection still has one
    # request in flight that the gateway has already started (read the session, ...).
    n = max(1, result.requests + connections)
    by_command = {
        name: (calls_after.get(name, 0) - calls_before.get(name, 0)) / n for name in calls_after
    }
    by_command = {name: rate for name, rate in by_command.items() if rate > 0}
    return Round(
        target=target.name, index=index, wrk=result,
        cpu_us_per_req=(cpu_after - cpu_before) * 1e6 / n,
        redis_cmds_per_req=sum(by_command.values()),
        redis_us_per_req=(redis_cpu_after - redis_cpu_before) * 1e6 / n,
        redis_by_command=by_command,
        other_load=max(0.0, (busy_after - busy_before) - (ours_after - ours_before))
        / max(1e-6, wall_after - wall_before),
    )
