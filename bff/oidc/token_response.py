"""The token endpoint's successful answer (RFC 6749 §5.1), checked and with tokens hidden."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bff.errors import ProviderError

__all__ = ["TokenResponse"]


@dataclass(frozen=True, repr=False)
class TokenResponse:
    """A successful token endpoint answer (RFC 6749 §5.1)."""

    access_token: str
    token_type: str
    expires_in: int | None
    refresh_token: str | None
    id_token: str | None
    scope: str | None

    def __repr__(self) -> str:
        return (
            f"TokenResponse(token_type={self.token_type!r}, expires_in={self.expires_in!r}, "
            f"scope={self.scope!r}, refresh_token={'***' if self.refresh_token else None}, "
            f"id_token={'***' if self.id_token else None})"
        )

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TokenResponse:
        """Check the shape of a token response; ProviderError when it is unusable."""
        access_token = body.get("access_token")
        token_type = body.get("token_type")
        if not isinstance(access_token, str) or not access_token:
            raise ProviderError("token response: access_token is missing")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise ProviderError("token response: token_type is not Bearer")
        for name in ("refresh_token", "id_token", "scope"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise ProviderError(f"token response: {name} is not a string")
        return cls(
            access_token=access_token,
            token_type="Bearer",
            expires_in=_expires_in(body.get("expires_in")),
            refresh_token=body.get("refresh_token") or None,
            id_token=body.get("id_token") or None,
            scope=body.get("scope"),
        )


def _expires_in(value: object) -> int | None:
    # Some providers send the number as a string ("3600"); both mean the same.
    if value is None:
        return None
    if isinstance(value, str) and value.isdecimal():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ProviderError("token response: expires_in is not a non-negative integer")
