"""The one exception tree of bff.

    BffError
    ├── ConfigError                 invalid configuration (all problems at once)
    ├── StoreUnavailable            Redis cannot be reached            -> 503
    ├── SessionEnded                the session is over (expiry, binding, refresh rejected) -> 401
    ├── ProviderError               the OpenID Provider misbehaved
    │   ├── ProviderUnavailable     unreachable, timeout or 5xx        -> 503
    │   ├── OAuthError              an RFC 6749 error answer (``error`` code)
    │   │   └── InvalidGrant        refresh/code rejected: session ends -> 401
    │   └── TokenValidationError    an ID or logout token broke a rule
    ├── LoginError                  the browser's callback cannot complete -> 400
    └── UpstreamError               the proxied service failed          -> 502
        └── UpstreamTimeout         ... or was too slow                 -> 504

Code branches on these types, never on message text. Messages are written for
the log and for operators; they never contain tokens or cookie values.
"""

from __future__ import annotations


class BffError(Exception):
    """Base of every error bff raises on purpose."""


class ConfigError(BffError):
    """Configuration is invalid; ``problems`` holds one readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class StoreUnavailable(BffError):
    """The session store cannot be reached right now."""


class SessionEnded(BffError):
    """The session is over; ``reason`` is a short code for the audit log."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ProviderError(BffError):
    """The OpenID Provider answered something bff cannot use."""


class ProviderUnavailable(ProviderError):
    """The provider is unreachable, timed out, or answered 5xx."""


class OAuthError(ProviderError):
    """An OAuth 2.0 error response; ``error`` is the protocol's code."""

    def __init__(self, error: str, description: str = "") -> None:
        self.error = error
        self.description = description
        super().__init__(f"{error}: {description}" if description else error)


class InvalidGrant(OAuthError):
    """The grant (code or refresh token) is no longer valid."""

    def __init__(self, description: str = "") -> None:
        super().__init__("invalid_grant", description)


class TokenValidationError(ProviderError):
    """A JWT from the provider failed validation; ``reason`` is a short code."""

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(message or reason)


class LoginError(BffError):
    """A login callback cannot be completed; ``reason`` is a short code for logs and metrics."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        self.reason = reason
        self.status = status
        super().__init__(message)


class UpstreamError(BffError):
    """The upstream service is unreachable or broke the response."""


class UpstreamTimeout(UpstreamError):
    """The upstream service did not answer in time."""
