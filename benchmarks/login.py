"""Log in once per target through the real provider's login form; return the session cookie."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from benchmarks.servers import USER_AGENT
from tests.support.provider import login_through_provider

BROWSER_HEADERS = {"User-Agent": USER_AGENT, "Accept": "text/html,application/xhtml+xml"}


@dataclass(frozen=True)
class Login:
    cookie_name: str
    cookie_value: str

    @property
    def header(self) -> str:
        return f"{self.cookie_name}={self.cookie_value}"


def _cookie(client: httpx.Client, name: str) -> str:
    for cookie in client.cookies.jar:
        if cookie.name == name and cookie.value:
            return cookie.value
    names = sorted(cookie.name for cookie in client.cookies.jar)
    raise RuntimeError(f"no {name!r} cookie after login (cookies: {names})")


def login_bff(base: str, username: str = "bench") -> Login:
    """``/bff/login`` -> provider login form -> ``/bff/callback``: the ``bff`` cookie."""
    with httpx.Client(headers=BROWSER_HEADERS, timeout=30) as client:
        done = login_through_provider(client, f"{base}/bff/login?returnTo=/", username=username)
        if done.status_code != 302:
            raise RuntimeError(f"bff callback answered {done.status_code}: {done.text[:500]}")
        return Login("bff", _cookie(client, "bff"))


def login_apache(base: str, username: str = "bench") -> Login:
    """A protected URL -> mod_auth_openidc's redirect -> provider login -> its redirect URI."""
    with httpx.Client(headers=BROWSER_HEADERS, timeout=30) as client:
        done = login_through_provider(client, f"{base}/api/json", username=username)
        if done.status_code != 302:
            raise RuntimeError(f"mod_auth_openidc answered {done.status_code}: {done.text[:500]}")
        return Login("mod_auth_openidc_session", _cookie(client, "mod_auth_openidc_session"))
