"""Session lifecycle: create, load with idle/absolute/binding checks, read tokens, end.

This is where a cookie turns into a live Session or into a reason it is not one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from bff.errors import SessionEnded
from bff.logs import audit
from bff.session.cookies import CookieSigner, new_session_id, session_key
from bff.session.crypto import DecryptionError, TokenCipher
from bff.session.model import Session
from bff.session.redis import RedisSessionStore
from bff.session.store import NewSession


@dataclass(frozen=True)
class ClientInfo:
    """Who is asking, as far as binding and the session list care."""

    ip: str
    user_agent: str
    request_id: str = ""


class SessionService:
    """Create, load and end sessions; the only place that decides a session is over."""

    def __init__(
        self,
        store: RedisSessionStore,
        cipher: TokenCipher,
        signer: CookieSigner,
        *,
        idle_timeout: int,
        binding: Collection[str],
        max_cookie_size: int = 512,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.cipher = cipher
        self.signer = signer
        self.idle_timeout = idle_timeout
        self.binding = frozenset(binding)
        self.max_cookie_size = max_cookie_size
        self.clock = clock
        # Sliding expiry is written at a coarse granularity: most requests cost one read.
        self.touch_interval = min(60.0, idle_timeout / 10)

    def encrypt(self, key: str, field: str, value: str) -> bytes:
        return self.cipher.encrypt(value, f"{key}:{field}".encode())

    def decrypt(self, session: Session, field: str) -> str | None:
        blob = session.encrypted.get(field)
        if blob is None:
            return None
        try:
            return self.cipher.decrypt(blob, f"{session.key}:{field}".encode())
        except DecryptionError:
            return None

    async def create(self, new: NewSession) -> tuple[str, Session]:
        """A brand-new session (fresh id, never one the browser offered); returns (id, session)."""
        session_id = new_session_id()
        key = session_key(session_id)
        encrypted = {"at": self.encrypt(key, "at", new.access_token)}
        if new.refresh_token:
            encrypted["rt"] = self.encrypt(key, "rt", new.refresh_token)
        if new.id_token:
            encrypted["it"] = self.encrypt(key, "it", new.id_token)
        session = await self.store.create(key, new, encrypted, now=self.clock())
        return self.signer.sign(session_id), session

    def key_from_cookie(self, cookie_value: str | None) -> str | None:
        session_id = self.signer.unsign(cookie_value, max_length=self.max_cookie_size)
        return session_key(session_id) if session_id else None

    async def load(self, cookie_value: str | None, client: ClientInfo) -> Session | None:
        """The live session for a cookie, or None. Ends expired or re-bound sessions.

        Raises StoreUnavailable when Redis cannot answer: no one is logged out then.
        """
        key = self.key_from_cookie(cookie_value)
        if key is None:
            return None
        session = await self.store.get(key)
        if session is None:
            return None
        now = self.clock()
        reason = self._ended_reason(session, client, now)
        if reason is not None:
            await self.end(session, reason, client)
            return None
        if now - session.last_seen >= self.touch_interval:
            await self.store.touch(session, now=now)
        return session

    def timed_out(self, session: Session, now: float) -> str | None:
        """``absolute_timeout`` or ``idle_timeout`` when the session is over at ``now``, else None."""
        if now >= session.expires_at:
            return "absolute_timeout"
        if now - session.last_seen > self.idle_timeout:
            return "idle_timeout"
        return None

    def _ended_reason(self, session: Session, client: ClientInfo, now: float) -> str | None:
        timeout = self.timed_out(session, now)
        if timeout is not None:
            return timeout
        if "user-agent" in self.binding and client.user_agent != session.user_agent:
            return "binding_user_agent"
        if "ip" in self.binding and client.ip != session.ip:
            return "binding_ip"
        return None

    async def end(self, session: Session, reason: str, client: ClientInfo | None = None) -> bool:
        """Remove the session from the store (tokens are revoked by the caller)."""
        removed = await self.store.delete(session)
        if removed:
            audit(
                f"logout.{reason}" if not reason.startswith("logout.") else reason,
                session=session.key, sub=session.sub,
                ip=client.ip if client else None,
                user_agent=client.user_agent if client else None,
                request_id=client.request_id if client else None,
            )
        return removed

    async def require(self, cookie_value: str | None, client: ClientInfo) -> Session:
        session = await self.load(cookie_value, client)
        if session is None:
            raise SessionEnded("no_session")
        return session
