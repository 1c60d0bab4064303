"""The refresh storm and the 1 GB streaming scenario."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

from benchmarks.burst import burst
from benchmarks.load import WrkResult
from benchmarks.login import Login
from benchmarks.procs import peak_rss_kb, reset_peak_rss, rss_kb, tree_pids
from tests.support.provider import ProviderProcess

# --------------------------------------------------------------------------------------
# Refresh storm


@dataclass(frozen=True)
class StormResult:
    target: str
    requests: int
    connections: int
    grants: int
    grant_errors: int
    steady: WrkResult
    storm: WrkResult

    @property
    def p99_ratio(self) -> float:
        return self.storm.p99_us / self.steady.p99_us if self.steady.p99_us else float("inf")


def refresh_storm(
    name: str,
    url: str,
    headers: dict[str, str],
    login: Callable[[], Login],
    provider: ProviderProcess,
    *,
    leeway: int,
    requests: int,
    connections: int,
    margin: float = 15.0,
) -> StormResult:
    """A fresh session whose access token becomes due ``margin`` seconds after login.

    First ``requests`` requests on the still-valid token (steady), then, once the
    token is inside the refresh leeway, the same burst again (storm). The
    provider counts the refresh grants that the storm caused.
    """
    provider.update_settings(access_token_ttl=leeway + int(margin))
    try:
        session = login()
        logged_in = time.monotonic()
    finally:
        provider.update_settings(access_token_ttl=3600)
    cookie_headers = {**headers, "Cookie": session.header}
    # The same burst twice on the valid token: the first warms connection pools on every
    # hop (as the storm will find them), the second is the steady-state reference.
    burst(url, cookie_headers, total=requests, connections=connections)
    steady = burst(url, cookie_headers, total=requests, connections=connections)
    if time.monotonic() - logged_in > margin - 0.5:
        raise RuntimeError(f"{name}: the steady bursts took too long; the token was already due")
    if steady.errors:
        raise RuntimeError(f"{name}: {steady.errors} errors in the steady burst: {steady.problems}")
    provider.reset_stats()
    time.sleep(max(0.0, logged_in + margin + 0.5 - time.monotonic()))
    storm = burst(url, cookie_headers, total=requests, connections=connections)
    stats = provider.stats()
    return StormResult(
        target=name, requests=storm.requests, connections=connections,
        grants=int(stats["grants"].get("refresh_token", 0)),
        grant_errors=len(stats["grant_errors"]) + storm.errors, steady=steady, storm=storm,
    )


# --------------------------------------------------------------------------------------
# Streaming


@dataclass(frozen=True)
class StreamResult:
    target: str
    direction: str
    bytes: int
    seconds: float
    rss_growth_mb: float
    baseline_rss_mb: float

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0


def _chunks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    block = bytes(size)
    remaining = total
    while remaining:
        part = block if remaining >= size else block[:remaining]
        remaining -= len(part)
        yield part


def _metered(pid: int, run: Callable[[], int]) -> tuple[int, float, float, float]:
    """(bytes, seconds, RSS growth MB, baseline RSS MB) of ``run`` over the tree of ``pid``."""
    pids = tree_pids(pid)
    for each in pids:
        if not reset_peak_rss(each):
            raise RuntimeError(f"cannot reset the peak RSS of {each} (needs root or the same user)")
    baseline = {each: rss_kb(each) for each in pids}
    started = time.monotonic()
    moved = run()
    seconds = time.monotonic() - started
    growth = sum(max(0, peak_rss_kb(each) - base) for each, base in baseline.items())
    return moved, seconds, growth / 1024, sum(baseline.values()) / 1024


def stream_through(name: str, base: str, headers: dict[str, str], pid: int,
                   size: int) -> list[StreamResult]:
    """``size`` bytes down from and up to the streaming upstream, through the gateway."""
    timeout = httpx.Timeout(300.0)
    results = []
    with httpx.Client(timeout=timeout) as client:

        def download() -> int:
            got = 0
            with client.stream("GET", f"{base}/download?bytes={size}", headers=headers) as response:
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: download answered {response.status_code}")
                for chunk in response.iter_raw(1 << 20):
                    got += len(chunk)
            if got != size:
                raise RuntimeError(f"{name}: downloaded {got} of {size} bytes")
            return got

        def upload() -> int:
            response = client.put(
                f"{base}/upload", content=_chunks(size),
                headers={**headers, "Content-Length": str(size),
                         "Content-Type": "application/octet-stream"},
            )
            if response.status_code != 200:
                raise RuntimeError(f"{name}: upload answered {response.status_code}: "
                                   f"{response.text[:300]}")
            received = int(json.loads(response.text)["received"])
            if received != size:
                raise RuntimeError(f"{name}: upstream received {received} of {size} bytes")
            return received

        for direction, run in (("download", download), ("upload", upload)):
            moved, seconds, growth, baseline = _metered(pid, run)
            results.append(StreamResult(name, direction, moved, seconds, growth, baseline))
    return results
