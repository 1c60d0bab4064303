"""Ending sessions with everything that goes with it: store, refresh-token revocation, metrics."""

from __future__ import annotations

import logging

from bff.errors import ProviderError
from bff.resources import Resources
from bff.session.model import Session
from bff.session.service import ClientInfo

log = logging.getLogger("bff.logout")


async def end_session(
    res: Resources, session: Session, reason: str, who: ClientInfo | None, *, revoke: bool = True
) -> bool:
    """Remove the session, then revoke its refresh token at the provider (best effort).

    The local session ends even when the provider cannot be reached: a user who
    clicks "log out" is logged out of the gateway, whatever the provider does.
    """
    refresh_token = res.sessions.decrypt(session, "rt") if revoke else None
    removed = await res.sessions.end(session, reason, who)
    if removed:
        res.metrics.logouts.labels(reason).inc()
    if removed and refresh_token:
        try:
            await res.oidc.revoke(refresh_token, "refresh_token")
        except ProviderError as exc:
            res.metrics.provider_errors.labels("revocation").inc()
            log.warning("refresh token revocation failed: %s", type(exc).__name__)
    return removed
