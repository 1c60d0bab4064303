"""The one benchmark command: start everything, log in, load, meter, write RESULTS.md.

    .venv/bin/python -m benchmarks.run [--with-peers] [--quick] [--smoke] [--profile]

Targets, each loaded in turn and interleaved over several rounds:

    direct            the upstream itself (nginx, or the asyncio upstream without nginx)
    apache-proxy      Apache mod_proxy in front of it, no authentication
    mod_auth_openidc  Apache + mod_auth_openidc, server-side sessions in the same Redis
    bff-w<N>          ``bff serve --workers N``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import components, report, servers
from benchmarks import profile as pyspy
from benchmarks.load import run_wrk, write_script, wrk_path
from benchmarks.login import Login, login_apache, login_bff
from benchmarks.machine import describe
from benchmarks.measure import Target, check, run_round
from benchmarks.procs import Service, free_port, tree_pids
from benchmarks.scenarios import refresh_storm, stream_through

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
LEEWAY = 60  # bff's default BFF_REFRESH_LEEWAY; mod_auth_openidc is configured the same


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--with-peers", action="store_true",
                        help="install Apache and mod_auth_openidc with apt when missing (root)")
    parser.add_argument("--quick", action="store_true", help="about one minute: 1 round of 3 s")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny self-check that everything starts and answers (no results)")
    parser.add_argument("--rounds", type=int, help="rounds per target (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds per round (default 10, quick 3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--workers", default="2",
                        help="bff worker counts to run, comma-separated (default 2)")
    parser.add_argument("--stream-mb", type=int, help="MB each way (default 1000, quick 256)")
    parser.add_argument("--storm-requests", type=int, default=1000)
    parser.add_argument("--storm-connections", type=int, default=100)
    parser.add_argument("--no-storm", action="store_true")
    parser.add_argument("--no-stream", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="sample the bff workers with py-spy during an extra round")
    parser.add_argument("--output", type=Path,
                        help=f"where to write the results (default {RESULTS} for full runs)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory and logs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.quick = True
    rounds, seconds, stream_mb = (1, 3.0, 256) if args.quick else (3, 10.0, 1000)
    if args.smoke:
        seconds, stream_mb = 1.0, 32
        args.storm_requests = min(args.storm_requests, 200)
    args.rounds = args.rounds or rounds
    args.seconds = args.seconds or seconds
    args.stream_mb = args.stream_mb or stream_mb
    args.worker_counts = [int(w) for w in str(args.workers).split(",") if w.strip()]
    return args


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def sniffio_note() -> str:
    """httpcore imports sniffio on every lock and cancel-shield set-up, and Python does not
    cache failed imports: without it each proxied request pays several sys.path scans."""
    if _has("sniffio"):
        return "installed"
    log("sniffio is not installed: httpcore will retry `import sniffio` on every pooled "
        "request (encode/httpcore#1102); add it to the dependencies")
    return "NOT installed (httpcore retries the import on every pooled request)"


def ensure_tools(with_peers: bool) -> None:
    """wrk (and nginx) always, Apache with mod_auth_openidc for --with-peers: apt when root."""
    missing = []
    if shutil.which("wrk") is None:
        missing.append("wrk")
    if not servers.have_nginx():
        missing.append("nginx-light")
    if with_peers and not servers.have_apache():
        missing += ["apache2", "libapache2-mod-auth-openidc"]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        log(f"missing {' '.join(missing)} (install them as root)")
        return
    log(f"installing with apt: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Stack(contextlib.ExitStack):
    """Every started program, stopped in reverse order on exit."""

    def service(self, service: Service) -> Service:
        self.callback(service.stop)
        return service


def wait_idle(seconds: float = 0.5) -> None:
    # Let the previous target's connections close before metering the next one.
    time.sleep(seconds)


@contextlib.contextmanager
def run_directory(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bff-bench-"))
    try:
        yield path
    finally:
        if keep:
            log(f"logs kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def ensure_py_spy() -> None:
    """--profile needs py-spy (a PyPI wheel with its binary): installed into this venv."""
    if pyspy.py_spy() is not None:
        return
    log("installing py-spy with pip (for --profile)")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "py-spy"], check=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_tools(args.with_peers)
    if args.profile:
        ensure_py_spy()
    wrk_path()
    with run_directory(args.keep) as run_dir, Stack() as stack:
        return _run(args, run_dir, stack)


@dataclass
class Running:
    """Everything started for one run, and the targets to load."""

    targets: list[Target]
    bffs: dict[str, tuple[Service, str]]
    primary: str
    apache: Service | None
    apache_base: str
    direct_name: str
    redis: Any
    redis_url: str
    provider: Any


def _start(args: argparse.Namespace, run_dir: Path, stack: Stack) -> Running:
    if servers.have_nginx():
        nginx, api_port = servers.start_nginx(run_dir)
        direct_name = "nginx"
    else:
        nginx, api_port = servers.start_python_upstream(run_dir, "api-upstream")
        direct_name = "asyncio upstream (no nginx installed)"
    stack.service(nginx)
    streamer, stream_port = servers.start_python_upstream(run_dir, "stream-upstream")
    stack.service(streamer)
    api = f"http://127.0.0.1:{api_port}"
    stream = f"http://127.0.0.1:{stream_port}"
    redis_server = servers.start_redis()
    stack.callback(redis_server.cleanup)
    variants = [(f"bff-w{w}", w) for w in args.worker_counts]
    bff_ports = {name: free_port() for name, _ in variants}
    apache_port = free_port()
    provider = servers.start_provider(servers.Ports(list(bff_ports.values()), apache_port))
    stack.callback(provider.stop)
    log(f"provider {provider.issuer}, redis {redis_server.url}, upstream {api}")

    ua = {"User-Agent": servers.USER_AGENT}
    targets = [Target("direct", api, "/json", dict(ua), nginx.pid, expect_bearer=False)]
    apache: Service | None = None
    apache_base = f"http://127.0.0.1:{apache_port}"
    if servers.have_apache():
        apache = stack.service(servers.start_apache(
            run_dir, apache_port, provider.issuer, redis_server.port, api, stream))
        targets.append(Target("apache-proxy", apache_base, "/plain/json", dict(ua), apache.pid,
                              expect_bearer=False))
        session = login_apache(apache_base)
        targets.append(Target("mod_auth_openidc", apache_base, "/api/json",
                              {**ua, "Cookie": session.header}, apache.pid, expect_bearer=True))
    else:
        log("Apache with mod_auth_openidc is not installed: no peers (use --with-peers as root)")
    config = servers.bff_config(run_dir, api, stream)
    bffs: dict[str, tuple[Service, str]] = {}
    for name, workers in variants:
        service = stack.service(servers.start_bff(
            run_dir, bff_ports[name], workers, provider.issuer, redis_server.url, config,
            name=name))
        base = f"http://127.0.0.1:{bff_ports[name]}"
        session = login_bff(base)
        bffs[name] = (service, base)
        targets.append(Target(name, base, "/api/json",
                              {**ua, "X-CSRF": "1", "Cookie": session.header}, service.pid,
                              expect_bearer=True))
    for target in targets:
        check(target)
    primary = "bff-w2" if "bff-w2" in bffs else next(iter(bffs))
    return Running(targets, bffs, primary, apache, apache_base, direct_name,
                   redis_server.client(), redis_server.url, provider)


def _settings(args: argparse.Namespace, running: Running) -> list[tuple[str, str]]:
    loop = ", uvloop" if _has("uvloop") else ""
    peer = ("Apache event MPM, OIDCSessionType server-cache, OIDCCacheType redis (same Redis), "
            "token forwarded with `RequestHeader set Authorization \"Bearer "
            "%{OIDC_access_token}e\"`, OIDCPassClaimsAs environment (see README)"
            if running.apache is not None else "not installed")
    return [
        ("load", f"wrk -t1 -c{args.connections} --latency, {args.rounds} round(s) of "
                 f"{args.seconds:g} s per target, targets interleaved, medians reported"),
        ("upstream", f"{running.direct_name}, a small JSON document, keep-alive"),
        ("bff", f"`bff serve --workers N` (uvicorn{loop}; HTTP protocol "
                "`bff.http_server.CoalescingHttpToolsProtocol`: httptools parser, the writes of "
                "one event-loop step sent as one; upstream transport `bff.proxy.transport`), "
                "route `/api` -> upstream, CSRF header, session bound to the User-Agent"),
        ("mod_auth_openidc", peer),
        ("sniffio", sniffio_note()),
        ("gateway CPU", "utime+stime (+ reaped children) of the gateway's whole process tree "
                        "from /proc, divided by the requests of the round (wrk's completed "
                        "requests plus the one still in flight on each connection at the end)"),
        ("Redis", "private redis-server; commands from INFO commandstats deltas (commands run "
                  "inside Lua scripts count too)"),
        ("other load", "CPU used during a round by processes outside the benchmark (from "
                       "/proc/stat); on a shared machine it inflates latency, not CPU/request"),
    ]


def _steady(args: argparse.Namespace, running: Running, results: report.Results,
            script: Path) -> None:
    log("warm-up")
    for target in running.targets:
        run_wrk(target.url, target.headers, script=script, seconds=1,
                connections=args.connections)
    for index in range(args.rounds):
        for target in running.targets:
            wait_idle()
            result = run_round(target, index, running.redis, script, seconds=args.seconds,
                               connections=args.connections)
            results.rounds.append(result)
            log(f"round {index + 1} {target.name}: {result.wrk.rps:,.0f} req/s, "
                f"p50 {result.wrk.p50_us:.0f} µs, p99 {result.wrk.p99_us:.0f} µs, "
                f"CPU {result.cpu_us_per_req:.0f} µs/req, Redis {result.redis_cmds_per_req:.3f}")
    # One connection: the latency a request gains through each gateway when nothing queues.
    # Interleaved rounds like the loaded ones: a single short round is at the mercy of noise.
    for index in range(args.rounds):
        for target in running.targets:
            wait_idle()
            result = run_round(target, index, running.redis, script,
                               seconds=min(args.seconds, 5.0), connections=1)
            results.unloaded.append(result)
            log(f"one connection, round {index + 1}, {target.name}: p50 "
                f"{result.wrk.p50_us:.0f} µs, p99 {result.wrk.p99_us:.0f} µs, "
                f"CPU {result.cpu_us_per_req:.0f} µs/req")


def _storms(args: argparse.Namespace, running: Running, results: report.Results) -> None:
    ua = {"User-Agent": servers.USER_AGENT}
    base = running.bffs[running.primary][1]
    plans: list[tuple[str, str, dict[str, str], Callable[[], Login]]] = [
        (running.primary, f"{base}/api/json", {**ua, "X-CSRF": "1"}, lambda: login_bff(base))]
    if running.apache is not None:
        plans.append(("mod_auth_openidc", f"{running.apache_base}/api/json", dict(ua),
                      lambda: login_apache(running.apache_base)))
    for name, url, headers, login in plans:
        wait_idle()
        try:
            storm = refresh_storm(name, url, headers, login, running.provider, leeway=LEEWAY,
                                  requests=args.storm_requests,
                                  connections=args.storm_connections,
                                  margin=8.0 if args.quick else 15.0)
        except Exception as exc:  # one failed scenario must not lose the whole run
            results.failures.append(f"refresh storm, {name}: {exc}")
            log(f"storm {name} FAILED: {exc}")
            continue
        results.storms.append(storm)
        log(f"storm {name}: {storm.grants} refresh grant(s), p99 steady "
            f"{storm.steady.p99_us:.0f} µs, storm {storm.storm.p99_us:.0f} µs")


def _streams(args: argparse.Namespace, running: Running, results: report.Results) -> None:
    size = args.stream_mb * 1_000_000
    names = [running.primary, "mod_auth_openidc"]
    by_name = {t.name: t for t in running.targets}
    for name in names:
        target = by_name.get(name)
        if target is None:
            continue
        wait_idle()
        try:
            items = stream_through(name, f"{target.base}/stream", target.headers, target.pid,
                                   size)
        except Exception as exc:
            results.failures.append(f"streaming, {name}: {exc}")
            log(f"stream {name} FAILED: {exc}")
            continue
        for item in items:
            results.streams.append(item)
            log(f"stream {name} {item.direction}: {item.mb_per_s:,.0f} MB/s, "
                f"RSS growth {item.rss_growth_mb:.1f} MB")


def _run(args: argparse.Namespace, run_dir: Path, stack: Stack) -> int:
    log(f"run directory {run_dir}")
    script = write_script(run_dir)
    running = _start(args, run_dir, stack)
    command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    results = report.Results(
        command=command.strip(), machine=describe(), settings=_settings(args, running),
        targets=[t.name for t in running.targets], primary=running.primary,
    )
    _steady(args, running, results, script)
    if args.profile:
        _profile(args, results, running.targets, running.bffs, run_dir, script)
        log("measuring the components in-process")
        direct = running.targets[0]
        results.components = components.run(direct.base, running.redis_url)
    if not args.no_storm:
        _storms(args, running, results)
    if not args.no_stream:
        _streams(args, running, results)
    if args.smoke:
        log("smoke run complete: every target started, logged in, answered and was loaded")
        return 0
    output = args.output or (None if args.quick else RESULTS)
    notes = report.keep_notes(output.read_text()) if output is not None and output.exists() else ""
    text = report.render(results, notes)
    if output is not None:
        output.write_text(text)
        log(f"wrote {output}")
    print(text)
    return 0


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _profile(args: argparse.Namespace, results: report.Results, targets: list[Target],
             bffs: dict[str, tuple[Service, str]], run_dir: Path, script: Path) -> None:
    """An extra, unmetered round per bff target with py-spy sampling every worker."""
    for name, (service, _) in bffs.items():
        target = next(t for t in targets if t.name == name)
        pids = tree_pids(service.pid)
        # With --workers N the workers are the supervisor's children; with 1, uvicorn
        # serves from the main process.
        workers = [pid for pid in pids if pid != service.pid] if len(pids) > 1 else pids
        outputs = [run_dir / f"profile-{name}-{pid}.txt" for pid in workers]
        seconds = max(args.seconds, 5.0)
        log(f"profiling {name} (pids {workers}) for {seconds:g} s")
        samplers = [pyspy.start(pid, out, seconds) for pid, out in zip(workers, outputs, strict=True)]
        time.sleep(0.5)
        run_wrk(target.url, target.headers, script=script, seconds=seconds,
                connections=args.connections)
        for sampler in samplers:
            sampler.wait(60)
        results.profiles.append((name, pyspy.summarise(outputs)))


if __name__ == "__main__":
    sys.exit(main())
