"""Who the client is: address, scheme and host, believing X-Forwarded-* only from trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import Scope

from bff.config import Network
from bff.session.service import ClientInfo


@dataclass(frozen=True)
class Origin:
    ip: str
    scheme: str
    host: str
    peer_trusted: bool


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def resolve_origin(scope: Scope, proxies: Sequence[Network], default_scheme: str) -> Origin:
    """The client's address walking X-Forwarded-For right to left through trusted hops only."""
    peer = (scope.get("client") or ("", 0))[0] or ""
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    host = header(scope, b"host") or ""
    if not proxies or not _trusted(peer, proxies):
        return Origin(peer, scheme if scope.get("scheme") else default_scheme, host, False)
    ip = peer
    forwarded = header(scope, b"x-forwarded-for")
    if forwarded:
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            ip = hop
            if not _trusted(hop, proxies):
                break
    proto = (header(scope, b"x-forwarded-proto") or "").split(",")[0].strip().lower()
    fwd_host = (header(scope, b"x-forwarded-host") or "").split(",")[0].strip()
    return Origin(
        ip=ip,
        scheme=proto if proto in ("http", "https") else scheme,
        host=fwd_host or host,
        peer_trusted=True,
    )


def client_info(
    scope: Scope, proxies: Sequence[Network], request_id: str = "", origin: Origin | None = None
) -> ClientInfo:
    """Address (via ``origin`` when already resolved), user agent and request id."""
    origin = origin or resolve_origin(scope, proxies, "http")
    user_agent = (header(scope, b"user-agent") or "")[:512]
    return ClientInfo(ip=origin.ip, user_agent=user_agent, request_id=request_id)
