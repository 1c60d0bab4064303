"""Validation of ID tokens (OIDC Core §3.1.3.7) and logout tokens (Back-Channel Logout §2.6).

Pure functions: keys, expected values, ``now`` and ``leeway`` are all passed
in. Two steps, as the specs order them: the signature with an algorithm from
an explicit allow-list (``_jws``), then the claims. Every failure is a
``TokenValidationError`` whose ``reason`` says which rule broke.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from joserfc.jwk import KeySet

from bff.errors import TokenValidationError

from ._claims import audiences, optional_str, optional_time, required_str, required_time
from ._jws import verify

__all__ = [
    "ALLOWED_ALGS",
    "BACKCHANNEL_LOGOUT_EVENT",
    "IdTokenClaims",
    "LogoutTokenClaims",
    "validate_id_token",
    "validate_logout_token",
]

#: Asymmetric algorithms only: never ``none``, never HMAC (whose "secret" an
#: attacker could take to be the provider's public key).
ALLOWED_ALGS: frozenset[str] = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
        "Ed25519",
    }
)

BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
_LOGOUT_TYPS = {"logout+jwt", "application/logout+jwt", "jwt", "application/jwt"}


@dataclass(frozen=True)
class IdTokenClaims:
    """A validated ID token: the claims bff relies on, and all of them in ``claims``."""

    sub: str
    sid: str | None
    exp: int
    iat: int
    claims: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class LogoutTokenClaims:
    """A validated logout token; at least one of ``sub`` and ``sid`` is set."""

    sub: str | None
    sid: str | None
    jti: str
    iat: int
    exp: int | None


def _check_issuer_and_audience(claims: dict[str, Any], issuer: str, client_id: str) -> None:
    if required_str(claims, "iss") != issuer:
        raise TokenValidationError("wrong_issuer", "iss is not the configured issuer")
    aud = audiences(claims)
    if client_id not in aud:
        raise TokenValidationError("wrong_audience", "aud does not contain the client id")
    azp = optional_str(claims, "azp")
    if len(aud) > 1 and azp is None:
        raise TokenValidationError("azp_mismatch", "several audiences but no azp")
    if azp is not None and azp != client_id:
        raise TokenValidationError("azp_mismatch", "azp is not the client id")


def _check_times(claims: dict[str, Any], now: float, leeway: int, exp_required: bool) -> None:
    exp = required_time(claims, "exp") if exp_required else optional_time(claims, "exp")
    iat = required_time(claims, "iat")
    nbf = optional_time(claims, "nbf")
    # Messages give the offsets: they are how an operator spots clocks that drifted apart.
    if exp is not None and exp <= now - leeway:
        raise TokenValidationError(
            "expired", f"the token expired {now - exp:.0f}s ago (tolerance {leeway}s)")
    if iat > now + leeway:
        raise TokenValidationError(
            "issued_in_future", f"iat is {iat - now:.0f}s in the future (tolerance {leeway}s)")
    if nbf is not None and nbf > now + leeway:
        raise TokenValidationError(
            "not_yet_valid", f"nbf is {nbf - now:.0f}s in the future (tolerance {leeway}s)")


def _check_age(iat: int, now: float, leeway: int, max_age: int | None) -> None:
    if max_age is not None and iat < now - max_age - leeway:
        raise TokenValidationError("too_old", f"issued more than {max_age}s ago")


def validate_id_token(
    token: str,
    *,
    keys: KeySet,
    issuer: str,
    client_id: str,
    nonce: str,
    now: float,
    leeway: int,
    allowed_algs: Collection[str],
    max_iat_age: int | None = None,
) -> IdTokenClaims:
    """Validate an ID token from the token endpoint; ``allowed_algs`` should be
    ``ALLOWED_ALGS`` ∩ the provider's ``id_token_signing_alg_values_supported``.

    ``max_iat_age`` optionally refuses tokens issued longer ago than that; the
    nonce already binds the token to this login, so it is off by default.
    """
    claims = verify(token, keys, ALLOWED_ALGS.intersection(allowed_algs)).claims
    _check_issuer_and_audience(claims, issuer, client_id)
    _check_times(claims, now, leeway, exp_required=True)
    token_nonce = optional_str(claims, "nonce")
    if token_nonce is None or not hmac.compare_digest(token_nonce.encode(), nonce.encode()):
        raise TokenValidationError("nonce_mismatch", "nonce does not match this login")
    sub = required_str(claims, "sub")
    iat = required_time(claims, "iat")
    _check_age(iat, now, leeway, max_iat_age)
    return IdTokenClaims(
        sub=sub,
        sid=optional_str(claims, "sid"),
        exp=required_time(claims, "exp"),
        iat=iat,
        claims=claims,
    )


def validate_logout_token(
    token: str,
    *,
    keys: KeySet,
    issuer: str,
    client_id: str,
    now: float,
    leeway: int,
    allowed_algs: Collection[str],
    max_age: int = 300,
) -> LogoutTokenClaims:
    """Validate a back-channel logout token. Replay (``jti`` seen before) is the caller's check."""
    verified = verify(token, keys, ALLOWED_ALGS.intersection(allowed_algs))
    typ = verified.header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in _LOGOUT_TYPS):
        raise TokenValidationError("bad_typ", "typ header is not logout+jwt")
    claims = verified.claims
    _check_issuer_and_audience(claims, issuer, client_id)
    _check_times(claims, now, leeway, exp_required=False)
    iat = required_time(claims, "iat")
    _check_age(iat, now, leeway, max_age)
    jti = required_str(claims, "jti")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_LOGOUT_EVENT), dict):
        raise TokenValidationError("bad_events", "events lacks the back-channel logout event")
    if "nonce" in claims:
        # §2.4: forbidden, so an ID token can never be replayed as a logout token
        raise TokenValidationError("has_nonce", "a logout token must not contain a nonce")
    sub = optional_str(claims, "sub")
    sid = optional_str(claims, "sid")
    if not sub and not sid:
        raise TokenValidationError("missing_claim", "neither sub nor sid is present")
    return LogoutTokenClaims(
        sub=sub or None, sid=sid or None, jti=jti, iat=iat, exp=optional_time(claims, "exp")
    )
