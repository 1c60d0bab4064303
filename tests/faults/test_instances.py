"""Two gateway processes on one Redis under load: one dies (SIGKILL) or is stopped (SIGTERM).

Sessions live in Redis only, so the survivor serves every session at once. On
SIGTERM a gateway stops accepting connections but lets in-flight requests
finish (within BFF_SHUTDOWN_TIMEOUT) before it exits.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import httpx

from tests.support.asgi_server import ServerThread
from tests.support.stack import BROWSER_UA

from .conftest import StartGateway
from .report import record
from .traffic import Traffic, log_in

USERS = ("ann", "ben", "cat", "dan", "eve", "fay")


def test_one_instance_killed_the_other_serves_every_session(
    gateway_process: StartGateway, upstream: ServerThread
) -> None:
    a = gateway_process(BFF_ROUTES=f"/api={upstream.url}")
    b = gateway_process(BFF_ROUTES=f"/api={upstream.url}")
    users = log_in(a.url, USERS)
    with Traffic([a.url, b.url], users) as traffic:
        time.sleep(1.0)
        killed = time.monotonic()
        assert a.proc is not None
        a.proc.kill()
        a.proc.wait(10)
        back = traffic.wait_all_back(killed, base=b.url)
        time.sleep(1.0)
    assert not traffic.problems(frozenset({200}), gone=(a.url, killed)), traffic.problems()[:5]
    lost_on_b = [s for s in traffic.samples if s.base == b.url and s.at >= killed and s.status != 200]
    assert lost_on_b == []
    refused = sum(1 for s in traffic.samples if s.base == a.url and s.status == 0)
    record("One of two gateway instances killed (SIGKILL) under load",
           seen=f"calls to the dead instance fail to connect ({refused}; a load balancer retries "
                "them elsewhere); the other instance answers every session with 200",
           recovery_s=back - killed, sessions_lost=0,
           notes="recovery = kill until every user had a 200 from the survivor")


def test_sigterm_lets_an_in_flight_request_finish_within_the_shutdown_timeout(
    gateway_process: StartGateway, upstream: ServerThread
) -> None:
    a = gateway_process(BFF_ROUTES=f"/api={upstream.url}", BFF_SHUTDOWN_TIMEOUT="10")
    b = gateway_process(BFF_ROUTES=f"/api={upstream.url}", BFF_SHUTDOWN_TIMEOUT="10")
    users = log_in(b.url, USERS[:3])
    headers = {"X-CSRF": "1", "User-Agent": BROWSER_UA}
    result: dict[str, httpx.Response | BaseException] = {}

    def slow_call() -> None:
        try:
            result["slow"] = httpx.get(f"{b.url}/api/slow?s=3", cookies=users[0].cookies,
                                       headers=headers, timeout=30)
        except BaseException as exc:
            result["slow"] = exc

    with Traffic([a.url], users) as traffic:
        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.7)  # the slow call is in flight at the upstream
        assert b.proc is not None
        stopped = time.monotonic()
        b.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        try:  # no new connections once shutting down
            late = httpx.get(f"{b.url}/healthz", timeout=2)
            refused = False
            assert late.status_code in (503,), late.status_code
        except httpx.HTTPError:
            refused = True
        caller.join(30)
        try:
            code = b.proc.wait(15)
        except subprocess.TimeoutExpired:
            raise AssertionError("the gateway did not exit after SIGTERM") from None
        exited = time.monotonic() - stopped
        time.sleep(0.5)
    slow = result["slow"]
    assert isinstance(slow, httpx.Response), slow
    assert slow.status_code == 200 and slow.json() == {"slow": True}
    # uvicorn re-raises the signal after its graceful shutdown: "terminated by SIGTERM".
    assert code in (0, -signal.SIGTERM), b.output()[-2000:]
    assert '"level":"error"' not in b.output()
    assert refused
    assert exited < 10, exited
    assert not traffic.problems(frozenset({200})), traffic.problems()[:5]
    record("One of two instances stopped with SIGTERM (rolling deploy)",
           seen="an in-flight 3 s upstream call still gets its 200; new connections are refused; "
                "the other instance serves every session",
           recovery_s=0.0, sessions_lost=0,
           notes=f"exited cleanly {exited:.1f}s after SIGTERM (BFF_SHUTDOWN_TIMEOUT=10)")
