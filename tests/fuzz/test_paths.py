"""Route matching and upstream path joining: the longest whole-segment prefix wins, and no request
path, however encoded, reaches outside the route's upstream base path."""

from __future__ import annotations

from urllib.parse import unquote, unquote_to_bytes, urlsplit

from hypothesis import example, given
from hypothesis import strategies as st

from bff.config import Route
from bff.proxy.paths import UnsafePath, join_upstream, strip_raw_prefix
from bff.proxy.routes import RouteTable

from .conftest import Fuzzed
from .strategies import check, queries, raw_paths
from .volume import fuzz_settings, tried

names = st.sampled_from(["a", "b", "ab", "api", "v1", "x-y", "a_b", "a.b", "~u"])
prefixes = st.lists(names, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
decoded_paths = st.lists(st.sampled_from(["a", "b", "x", "abc", "", ".", "..", "a-b", "x.y"]) | names,
                         max_size=5).map(lambda parts: "/" + "/".join(parts))


@fuzz_settings(2000)
@given(chosen=st.sets(prefixes, min_size=1, max_size=6), path=decoded_paths | prefixes)
def test_the_longest_whole_segment_prefix_matches(chosen: set[str], path: str) -> None:
    tried("route matching (pure)")
    table = RouteTable([Route(prefix=p, upstream="http://up.internal") for p in chosen])
    expected = max((p for p in chosen if path.rstrip("/") == p or path.startswith(p + "/")),
                   key=len, default=None)
    match = table.match(path)
    assert (match.route.prefix if match else None) == expected, (chosen, path)
    if match is not None:
        assert match.remainder == path[len(match.route.prefix):]


def _levels(segment: str) -> list[bytes]:
    seen = [segment.encode()]
    for _ in range(6):
        seen.append(unquote_to_bytes(seen[-1]))
    return seen


def _stays_under(url: str, upstream: str) -> None:
    base = upstream.rstrip("/")
    assert url.startswith(base), (url, base)
    parts = urlsplit(url)
    assert parts.netloc == urlsplit(upstream).netloc
    rest = parts.path[len(urlsplit(base).path):]
    assert rest == "" or rest.startswith("/"), rest
    for segment in rest.split("/")[1:]:
        for level in _levels(segment):
            name = level.split(b";", 1)[0]
            assert not (b"." in name and not name.strip(b". ")), (url, segment)
            assert b"/" not in level and b"\\" not in level and b"\x00" not in level, (url, segment)


@fuzz_settings(2500)
@given(raw=raw_paths, query=queries, upstream=st.sampled_from(
    ["http://up.internal", "http://up.internal/", "http://up.internal/v1", "https://up.internal/a/b/"]))
@example(raw="/%2e%2e/admin", query="", upstream="http://up.internal/v1")
@example(raw="/%252e%252e/x", query="a=%", upstream="http://up.internal/v1")
@example(raw="/%ef%bc%8e%ef%bc%8e/x", query="", upstream="http://up.internal/v1")
def test_joined_upstream_urls_never_leave_the_base_path(raw: str, query: str, upstream: str) -> None:
    tried("path joining (pure)")
    try:
        url = join_upstream(upstream, raw.encode("ascii"), query.encode("ascii"))
    except UnsafePath:
        return
    _stays_under(url, upstream)
    assert not any(ord(c) < 0x21 or ord(c) == 0x7F for c in url), url


@fuzz_settings(600)
@given(raw=raw_paths, query=queries, route=st.sampled_from([b"/api", b"/open", b"/ap%69", b"/api%2F"]))
@example(raw="/..", query="", route=b"/api")
@example(raw="/%2e%2e%2f%2e%2e/admin", query="", route=b"/api")
def test_any_proxied_path_is_answered_inside_the_upstream_or_refused(
    fuzzed: Fuzzed, raw: str, query: str, route: bytes
) -> None:
    tried("request path -> proxied route")
    target = route + raw.encode("ascii")
    headers = [(b"cookie", b"bff=" + fuzzed.cookie.encode()), (b"x-csrf", b"1"),
               (b"user-agent", fuzzed.user_agent.encode())]
    answer = fuzzed.driver.request("GET", target, query=query.encode("ascii"), headers=headers)
    check(fuzzed, answer, {200, 400, 404}, (target, query))
    if answer.status == 200:
        seen = answer.json()["raw_path"]
        base = "/v1" if unquote(target.decode()).startswith("/api") else "/pub"
        _stays_under("http://up.internal" + seen, "http://up.internal" + base)
    if answer.status == 404:  # only what no route claims
        assert not unquote(target.decode()).startswith(("/api/", "/open/")), target


def test_strip_raw_prefix_refuses_other_spellings() -> None:
    assert strip_raw_prefix(b"/api/x", "/api") == b"/x"
    for raw in (b"/ap%69/x", b"/API/x", b"/api%2Fx", b"/apix"):
        try:
            strip_raw_prefix(raw, "/api")
        except UnsafePath:
            continue
        raise AssertionError(raw)
