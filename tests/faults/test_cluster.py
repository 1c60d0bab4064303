"""The gateway's end-to-end suite, run again on a three-primary Redis Cluster.

Every test of tests/web's login, API proxy (refresh), session (logout-all) and
back-channel modules runs here with ``BFF_REDIS_URL=redis+cluster://...``: the
session-wide ``infra`` fixture is overridden for this module so that every
gateway, and every test that looks inside the store, uses the cluster.

Every script the store runs is recorded: all the keys of one call must hash to
one slot (the ``{...}`` hash tags), or a Cluster would refuse it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis
from _pytest.fixtures import FixtureFunctionDefinition
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.crc import key_slot

from tests.support.redis_server import RedisServer
from tests.support.redis_topologies import RedisClusterSet
from tests.support.stack import Infra, Stack
from tests.web import test_api_proxy, test_backchannel, test_login_flow, test_sessions
from tests.web.conftest import rig  # the forged-provider rig, now on the cluster

SUITE = (test_login_flow, test_api_proxy, test_sessions, test_backchannel)
# A 30-second race soak; its two-instance refresh check runs here as its own test.
LEFT_OUT = {"test_rotation_with_two_instances_under_traffic_gives_no_401"}

SCRIPT_CALLS: list[tuple[bytes, ...]] = []


def _adopt(module: Any) -> None:
    short = module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    for name, value in vars(module).items():
        if isinstance(value, FixtureFunctionDefinition):
            globals().setdefault(name, value)
        elif name.startswith("test_") and callable(value) and name not in LEFT_OUT:
            globals()[f"test_{short}__{name.removeprefix('test_')}"] = value


for _module in SUITE:
    _adopt(_module)
__all__ = ["rig"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterSet]:
    with RedisClusterSet(Path(tmp_path_factory.mktemp("cluster"))) as started:
        yield started


@pytest.fixture(scope="module")
def infra(infra: Infra, cluster: RedisClusterSet) -> Infra:
    """The shared provider and gateway ports, with the cluster as the session store."""
    return Infra(provider=infra.provider, redis=cast(RedisServer, cluster), ports=infra.ports,
                 bcl_port=infra.bcl_port, in_use=infra.in_use)


@pytest.fixture(scope="module", autouse=True)
def record_scripts() -> Iterator[None]:
    original = AsyncRedisCluster.execute_command

    async def spy(self: AsyncRedisCluster, *args: Any, **kwargs: Any) -> Any:
        if str(args[0]).upper() in ("EVALSHA", "EVAL"):
            count = int(args[2])
            SCRIPT_CALLS.append(tuple(_bytes(k) for k in args[3:3 + count]))
        return await original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AsyncRedisCluster, "execute_command", spy)
        yield


def _bytes(key: Any) -> bytes:
    return key if isinstance(key, bytes) else str(key).encode()


def _sessions_per_node(cluster: RedisClusterSet) -> dict[int, set[bytes]]:
    per_node = {}
    for port in cluster.ports:
        node = redis.Redis(port=port)
        with contextlib.closing(node):
            per_node[port] = {_bytes(k) for k in node.keys("bff:*") if _bytes(k).endswith(b":s")}
    return per_node


def test_sessions_spread_over_every_shard_and_each_script_stays_in_one_slot(
    make_stack: Callable[..., Stack], cluster: RedisClusterSet
) -> None:
    stack = make_stack(BFF_SESSION_IDLE_TIMEOUT="600")
    # Session keys hash to random slots: log in (alternating users) until every
    # primary holds at least one, so the refresh and logout-all below must cross shards.
    # 60 logins leave a shard empty with a chance of about 3 * (2/3)**60.
    browsers: list[httpx.Client] = []
    users: list[str] = []
    keys_of: list[bytes] = []
    shards_used: set[int] = set()
    before = _sessions_per_node(cluster)
    while len(browsers) < 60 and (len(browsers) < 8 or len(shards_used) < len(cluster.ports)):
        browser, user = stack.browser(), f"user{len(browsers) % 4}"
        assert stack.login(browser, username=user).status_code == 302
        after = _sessions_per_node(cluster)
        ((shard, new_key),) = [(port, key) for port in after for key in after[port] - before[port]]
        before = after
        browsers.append(browser)
        users.append(user)
        keys_of.append(new_key)
        shards_used.add(shard)
    assert len(shards_used) == len(cluster.ports), "60 sessions never reached every shard"

    stack.clock.advance(600 - 30)  # inside the refresh leeway and the touch interval
    for browser in browsers:
        assert stack.api(browser, "GET", "/bff/user").status_code == 200
    assert stack.api(browsers[0], "POST", "/bff/logout-all").status_code == 200

    remaining = set().union(*_sessions_per_node(cluster).values())
    ended = {key for key, user in zip(keys_of, users, strict=True) if user == users[0]}
    assert not ended & remaining, "logout-all left sessions of the user on some shard"
    assert remaining & set(keys_of) == set(keys_of) - ended, "logout-all ended other users' sessions"
    for browser, user in zip(browsers, users, strict=True):
        expected = 401 if user == users[0] else 200
        assert stack.api(browser, "GET", "/bff/user").status_code == expected

    assert SCRIPT_CALLS, "no store script ran"
    multi = [keys for keys in SCRIPT_CALLS if len(keys) > 1]
    crossing = [keys for keys in SCRIPT_CALLS if len({key_slot(k) for k in keys}) > 1]
    assert not crossing, crossing
    print(f"\n{len(SCRIPT_CALLS)} script calls ({len(multi)} multi-key), all single-slot")


def test_a_fresh_gateways_first_burst_on_the_cluster_gets_no_error(
    make_stack: Callable[..., Stack],
) -> None:
    """redis-py's cluster client, cold, could give one connection to two commands (-> 500)."""
    first = make_stack()
    browser = first.browser()
    first.login(browser)

    async def burst(url: str) -> list[int]:
        headers = {**browser.headers, "X-CSRF": "1"}
        async with httpx.AsyncClient(cookies=browser.cookies, headers=headers) as client:
            return [r.status_code for r in await asyncio.gather(
                *(client.get(f"{url}/bff/user") for _ in range(25)))]

    for _ in range(3):
        fresh = make_stack()  # a new app: its cluster client has never spoken to Redis
        statuses = asyncio.run(burst(fresh.url))
        assert statuses == [200] * 25, statuses
