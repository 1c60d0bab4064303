"""Run deploy/redis/{sentinel,cluster} with the local redis-server (>= 7).

Only host names, ports and data directories are substituted; every other
setting (auth, persistence, sentinel and cluster options) is the file's own.
All servers bind 127.0.0.1 on free ports, never the machine's 6379.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.deploy.nginx_runner import DEPLOY_DIR, free_port
from tests.support.redis_topologies import Cli, cluster_ok, find_redis, pong, processes, wait_for

SENTINEL_DIR = DEPLOY_DIR / "redis" / "sentinel"
CLUSTER_DIR = DEPLOY_DIR / "redis" / "cluster"
SENTINEL_MONITOR = "sentinel monitor mymaster redis-primary 6379 2"


def password_of(conf: Path) -> str:
    match = re.search(r"^requirepass (\S+)$", conf.read_text(encoding="utf-8"), re.M)
    assert match, f"{conf.name}: requirepass"
    return match.group(1)


def assert_no_default_port(text: str) -> None:
    # 26379 is fine; a bare 6379 would point at the machine's shared Redis.
    assert not re.search(r"(?<![\d])6379(?![\d])", text), text


def _logs(tmp_path: Path) -> str:
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}" for log in sorted(tmp_path.glob("*.log"))
    )


def test_sentinel_example_fails_over(tmp_path: Path) -> None:
    server = find_redis("redis-server")
    cli_binary = find_redis("redis-cli")
    data_conf = SENTINEL_DIR / "redis.conf"
    password = password_of(data_conf)
    sentinel_text = (SENTINEL_DIR / "sentinel.conf").read_text(encoding="utf-8")
    assert sentinel_text.count(SENTINEL_MONITOR) == 1, "sentinel.conf changed; update this test"
    assert f"sentinel auth-pass mymaster {password}" in sentinel_text

    primary_port, replica_port = free_port(), free_port()
    sentinel_ports = [free_port() for _ in range(3)]
    assert len({primary_port, replica_port, *sentinel_ports}) == 5
    monitor = f"sentinel monitor mymaster 127.0.0.1 {primary_port} 2"
    rendered = sentinel_text.replace(SENTINEL_MONITOR, monitor)
    assert_no_default_port(rendered)

    with processes(tmp_path) as servers:
        for name, port, extra in (
            ("primary", primary_port, []),
            ("replica", replica_port, ["--replicaof", "127.0.0.1", str(primary_port)]),
        ):
            directory = tmp_path / name
            directory.mkdir()
            # Sentinel makes data nodes CONFIG REWRITE their file: run a copy.
            conf = directory / "redis.conf"
            shutil.copyfile(data_conf, conf)
            servers.start(name, [server, str(conf), "--port", str(port), "--bind", "127.0.0.1",
                                 "--dir", str(directory),
                                 # test speed only: skip the 5 s wait before a diskless full sync
                                 "--repl-diskless-sync-delay", "0", *extra])
        for index, port in enumerate(sentinel_ports, start=1):
            directory = tmp_path / f"s{index}"
            directory.mkdir()
            conf = directory / "sentinel.conf"  # sentinel rewrites its file
            conf.write_text(rendered, encoding="utf-8")
            servers.start(
                f"s{index}",
                [server, str(conf), "--sentinel", "--port", str(port), "--bind", "127.0.0.1",
                 "--dir", str(directory)],
            )

        primary = Cli(cli_binary, primary_port, password)
        replica = Cli(cli_binary, replica_port, password)
        sentinels = [Cli(cli_binary, port) for port in sentinel_ports]
        try:
            # auth is on: no password, no data
            wait_for(servers, "primary", pong(primary))
            assert "NOAUTH" in Cli(cli_binary, primary_port)("get", "x", check=False)
            assert primary.info("persistence")["aof_enabled"] == "1"
            # the replica authenticates with masterauth
            wait_for(
                servers, "replication", lambda: replica.info("replication").get("master_link_status") == "up"
            )
            # the three sentinels find the replica (with a working link) and each other
            def discovered(sentinel: Cli) -> Callable[[], bool]:
                def check() -> bool:
                    master = sentinel.pairs("sentinel", "master", "mymaster")
                    replicas = sentinel.pairs("sentinel", "replicas", "mymaster")
                    return (
                        master.get("num-slaves") == "1"
                        and master.get("num-other-sentinels") == "2"
                        and master.get("quorum") == "2"
                        and replicas.get("master-link-status") == "ok"
                    )

                return check

            for sentinel in sentinels:
                wait_for(servers, "sentinel discovery", discovered(sentinel))
            assert sentinels[0]("sentinel", "get-master-addr-by-name", "mymaster").split() == [
                "127.0.0.1",
                str(primary_port),
            ]
            primary("set", "session:probe", "1")
            wait_for(servers, "replicated key", lambda: replica("get", "session:probe").strip() == "1")

            # forced failover: every sentinel switches to the promoted replica
            def failover_started() -> bool:
                answer = sentinels[0]("sentinel", "failover", "mymaster", check=False).strip()
                assert answer == "OK", answer  # e.g. INPROG, NOGOODSLAVE: retried
                return True

            wait_for(servers, "SENTINEL FAILOVER", failover_started, timeout=20)

            def switched() -> bool:
                return all(
                    s("sentinel", "get-master-addr-by-name", "mymaster").split()[1:] == [str(replica_port)]
                    for s in sentinels
                )

            wait_for(servers, "failover", switched)
            wait_for(servers, "promotion", lambda: replica.info("replication").get("role") == "master")
            replica("set", "session:after", "2")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_logs(tmp_path)}") from None


def test_cluster_example_forms_a_cluster(tmp_path: Path) -> None:
    server = find_redis("redis-server")
    cli_binary = find_redis("redis-cli")
    node_conf = CLUSTER_DIR / "redis-node.conf"
    text = node_conf.read_text(encoding="utf-8")
    assert re.search(r"^cluster-enabled yes$", text, re.M)
    assert not re.search(r"^port ", text, re.M), "each node's port comes from its command line"
    password = password_of(node_conf)

    ports = [free_port() for _ in range(3)]
    bus_ports = [free_port() for _ in range(3)]
    assert len({*ports, *bus_ports}) == 6

    with processes(tmp_path) as servers:
        for index, (port, bus) in enumerate(zip(ports, bus_ports, strict=True), start=1):
            directory = tmp_path / f"n{index}"
            directory.mkdir()
            conf = directory / "redis.conf"  # never let a server touch the repository's file
            shutil.copyfile(node_conf, conf)
            servers.start(f"n{index}", [server, str(conf), "--port", str(port), "--cluster-port", str(bus),
                                "--bind", "127.0.0.1", "--dir", str(directory),
                                "--cluster-announce-hostname", "127.0.0.1"])
        nodes = [Cli(cli_binary, port, password) for port in ports]
        try:
            for node in nodes:
                wait_for(servers, "node", pong(node))
            # the command documented in redis-node.conf / README.md
            create = subprocess.run(
                [cli_binary, "-a", password, "--no-auth-warning", "--cluster", "create",
                 *(f"127.0.0.1:{port}" for port in ports), "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, timeout=120, check=False,
            )
            assert create.returncode == 0, create.stdout + create.stderr
            assert "All 16384 slots covered" in create.stdout
            for node in nodes:
                wait_for(servers, "cluster_state:ok", cluster_ok(node))
            # keys spread over the shards; -c follows MOVED redirections
            for key in ("a", "b", "c", "session:1", "session:2"):
                subprocess.run(
                    [cli_binary, "-c", "-h", "127.0.0.1", "-p", str(ports[0]), "-a", password,
                     "--no-auth-warning", "set", key, key.upper()],
                    capture_output=True, text=True, timeout=30, check=True,
                )
            masters = [line for line in nodes[0]("cluster", "nodes").splitlines() if "master" in line]
            assert len(masters) == 3
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_logs(tmp_path)}") from None
