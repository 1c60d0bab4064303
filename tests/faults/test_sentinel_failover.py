"""A primary/replica pair under three sentinels: the primary dies, the gateway follows the failover.

``BFF_REDIS_URL=redis+sentinel://...``: the gateway asks the sentinels for the
primary, so when they promote the replica it carries on with the same sessions,
which replication had copied (checked with WAIT before the primary is killed).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.asgi_server import ServerThread
from tests.support.redis_topologies import SentinelSet
from tests.support.stack import BROWSER_UA

from .conftest import StartGateway
from .report import record
from .traffic import Traffic, log_in

USERS = ("ann", "ben", "cat", "dan")


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with SentinelSet(tmp_path) as started:
        yield started


def test_primary_killed_the_gateway_follows_the_failover_with_every_session(
    gateway_process: StartGateway, sentinels: SentinelSet, upstream: ServerThread
) -> None:
    gateway = gateway_process(BFF_REDIS_URL=sentinels.url, BFF_ROUTES=f"/api={upstream.url}")
    users = log_in(gateway.url, USERS)
    old_port = sentinels.master_port()
    with Traffic([gateway.url], users) as traffic:
        time.sleep(1.0)
        sentinels.wait_replicated()
        killed = time.monotonic()
        sentinels.kill_primary()
        sentinels.wait_failover(old_port)
        promoted = time.monotonic()
        back = traffic.wait_all_back(killed)
        time.sleep(0.5)
    assert sentinels.master_port() != old_port
    assert not traffic.problems(), traffic.problems()[:5]
    during = traffic.statuses(killed, back)
    for user in users:
        again = httpx.get(f"{gateway.url}/bff/user", cookies=user.cookies,
                          headers={"X-CSRF": "1", "User-Agent": BROWSER_UA})
        assert again.status_code == 200 and again.json()["sub"] == user.name
    # A new login lands on the new primary too.
    assert log_in(gateway.url, ["eve"])
    assert httpx.get(f"{gateway.url}/readyz").status_code == 200
    assert [line for line in gateway.output().splitlines() if '"level":"error"' in line] == []
    record("Redis Sentinel: primary killed (SIGKILL), replica promoted",
           seen=f"503 unavailable + Retry-After until the promotion ({during[503]} answers); "
                "no 401, no 500",
           recovery_s=back - killed, sessions_lost=0,
           notes=f"sentinels promoted the replica {promoted - killed:.2f}s after the kill "
                 f"(down-after-milliseconds {sentinels.down_after_ms})")
