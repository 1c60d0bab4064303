"""Typed access to JWT claims: a wrong type is ``malformed``, an absent one ``missing_claim``."""

from __future__ import annotations

import math
from typing import Any

from bff.errors import TokenValidationError


def optional_str(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise TokenValidationError("malformed", f"claim {name!r} is not a string")
    return value


def required_str(claims: dict[str, Any], name: str) -> str:
    value = optional_str(claims, name)
    if not value:
        raise TokenValidationError("missing_claim", f"claim {name!r} is missing or empty")
    return value


def optional_time(claims: dict[str, Any], name: str) -> int | None:
    """A NumericDate as whole seconds; booleans, NaN and infinities are refused."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenValidationError("malformed", f"claim {name!r} is not a NumericDate")
    if isinstance(value, float) and not math.isfinite(value):
        raise TokenValidationError("malformed", f"claim {name!r} is not a NumericDate")
    if abs(value) > 2**53:
        raise TokenValidationError("malformed", f"claim {name!r} is out of range")
    return int(value)


def required_time(claims: dict[str, Any], name: str) -> int:
    value = optional_time(claims, name)
    if value is None:
        raise TokenValidationError("missing_claim", f"claim {name!r} is missing")
    return value


def audiences(claims: dict[str, Any]) -> list[str]:
    """``aud`` as a list: a single string or an array of strings (RFC 7519 §4.1.3)."""
    value = claims.get("aud")
    if value is None:
        raise TokenValidationError("missing_claim", "claim 'aud' is missing")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise TokenValidationError("malformed", "claim 'aud' is not a string or a list of strings")
