"""Chromium (Debian's, driven by Playwright) against the real provider and a gateway serving the SPA."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from bff.demo import spa_routes
from bff.demo_api import create_api
from tests.support.asgi_server import ServerThread
from tests.support.provider import REPO_ROOT
from tests.support.stack import Infra, Stack, running_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"


# Module scope: Playwright's sync API keeps an event loop running in this thread
# while it is open, which would break asyncio.run() in the tests that follow.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def spa_stack(infra: Infra) -> Iterator[Stack]:
    """A gateway serving the sample SPA at / and the sample API at /api."""
    with contextlib.closing(infra.redis.client()) as redis:
        redis.flushall()
    infra.provider.reset_stats()
    with ServerThread(create_api()) as api, running_stack(
        infra, extra_routes=spa_routes(), BFF_ROUTES=f"/api={api.url}"
    ) as stack:
        yield stack


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
