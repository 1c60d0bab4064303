"""join_upstream: the upstream URL never leaves the upstream's base path."""

from __future__ import annotations

import posixpath
import unicodedata
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bff.proxy import UnsafePath, join_upstream, strip_raw_prefix

BASE = "http://up.internal:9000/base"

BYPASSES = [
    "/..", "/../x", "/./x", "/x/.", "/x/..", "/a/../../x",
    "/%2e%2e/x", "/%2E%2E/x", "/.%2e/x", "/%2e./x", "/%2e/x",
    "/%252e%252e/x", "/%25252e%25252e/x", "/%25%32%65%25%32%65/x", "/%%32%65%%32%65/x",
    "/a%2fb", "/a%2Fb", "/%2f%2e%2e", "/a%5cb", "/a%5Cb", "/a%255cb", "/a%252fb",
    "/a\\b", "/..\\x", "/%2e%2e%5c/x",
    "//x", "/a//b", "/a/%00b", "/a\x00b", "/a\nb", "/a\rb", "/a\tb", "/a%0ab", "/a%0d%0ab",
    "/..;/x", "/..;jsessionid=1/x", "/%2e%2e;x=1/y", "/.../x", "/.. /x", "/..%20/x",
    "/%c0%ae%c0%ae/x", "/%c0%af", "/%e0%80%ae%e0%80%ae/x", "/%uff0e%uff0e/x",
    "/%ef%bc%8e%ef%bc%8e/x", "/\uff0e\uff0e/x", "/a%ef%bc%8fb", "/%zz", "/%2",
    "x/y",
]


@pytest.mark.parametrize("raw", BYPASSES)
def test_traversal_and_separator_tricks_are_refused(raw: str) -> None:
    with pytest.raises(UnsafePath):
        join_upstream(BASE, raw.encode("utf-8"), b"")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", BASE),
        ("/", BASE + "/"),
        ("/items/42", BASE + "/items/42"),
        ("/a%2Bb/c%20d/%7e/%41", BASE + "/a%2Bb/c%20d/%7e/%41"),
        ("/report.v2.pdf", BASE + "/report.v2.pdf"),
        ("/x;v=1/.hidden/..name", BASE + "/x;v=1/.hidden/..name"),
        ("/a/", BASE + "/a/"),
        ("/%E2%9C%93", BASE + "/%E2%9C%93"),
        ("/100%25", BASE + "/100%25"),
    ],
)
def test_safe_paths_keep_their_percent_encoding_verbatim(raw: str, expected: str) -> None:
    assert join_upstream(BASE, raw.encode(), b"") == expected


def test_raw_characters_outside_rfc3986_are_encoded_like_a_browser_would() -> None:
    assert join_upstream(BASE, "/a b/é\"".encode(), b"") == BASE + "/a%20b/%C3%A9%22"


def test_query_is_kept_verbatim_and_appended() -> None:
    url = join_upstream(BASE, b"/x", b"a=%2F&b=c+d&e[]=1")
    assert url == BASE + "/x?a=%2F&b=c+d&e[]=1"


def test_query_with_control_characters_is_refused() -> None:
    with pytest.raises(UnsafePath):
        join_upstream(BASE, b"/x", b"a=\r\nInjected: 1")


def test_upstream_without_path_gets_a_root_slash() -> None:
    assert join_upstream("http://up:1", b"", b"") == "http://up:1/"
    assert join_upstream("http://up:1", b"/x", b"q=1") == "http://up:1/x?q=1"


def test_unsafe_path_is_a_value_error() -> None:
    assert issubclass(UnsafePath, ValueError)


def test_raw_prefix_must_be_spelled_literally() -> None:
    assert strip_raw_prefix(b"/api/x", "/api") == b"/x"
    assert strip_raw_prefix(b"/api", "/api") == b""
    for raw in (b"/%61pi/x", b"/API/x", b"/apix"):
        with pytest.raises(UnsafePath):
            strip_raw_prefix(raw, "/api")


def _resolve(path: str) -> str:
    """What a lenient upstream might make of a path: decode it all, fold, resolve dots."""
    for _ in range(10):
        path = unquote(path, errors="replace")
    path = unicodedata.normalize("NFKC", path).replace("\\", "/")
    return posixpath.normpath("/".join(_fold(part) for part in path.split("/")))


def _fold(segment: str) -> str:
    # Worst case: servlet containers drop ';params', Windows drops trailing dots and spaces.
    name = segment.split(";", 1)[0]
    return ".." if "." in name and not name.strip(". ") else segment


PIECES = [
    "/", ".", "..", "%2e", "%2E", "%25", "%2f", "%2F", "%5c", "%5C", "\\", "a", "b", "%",
    "2", "e", "E", "f", "5", "c", ";", "%00", "%c0%ae", "\uff0e", "%ef%bc%8e", "~", " ", "%41",
    "%252e", "\x00", "\n",
]


@settings(max_examples=2000, database=None, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12), st.sampled_from(["", "a=1", "x=%2e%2e/"]))
def test_join_upstream_stays_under_the_base_path_or_refuses(pieces: list[str], query: str) -> None:
    raw = ("/" + "".join(pieces)).encode("utf-8")
    try:
        url = join_upstream(BASE, raw, query.encode())
    except UnsafePath:
        return
    assert url.startswith(BASE)
    path = urlsplit(url).path
    resolved = _resolve(path)
    assert resolved == "/base" or resolved.startswith("/base/"), (raw, url, resolved)
    # httpx sends exactly this path: it neither decodes nor normalises what passed.
    assert httpx.URL(url).raw_path.split(b"?")[0] == path.encode()
