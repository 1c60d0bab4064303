"""ensure_fresh: a valid access token for a session, refreshing it exactly once.

However many requests of one session arrive at however many gateway instances,
one refresh grant reaches the provider:

1. In-process, concurrent callers for one session share one task (cheap; not
   relied upon for correctness).
2. Across processes, a Redis lock with an owner token and expiry. The holder
   reloads the session, re-checks (someone may have refreshed just before),
   spends the refresh token, and writes the result with a fenced script that
   succeeds only while it still holds the lock. The lock is renewed while a
   slow provider answers.
3. Waiters poll the session's token version with a short backoff and use the
   new token as soon as it lands; they never spend the old refresh token.

A rejected refresh (``invalid_grant``) ends the session. An unreachable
provider leaves the current token in use while it is still valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bff.errors import InvalidGrant, OAuthError, ProviderUnavailable, SessionEnded
from bff.logs import audit
from bff.session.model import Session
from bff.session.service import SessionService

log = logging.getLogger("bff.refresh")

LOCK_TTL_MS = 10_000
WAIT_TIMEOUT = 15.0


class TokenGrant(Protocol):
    """What a refresh grant returns (``bff.oidc.client.TokenResponse`` fits)."""

    @property
    def access_token(self) -> str: ...
    @property
    def expires_in(self) -> int | None: ...
    @property
    def refresh_token(self) -> str | None: ...
    @property
    def id_token(self) -> str | None: ...


RefreshGrant = Callable[[str], Awaitable[TokenGrant]]


@dataclass(frozen=True)
class Fresh:
    """A session view and an access token that is valid for at least the leeway."""

    session: Session
    access_token: str


class TokenRefresher:
    def __init__(
        self,
        sessions: SessionService,
        refresh_grant: RefreshGrant,
        *,
        leeway: int,
        default_lifetime: int = 300,
        on_result: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.store = sessions.store
        self.refresh_grant = refresh_grant
        self.leeway = leeway
        self.default_lifetime = default_lifetime
        self.on_result = on_result or (lambda outcome: None)
        self.clock = clock
        self._inflight: dict[str, asyncio.Task[Fresh]] = {}

    def _usable(self, session: Session, now: float) -> bool:
        return session.access_expires_at - now > self.leeway

    async def ensure_fresh(self, session: Session, *, force: bool = False) -> Fresh:
        """A usable access token; ``force`` refreshes unless someone already did since ``session``.

        Raises SessionEnded (401), ProviderUnavailable or StoreUnavailable (503).
        """
        if not force and self._usable(session, self.clock()):
            return self._fresh(session)
        if not session.has_refresh_token:
            if not force and session.access_expires_at > self.clock():
                return self._fresh(session)
            raise SessionEnded("access_token_expired")
        task = self._inflight.get(session.key)
        if task is None:
            task = asyncio.ensure_future(self._refresh(session, force))
            self._inflight[session.key] = task
            task.add_done_callback(lambda _: self._inflight.pop(session.key, None))
        return await asyncio.shield(task)

    def _fresh(self, session: Session) -> Fresh:
        token = self.sessions.decrypt(session, "at")
        if token is None:
            raise SessionEnded("undecryptable_tokens")
        return Fresh(session, token)

    def _newer(self, current: Session, seen: Session, force: bool) -> bool:
        if current.token_version != seen.token_version:
            return self._usable(current, self.clock()) or force
        return not force and self._usable(current, self.clock())

    async def _refresh(self, seen: Session, force: bool) -> Fresh:
        owner = secrets.token_hex(16)
        deadline = self.clock() + WAIT_TIMEOUT
        delay = 0.005
        while True:
            current = await self.store.get(seen.key)
            if current is None:
                raise SessionEnded("session_gone")
            if self._newer(current, seen, force):
                return self._fresh(current)
            if await self.store.acquire_lock(seen.key, owner, LOCK_TTL_MS):
                try:
                    return await self._refresh_locked(seen, owner, force)
                finally:
                    await self.store.release_lock(seen.key, owner)
            if self.clock() > deadline:
                raise ProviderUnavailable("timed out waiting for another instance's token refresh")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _refresh_locked(self, seen: Session, owner: str, force: bool) -> Fresh:
        current = await self.store.get(seen.key)
        if current is None:
            raise SessionEnded("session_gone")
        if self._newer(current, seen, force):
            return self._fresh(current)
        refresh_token = self.sessions.decrypt(current, "rt")
        if refresh_token is None:
            raise SessionEnded("undecryptable_tokens")
        renewer = asyncio.ensure_future(self._keep_lock(seen.key, owner))
        try:
            grant = await self.refresh_grant(refresh_token)
        except InvalidGrant as exc:
            self.on_result("invalid_grant")
            audit("refresh.failure", session=current.key, sub=current.sub, reason="invalid_grant")
            await self.sessions.end(current, "refresh_rejected")
            raise SessionEnded("refresh_rejected") from exc
        except (ProviderUnavailable, OAuthError) as exc:
            self.on_result("provider_error")
            audit("refresh.failure", session=current.key, sub=current.sub, reason=type(exc).__name__)
            if current.access_expires_at > self.clock() and not force:
                log.warning("refresh failed (%s); using the still-valid access token", type(exc).__name__)
                return self._fresh(current)
            if isinstance(exc, ProviderUnavailable):
                raise
            raise ProviderUnavailable(f"token refresh failed: {exc}") from exc
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        now = self.clock()
        lifetime = grant.expires_in if grant.expires_in is not None else self.default_lifetime
        key = current.key
        fields: dict[str, bytes | str | int] = {
            "at": self.sessions.encrypt(key, "at", grant.access_token),
            "ax": f"{now + lifetime:.3f}",
            "tv": current.token_version + 1,
        }
        # Keep the old refresh token when the provider did not rotate it.
        if grant.refresh_token:
            fields["rt"] = self.sessions.encrypt(key, "rt", grant.refresh_token)
        if grant.id_token:
            fields["it"] = self.sessions.encrypt(key, "it", grant.id_token)
        written = await self.store.write_tokens(key, owner, fields)
        self.on_result("success")
        audit("refresh.success", session=key, sub=current.sub, fenced_write=written)
        if not written:
            # We lost the lock while the provider answered; someone newer owns the
            # session's tokens now. Use ours for this request only.
            log.warning("refresh lock lost before write; result not stored")
        encrypted = {**current.encrypted, **{k: v for k, v in fields.items() if isinstance(v, bytes)}}
        updated = Session(
            **{**current.__dict__, "access_expires_at": now + lifetime,
               "token_version": current.token_version + 1, "encrypted": encrypted}
        )
        return Fresh(updated, grant.access_token)

    async def _keep_lock(self, key: str, owner: str) -> None:
        while True:
            await asyncio.sleep(LOCK_TTL_MS / 3000)
            if not await self.store.renew_lock(key, owner, LOCK_TTL_MS):
                return
