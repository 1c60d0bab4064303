"""Every answer of the gateway's own endpoints carries the security headers and ``no-store``."""

from __future__ import annotations

import pytest

from .conftest import Fuzzed

CALLS = [
    ("GET", b"/bff/user", [], 401), ("GET", b"/bff/user", ["session"], 200),
    ("GET", b"/bff/sessions", ["session"], 200), ("GET", b"/bff/login", [], 302),
    ("GET", b"/bff/callback", ["html"], 400), ("GET", b"/bff/callback", [], 400),
    ("GET", b"/bff/logout", [], 302), ("POST", b"/bff/logout", [], 200),
    ("POST", b"/bff/logout-all", [], 401), ("POST", b"/bff/backchannel-logout", [], 400),
    ("GET", b"/bff/nope", [], 404), ("DELETE", b"/bff/user", [], 405),
    ("GET", b"/bff/user", ["huge"], 431), ("GET", b"/bff/user", ["no-csrf"], 403),
    ("GET", b"/healthz", [], 200), ("GET", b"/readyz", [], 200), ("GET", b"/metrics", [], 200),
]


@pytest.mark.parametrize(("method", "path", "options", "status"), CALLS,
                         ids=[f"{m} {p.decode()} {' '.join(o)}".strip() for m, p, o, _ in CALLS])
def test_own_endpoints_carry_security_headers(
    fuzzed: Fuzzed, method: str, path: bytes, options: list[str], status: int
) -> None:
    headers = [(b"user-agent", fuzzed.user_agent.encode())]
    if "no-csrf" not in options:
        headers.append((b"x-csrf", b"1"))
    if "session" in options:
        headers.append((b"cookie", b"bff=" + fuzzed.cookie.encode()))
    if "html" in options:
        headers = [(b"accept", b"text/html")]
    if "huge" in options:
        headers.append((b"x-huge", b"h" * 20000))
    answer = fuzzed.driver.request(method, path, headers=headers)
    assert answer.status == status, answer.body[:200]
    csp = answer.header("content-security-policy") or ""
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, csp
    assert answer.header("x-content-type-options") == "nosniff"
    assert answer.header("referrer-policy") == "no-referrer"
    assert answer.header("x-frame-options") == "DENY"
    if path.startswith(b"/bff/"):
        assert answer.header("cache-control") == "no-store"
