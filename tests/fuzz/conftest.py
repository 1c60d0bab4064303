"""Fuzz fixtures: the real app in-process on the shared Redis and provider, an echo upstream,
a signed-in session, a log watch for unhandled errors, and the count of inputs tried."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bff.app import create_app
from bff.config import Settings, load_settings
from bff.session.store import NewSession
from tests.support.asgi_server import ServerThread
from tests.support.stack import BROWSER_UA, Infra, gateway_env
from tests.support.upstream import UpstreamLog, upstream_app

from .driver import AppDriver
from .volume import VOLUME

REPORT = Path(__file__).resolve().parents[2] / "test-artifacts" / "fuzz-volume.json"


class ErrorLog(logging.Handler):
    """Every ERROR the gateway logs (an unhandled exception is logged at ERROR)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        found = [f"{r.name}: {r.getMessage()}" for r in self.records]
        self.records.clear()
        return found


@dataclass
class Fuzzed:
    driver: AppDriver
    settings: Settings
    upstream: ServerThread
    errors: ErrorLog
    cookie: str  # a live session's cookie value
    user_agent: str = BROWSER_UA

    @property
    def app(self) -> Any:
        return self.driver.app


@pytest.fixture(scope="package")
def fuzzed(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    log = UpstreamLog()
    with ServerThread(upstream_app(log)) as upstream:
        config = tmp_path_factory.mktemp("fuzz") / "bff.toml"
        config.write_text(
            f'[[routes]]\nprefix = "/api"\nupstream = "{upstream.url}/v1"\n\n'
            f'[[routes]]\nprefix = "/open"\nupstream = "{upstream.url}/pub"\ntoken = "none"\n'
            "csrf = false\nmax_body_size = 4096\n",
            encoding="utf-8",
        )
        port = infra.take_port()
        env = gateway_env(infra, port, {
            "BFF_CONFIG": str(config), "BFF_LOGIN_RATE_LIMIT": "1000000",
            "BFF_LOGIN_GLOBAL_LIMIT": "1000000", "BFF_SESSION_IDLE_TIMEOUT": "86400",
        })
        app_settings = load_settings(env)
        driver = AppDriver(create_app(app_settings), server=("127.0.0.1", port)).start()
        errors = ErrorLog()
        logging.getLogger("bff").addHandler(errors)
        try:
            cookie = new_session(driver)
            yield Fuzzed(driver, app_settings, upstream, errors, cookie)
        finally:
            logging.getLogger("bff").removeHandler(errors)
            driver.stop()
            infra.in_use.discard(port)


@pytest.fixture(autouse=True)
def _live_session(request: pytest.FixtureRequest) -> None:
    """Other tests may have flushed the shared Redis: make sure the fuzz session exists."""
    if "fuzzed" in request.fixturenames:
        fuzzed: Fuzzed = request.getfixturevalue("fuzzed")
        fuzzed.cookie = new_session(fuzzed.driver)
        fuzzed.errors.take()


def new_session(driver: AppDriver, sub: str = "fuzzer") -> str:
    sessions = driver.app.resources.sessions
    created = driver.run(sessions.create(NewSession(
        sub=sub, claims={"name": "Fuzz"}, provider_sid="fuzz-sid", ip="127.0.0.1",
        user_agent=BROWSER_UA, access_token="fuzz-access-token",
        access_expires_at=time.time() + 86400, refresh_token=None, id_token=None,
    )))
    cookie: str = created[0]
    return cookie


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not VOLUME:
        return
    terminalreporter.section("fuzz: inputs tried")
    for target, count in sorted(VOLUME.items()):
        terminalreporter.write_line(f"{target}: {count}")
    terminalreporter.write_line(f"total: {sum(VOLUME.values())}")
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps({**dict(sorted(VOLUME.items())), "total": sum(VOLUME.values())},
                                 indent=2))
