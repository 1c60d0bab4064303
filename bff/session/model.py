"""What flows between the session modules: plain frozen data, versioned encoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1


@dataclass(frozen=True)
class TokenSet:
    """The provider's tokens for one session. ``repr`` never shows a token."""

    access_token: str = field(repr=False)
    access_expires_at: float
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Session:
    """One live login.

    ``key`` is the hash of the cookie's session id: the Redis key, and also the
    opaque handle shown in ``/bff/sessions`` (it cannot be turned back into the
    cookie). ``provider_sid`` is the ID token's ``sid`` for back-channel logout.
    """

    key: str
    sub: str
    claims: dict[str, Any]
    created_at: float
    expires_at: float
    last_seen: float
    ip: str
    user_agent: str
    provider_sid: str | None
    access_expires_at: float
    token_version: int
    has_refresh_token: bool
    encrypted: dict[str, bytes] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class LoginTransaction:
    """A login in flight, kept server-side until its callback (single use)."""

    state: str
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    return_to: str
    browser: str = field(repr=False)
    created_at: float
