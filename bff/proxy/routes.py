"""The route table: which upstream serves a request path (longest prefix, whole segments only)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from bff.config import Route
from bff.proxy.paths import join_upstream, strip_raw_prefix


@dataclass(frozen=True)
class RouteMatch:
    """A route chosen for a path.

    ``remainder`` is the decoded path after the prefix when the route strips it
    (``""`` for the prefix itself), else the whole path.
    """

    route: Route
    remainder: str

    def upstream_url(self, raw_path: bytes, query: bytes) -> str:
        """The upstream URL for the request's raw path and query; raises UnsafePath.

        ``raw_path`` is the whole raw request path (ASGI ``scope["raw_path"]``); the
        prefix is removed here when the route strips it.
        """
        route = self.route
        path = strip_raw_prefix(raw_path, route.prefix) if route.strip_prefix else raw_path
        return join_upstream(route.upstream, path, query)


class RouteTable:
    """Routes by prefix; ``match`` picks the longest prefix that ends on a segment boundary."""

    def __init__(self, routes: Sequence[Route]) -> None:
        by_prefix: dict[str, Route] = {}
        for route in routes:
            prefix = route.prefix.rstrip("/") or "/"
            if prefix in by_prefix:
                raise ValueError(f"route prefix {prefix!r} is defined twice")
            by_prefix[prefix] = route
        self._by_prefix = by_prefix

    def __iter__(self) -> Iterator[Route]:
        return iter(self._by_prefix.values())

    def __len__(self) -> int:
        return len(self._by_prefix)

    def match(self, path: str) -> RouteMatch | None:
        """The route for ``path`` (decoded, as in ASGI ``scope["path"]``), or None."""
        if not path.startswith("/"):
            return None
        candidate = path.rstrip("/") or "/"
        # Walk up one segment at a time: the first hit is the longest matching prefix.
        while True:
            route = self._by_prefix.get(candidate)
            if route is not None:
                return RouteMatch(route, self._remainder(route, candidate, path))
            if candidate == "/":
                return None
            candidate = candidate.rsplit("/", 1)[0] or "/"

    @staticmethod
    def _remainder(route: Route, prefix: str, path: str) -> str:
        if not route.strip_prefix:
            return path
        if prefix == "/":
            return path
        return path[len(prefix):]
