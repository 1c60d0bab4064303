"""``returnTo``: whatever comes in, the browser is only ever sent back to a path on this origin."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, quote, unquote, urljoin, urlsplit

from hypothesis import example, given
from hypothesis import strategies as st

from bff.session.redis import login_key
from bff.web.redirects import safe_return_to

from .conftest import Fuzzed
from .strategies import PATH_CHARS, check
from .volume import fuzz_settings, tried

ORIGIN = "https://app.example"
pieces = st.sampled_from(["/", "//", "\\", "/\\", "%2f", "%5c", "%2F%2F", ".", "..", "@", ":", "evil.example",
                          "javascript:", "http:", "\t", "\n", "\u3000", "\u2028", "%09", "%252f", "?", "#",
                          "\x00", "\u00a0", "\ufeff", "%E3%80%80", "a", "b/c"])
return_tos = st.one_of(st.lists(pieces, max_size=8).map("".join), st.text(max_size=80),
                       st.text(PATH_CHARS, max_size=80).map(lambda t: "/" + t))


def _lands_on_our_origin(target: str) -> bool:
    """Every way a browser might resolve the Location stays on ORIGIN."""
    for candidate in (target, unquote(target), target.replace("\\", "/")):
        resolved = urlsplit(urljoin(ORIGIN + "/some/page", candidate))
        if resolved.scheme != "https" or resolved.netloc != "app.example":
            return False
    return True


@fuzz_settings(5000)
@given(value=return_tos)
@example(value="/\t/evil.example")
@example(value="/%5C%5Cevil.example")
def test_safe_return_to_keeps_the_browser_on_this_origin(value: str) -> None:
    tried("returnTo (pure)")
    result = safe_return_to(value, "/")
    assert result == "/" or result == value
    assert result.startswith("/") and not result.startswith("//")
    assert "\\" not in result and not any(ord(c) < 0x21 or ord(c) == 0x7F for c in result)
    assert _lands_on_our_origin(result), result


@fuzz_settings(250)
@given(value=return_tos)
def test_login_stores_only_a_safe_return_path(fuzzed: Fuzzed, value: str) -> None:
    tried("returnTo -> /bff/login")
    answer = fuzzed.driver.request("GET", b"/bff/login",
                                   query=b"returnTo=" + quote(value, safe="").encode())
    check(fuzzed, answer, {302}, value)
    state = parse_qs(urlsplit(answer.header("location") or "").query)["state"][0]
    stored = fuzzed.driver.run(fuzzed.app.resources.redis.get(login_key(state)))
    kept = json.loads(stored)["return_to"]
    assert kept == safe_return_to(value, "/") and _lands_on_our_origin(kept), (value, kept)
