"""Steady traffic from several logged-in browsers, recorded answer by answer.

Runs in its own thread and event loop while a test breaks things; afterwards
the samples say what users saw during the fault and when each got through again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from tests.support.provider import login_through_provider
from tests.support.stack import BROWSER_UA


@dataclass
class User:
    name: str
    cookies: httpx.Cookies


@dataclass(frozen=True)
class Sample:
    at: float
    user: str
    base: str
    path: str
    status: int  # 0: no HTTP answer at all (connection refused or reset)
    error: str | None
    retry_after: str | None
    cleared_cookie: bool
    sub: str | None


def log_in(gateway_url: str, names: Sequence[str]) -> list[User]:
    users = []
    for name in names:
        with httpx.Client(headers={"User-Agent": BROWSER_UA}, timeout=30) as browser:
            done = login_through_provider(browser, f"{gateway_url}/bff/login", username=name)
            assert done.status_code == 302, done.text
            users.append(User(name, httpx.Cookies(browser.cookies)))
    return users


@dataclass
class Traffic:
    """Each user calls ``paths`` in turn on ``urls`` in turn, with a short pause between calls."""

    urls: Sequence[str]
    users: Sequence[User]
    paths: Sequence[str] = ("/bff/user", "/api/ping")
    pause: float = 0.02
    timeout: float = 15.0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    async def _run(self) -> None:
        await asyncio.gather(*(self._user_loop(index, user) for index, user in enumerate(self.users)))

    async def _user_loop(self, index: int, user: User) -> None:
        headers = {"User-Agent": BROWSER_UA, "X-CSRF": "1"}
        turn = index
        async with httpx.AsyncClient(cookies=user.cookies, headers=headers, timeout=self.timeout) as client:
            while not self._stop.is_set():
                url = self.urls[(turn // len(self.paths)) % len(self.urls)]
                path = self.paths[turn % len(self.paths)]
                turn += 1
                self.samples.append(await self._call(client, user, url, path))
                await asyncio.sleep(self.pause)

    async def _call(self, client: httpx.AsyncClient, user: User, base: str, path: str) -> Sample:
        try:
            response = await client.get(base + path)
        except httpx.HTTPError:
            return Sample(time.monotonic(), user.name, base, path, 0, None, None, False, None)
        error = sub = None
        with contextlib.suppress(ValueError, AttributeError):
            body = response.json()
            error = body.get("error")
            sub = body.get("sub") if path == "/bff/user" else None
        cleared = any(v.startswith("bff=") for k, v in response.headers.multi_items() if k == "set-cookie")
        return Sample(time.monotonic(), user.name, base, path, response.status_code, error,
                      response.headers.get("retry-after"), cleared, sub)

    # --- reading the record -------------------------------------------------------------------

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> Counter[int]:
        return Counter(s.status for s in self.samples if since <= s.at <= until)

    def all_back_at(self, since: float, base: str | None = None) -> float | None:
        """When every user had had a 200 on every path after ``since`` (None if not yet)."""
        latest = since
        for user in self.users:
            for path in self.paths:
                oks = [s.at for s in self.samples if s.user == user.name and s.path == path
                       and s.status == 200 and s.at >= since and base in (None, s.base)]
                if not oks:
                    return None
                latest = max(latest, min(oks))
        return latest

    def wait_all_back(self, since: float, timeout: float = 30.0, base: str | None = None) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            back = self.all_back_at(since, base)
            if back is not None:
                return back
            time.sleep(0.05)
        raise AssertionError(f"not every user got through again within {timeout}s: "
                             f"{self.statuses(since)}")

    def problems(self, allowed: frozenset[int] = frozenset({200, 503}),
                 gone: tuple[str, float] | None = None) -> list[Sample]:
        """Answers that break the contract: 401s, 500s, a cleared cookie, a 503 without Retry-After,
        a /bff/user answer for the wrong user. ``gone``: (base URL, since when) of an instance
        that was stopped, whose calls may then get no answer at all."""
        bad = []
        for s in self.samples:
            if gone is not None and s.base == gone[0] and s.at >= gone[1] and s.status == 0:
                continue
            if s.status not in allowed or s.cleared_cookie:
                bad.append(s)
            elif s.status == 503 and (s.error != "unavailable" or not s.retry_after):
                bad.append(s)
            elif s.status == 200 and s.path == "/bff/user" and s.sub != s.user:
                bad.append(s)
        return bad
