"""The reverse-proxy half of the gateway: routes, safe upstream URLs, headers, streaming.

It knows nothing of sessions or OpenID Connect: the gateway resolves the session and
the bearer token, then hands the request to a ``Forwarder``.
"""

from bff.proxy.forward import CLIENT_CLOSED, Forwarder
from bff.proxy.headers import (
    HOP_BY_HOP,
    inbound_headers,
    is_identity_header,
    outbound_headers,
    request_id,
)
from bff.proxy.paths import UnsafePath, join_upstream, strip_raw_prefix
from bff.proxy.routes import RouteMatch, RouteTable

__all__ = [
    "CLIENT_CLOSED",
    "HOP_BY_HOP",
    "Forwarder",
    "RouteMatch",
    "RouteTable",
    "UnsafePath",
    "inbound_headers",
    "is_identity_header",
    "join_upstream",
    "outbound_headers",
    "request_id",
    "strip_raw_prefix",
]
