"""Logout token validation (Back-Channel Logout 1.0 §2.6), one broken rule per test."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc.jwk import RSAKey

from bff.errors import TokenValidationError
from bff.oidc.tokens import validate_logout_token

from .helpers import ALGS, CLIENT_ID, ISSUER, KEYS, LEEWAY, NOW, RSA_KEY_2, logout_claims, sign


def check(token: str, **kwargs: Any):
    args: dict[str, Any] = dict(
        keys=KEYS, issuer=ISSUER, client_id=CLIENT_ID, now=NOW, leeway=LEEWAY, allowed_algs=ALGS
    )
    args.update(kwargs)
    return validate_logout_token(token, **args)


def reason(token: str, **kwargs: Any) -> str:
    with pytest.raises(TokenValidationError) as info:
        check(token, **kwargs)
    return info.value.reason


def test_a_valid_logout_token_yields_sub_sid_and_jti():
    claims = check(sign(logout_claims(), typ="logout+jwt"))
    assert (claims.sub, claims.sid, claims.jti, claims.iat, claims.exp) == (
        "user-1",
        "sid-1",
        "jti-1",
        NOW,
        NOW + 120,
    )


def test_sid_alone_is_enough():
    claims = check(sign(logout_claims(sub=None)))
    assert (claims.sub, claims.sid) == (None, "sid-1")


def test_sub_alone_is_enough():
    claims = check(sign(logout_claims(sid=None)))
    assert (claims.sub, claims.sid) == ("user-1", None)


def test_exp_is_optional():
    assert check(sign(logout_claims(exp=None))).exp is None


def test_typ_application_logout_jwt_is_accepted():
    assert check(sign(logout_claims(), typ="application/logout+jwt")).jti == "jti-1"


def test_bad_signature_is_rejected():
    forged = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    assert reason(sign(logout_claims(), forged)) == "bad_signature"


def test_unknown_kid_is_reported_distinctly():
    assert reason(sign(logout_claims(), RSA_KEY_2)) == "unknown_kid"


def test_wrong_issuer_is_rejected():
    assert reason(sign(logout_claims(iss="https://evil.example.com"))) == "wrong_issuer"


def test_wrong_audience_is_rejected():
    assert reason(sign(logout_claims(aud="another-client"))) == "wrong_audience"


def test_a_nonce_is_rejected():
    assert reason(sign(logout_claims(nonce="n"))) == "has_nonce"


def test_an_id_token_is_not_a_logout_token():
    id_token_like = logout_claims(events=None, jti=None, nonce="n")
    assert reason(sign(id_token_like)) in {"bad_events", "missing_claim", "has_nonce"}


def test_missing_events_is_rejected():
    assert reason(sign(logout_claims(events=None))) == "bad_events"


@pytest.mark.parametrize(
    "events",
    [
        ["http://schemas.openid.net/event/backchannel-logout"],
        "http://schemas.openid.net/event/backchannel-logout",
        {"http://schemas.openid.net/event/backchannel-logout": "yes"},
        {"http://schemas.openid.net/event/other": {}},
    ],
    ids=["list", "string", "member-not-object", "other-event"],
)
def test_events_of_the_wrong_shape_are_rejected(events: Any):
    assert reason(sign(logout_claims(events=events))) == "bad_events"


def test_neither_sub_nor_sid_is_rejected():
    assert reason(sign(logout_claims(sub=None, sid=None))) == "missing_claim"


def test_missing_jti_is_rejected():
    assert reason(sign(logout_claims(jti=None))) == "missing_claim"


def test_missing_iat_is_rejected():
    assert reason(sign(logout_claims(iat=None))) == "missing_claim"


def test_expired_token_is_rejected():
    assert reason(sign(logout_claims(iat=NOW - 200, exp=NOW - LEEWAY - 1))) == "expired"


def test_iat_older_than_max_age_is_rejected():
    assert reason(sign(logout_claims(iat=NOW - 300 - LEEWAY - 1, exp=None))) == "too_old"


def test_iat_in_the_future_is_rejected():
    assert reason(sign(logout_claims(iat=NOW + LEEWAY + 1))) == "issued_in_future"


def test_typ_of_another_kind_of_jwt_is_rejected():
    assert reason(sign(logout_claims(), typ="at+jwt")) == "bad_typ"
