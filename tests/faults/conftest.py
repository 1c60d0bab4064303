"""Fault-test fixtures: gateways as real processes, an echo upstream, and the recovery report."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.asgi_server import ServerThread
from tests.support.processes import GatewayProcess
from tests.support.stack import Infra, gateway_env
from tests.support.upstream import UpstreamLog, upstream_app

from .report import RESULTS

REPORT = Path(__file__).resolve().parents[2] / "test-artifacts" / "faults-report.json"


@pytest.fixture
def upstream() -> Iterator[ServerThread]:
    with ServerThread(upstream_app(UpstreamLog())) as server:
        yield server


StartGateway = Callable[..., GatewayProcess]


@pytest.fixture
def gateway_process(infra: Infra) -> Iterator[StartGateway]:
    """Start ``python -m bff serve`` on a port the provider knows; killed and released afterwards."""
    started: list[tuple[GatewayProcess, int]] = []

    def start(env: Mapping[str, str] | None = None, **overrides: str) -> GatewayProcess:
        port = infra.take_port()
        gateway = GatewayProcess({**gateway_env(infra, port, overrides), **(env or {})}, port)
        started.append((gateway, port))
        return gateway.start()

    try:
        yield start
    finally:
        for gateway, port in started:
            gateway.kill()
            gateway.log.unlink(missing_ok=True)
            infra.in_use.discard(port)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("faults: what users saw and how long recovery took")
    for row in RESULTS:
        terminalreporter.write_line(
            f"{row['fault']}: {row['seen']}; recovered in {row['recovery_s']:.2f}s; "
            f"sessions lost {row['sessions_lost']}" + (f"; {row['notes']}" if row.get("notes") else "")
        )
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(RESULTS, indent=2))
