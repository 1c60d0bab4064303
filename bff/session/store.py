"""The SessionStore protocol: what the web layer needs from session storage.

The Redis implementation (``bff.session.redis``) is the only one; the protocol
keeps the web layer honest about what it uses and lets tests name the contract.
Every method raises ``StoreUnavailable`` when storage cannot be reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from bff.session.model import LoginTransaction, Session


@dataclass(frozen=True)
class NewSession:
    """Everything needed to create a session, tokens still in plaintext."""

    sub: str
    claims: Mapping[str, object]
    provider_sid: str | None
    ip: str
    user_agent: str
    access_token: str
    access_expires_at: float
    refresh_token: str | None
    id_token: str | None


class SessionStore(Protocol):
    async def create(
        self, key: str, new: NewSession, encrypted: Mapping[str, bytes], *, now: float
    ) -> Session: ...

    async def get(self, key: str) -> Session | None: ...

    async def touch(self, session: Session, *, now: float) -> bool: ...

    async def delete(self, session: Session) -> bool: ...

    async def list_for_user(self, sub: str) -> list[Session]: ...

    async def keys_for_provider_sid(self, provider_sid: str) -> list[str]: ...

    async def put_login(self, tx: LoginTransaction, ttl: int) -> None: ...

    async def pop_login(self, state: str) -> LoginTransaction | None: ...

    async def remember_jti(self, jti: str, ttl: int) -> bool: ...

    async def hit_rate_limit(self, bucket: str, limit: int, window: int) -> int | None: ...

    async def ping(self) -> bool: ...
