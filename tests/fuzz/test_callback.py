"""Callback parameters of any shape, with and without a real pending login: a 4xx, no session."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

from hypothesis import example, given
from hypothesis import strategies as st

from .conftest import Fuzzed
from .strategies import check
from .volume import fuzz_settings, tried

NAMES = ["code", "state", "error", "error_description", "iss", "session_state", "scope", "x"]
values = st.one_of(st.text(max_size=40), st.text(max_size=3000), st.sampled_from(
    ["", "access_denied", "%", "%zz", "%00", "%ff%fe", "\u0000", "\ud7ff", "a" * 300, "login_required"]))
pairs = st.lists(st.tuples(st.sampled_from(NAMES) | st.text(max_size=8), values), max_size=6)


def encode(params: list[tuple[str, str]], raw: bool) -> bytes:
    if raw:  # as sent, broken escapes and all (the server passes the query string through)
        text = "&".join(f"{k}={v}" for k, v in params)
        return "".join(c if 0x21 <= ord(c) < 0x7F else quote(c) for c in text).encode("ascii")
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params).encode("ascii")


def _start_login(fuzzed: Fuzzed) -> tuple[str, bytes]:
    """A real pending login: its state and the browser cookie bound to it."""
    start = fuzzed.driver.request("GET", b"/bff/login")
    assert start.status == 302, start.body
    state = parse_qs(urlsplit(start.header("location") or "").query)["state"][0]
    cookie = start.all("set-cookie")[0].split(";")[0].encode()
    return state, cookie


@fuzz_settings(300)
@given(params=pairs, raw=st.booleans(), real_state=st.sampled_from([None, "keep", "code_only"]),
       accept=st.sampled_from([b"application/json", b"text/html", b"*/*"]))
@example(params=[("state", "x"), ("state", "y")], raw=False, real_state=None, accept=b"text/html")
@example(params=[("error", "access_denied")], raw=True, real_state="keep", accept=b"text/html")
def test_any_callback_is_a_4xx_with_no_session(
    fuzzed: Fuzzed, params: list[tuple[str, str]], raw: bool, real_state: str | None, accept: bytes
) -> None:
    tried("callback parameters")
    headers = [(b"accept", accept), (b"user-agent", fuzzed.user_agent.encode())]
    if real_state is not None:
        state, cookie = _start_login(fuzzed)
        headers.append((b"cookie", cookie))
        params = [("state", state), *[p for p in params if p[0] != "state"]]
        if real_state == "code_only":
            params = [p for p in params if p[0] not in ("error",)]
    answer = fuzzed.driver.request("GET", b"/bff/callback", query=encode(params, raw), headers=headers)
    # 400 for a refused sign-in; a fake code sent to the real provider is refused there too.
    check(fuzzed, answer, {400}, params)
    assert not any(c.startswith(("bff=", "__Host-bff=")) and "Max-Age=0" not in c
                   for c in answer.all("set-cookie")), answer.all("set-cookie")
