"""RouteTable: longest prefix wins, on whole path segments only."""

from __future__ import annotations

import pytest

from bff.config import Route
from bff.proxy import RouteTable, UnsafePath

API = Route(prefix="/api", upstream="http://api:1/base")
API_V2 = Route(prefix="/api/v2", upstream="http://v2:1")
KEEP = Route(prefix="/keep", upstream="http://keep:1", strip_prefix=False)
TABLE = RouteTable([API, API_V2, KEEP])


@pytest.mark.parametrize(
    ("path", "route", "remainder"),
    [
        ("/api", API, ""),
        ("/api/", API, "/"),
        ("/api/x", API, "/x"),
        ("/api/x/y/", API, "/x/y/"),
        ("/api/v2", API_V2, ""),
        ("/api/v2/orders", API_V2, "/orders"),
        ("/api/v2x", API, "/v2x"),
        ("/api/v1/x", API, "/v1/x"),
        ("/keep/x", KEEP, "/keep/x"),
        ("/keep", KEEP, "/keep"),
    ],
)
def test_longest_prefix_on_segment_boundaries_wins(path: str, route: Route, remainder: str) -> None:
    match = TABLE.match(path)
    assert match is not None
    assert (match.route, match.remainder) == (route, remainder)


@pytest.mark.parametrize("path", ["/apix", "/ap", "/", "", "api/x", "/other/api", "/API/x", "/keeper"])
def test_paths_that_only_share_characters_with_a_prefix_do_not_match(path: str) -> None:
    assert TABLE.match(path) is None


def test_duplicate_prefixes_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        RouteTable([API, Route(prefix="/api", upstream="http://other:1")])


def test_table_lists_its_routes() -> None:
    assert len(TABLE) == 3
    assert set(TABLE) == {API, API_V2, KEEP}


def test_upstream_url_strips_the_prefix_from_the_raw_path() -> None:
    match = TABLE.match("/api/a b")
    assert match is not None
    assert match.upstream_url(b"/api/a%20b", b"q=1") == "http://api:1/base/a%20b?q=1"


def test_upstream_url_keeps_the_prefix_when_the_route_says_so() -> None:
    match = TABLE.match("/keep/x")
    assert match is not None
    assert match.upstream_url(b"/keep/x", b"") == "http://keep:1/keep/x"


def test_upstream_url_refuses_a_prefix_reached_only_after_decoding() -> None:
    match = TABLE.match("/api/x")
    assert match is not None
    with pytest.raises(UnsafePath):
        match.upstream_url(b"/%61pi/x", b"")


def test_upstream_url_refuses_traversal_after_the_prefix() -> None:
    match = TABLE.match("/api/../bff/user")
    assert match is not None
    with pytest.raises(UnsafePath):
        match.upstream_url(b"/api/%2e%2e/bff/user", b"")
