"""ID token validation, one broken rule per test (OIDC Core 1.0 §3.1.3.7)."""

from __future__ import annotations

import hashlib
import hmac
import json
import warnings
from typing import Any

import pytest
from joserfc.errors import SecurityWarning
from joserfc.jwk import RSAKey
from joserfc.jws import JWSRegistry, serialize_compact

from bff.errors import TokenValidationError
from bff.oidc.tokens import ALLOWED_ALGS, validate_id_token

from .helpers import (
    ALGS,
    CLIENT_ID,
    EC_KEY,
    ISSUER,
    KEYS,
    LEEWAY,
    NONCE,
    NOW,
    OKP_KEY,
    RSA_KEY,
    RSA_KEY_2,
    b64,
    compact,
    id_claims,
    public_set,
    sign,
)


def check(token: str, **kwargs: Any):
    args: dict[str, Any] = dict(
        keys=KEYS,
        issuer=ISSUER,
        client_id=CLIENT_ID,
        nonce=NONCE,
        now=NOW,
        leeway=LEEWAY,
        allowed_algs=ALGS,
    )
    args.update(kwargs)
    return validate_id_token(token, **args)


def reason(token: str, **kwargs: Any) -> str:
    with pytest.raises(TokenValidationError) as info:
        check(token, **kwargs)
    return info.value.reason


def test_a_valid_rs256_token_yields_its_claims():
    claims = check(sign(id_claims(email="a@example.com")))
    assert (claims.sub, claims.sid, claims.exp, claims.iat) == ("user-1", "sid-1", NOW + 300, NOW)
    assert claims.claims["email"] == "a@example.com"


def test_a_valid_es256_token_is_accepted():
    assert check(sign(id_claims(), EC_KEY, "ES256")).sub == "user-1"


def test_a_ps256_token_is_accepted():
    assert check(sign(id_claims(), RSA_KEY, "PS256")).sub == "user-1"


def test_an_ed25519_token_is_accepted():
    assert check(sign(id_claims(), OKP_KEY, "Ed25519")).sub == "user-1"


def test_an_eddsa_token_is_accepted_without_leaking_joserfcs_deprecation_warning():
    with pytest.warns(SecurityWarning):  # joserfc warns when *signing* with "EdDSA"
        token = sign(id_claims(), OKP_KEY, "EdDSA")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check(token).sub == "user-1"


def test_sid_is_optional():
    assert check(sign(id_claims(sid=None))).sid is None


def test_wrong_issuer_is_rejected():
    assert reason(sign(id_claims(iss="https://evil.example.com"))) == "wrong_issuer"


def test_issuer_with_extra_trailing_slash_is_rejected():
    assert reason(sign(id_claims(iss=ISSUER + "/"))) == "wrong_issuer"


def test_missing_issuer_is_rejected():
    assert reason(sign(id_claims(iss=None))) == "missing_claim"


def test_audience_without_the_client_is_rejected():
    assert reason(sign(id_claims(aud="someone-else"))) == "wrong_audience"


def test_audience_list_containing_the_client_with_azp_is_accepted():
    assert check(sign(id_claims(aud=["other", CLIENT_ID], azp=CLIENT_ID))).sub == "user-1"


def test_audience_list_of_only_the_client_needs_no_azp():
    assert check(sign(id_claims(aud=[CLIENT_ID]))).sub == "user-1"


def test_several_audiences_without_azp_are_rejected():
    assert reason(sign(id_claims(aud=[CLIENT_ID, "other"]))) == "azp_mismatch"


def test_azp_naming_another_client_is_rejected():
    assert reason(sign(id_claims(aud=[CLIENT_ID, "other"], azp="other"))) == "azp_mismatch"


def test_azp_naming_another_client_is_rejected_even_with_one_audience():
    assert reason(sign(id_claims(azp="other"))) == "azp_mismatch"


def test_token_expired_beyond_the_leeway_is_rejected():
    assert reason(sign(id_claims(exp=NOW - LEEWAY))) == "expired"


def test_token_expired_within_the_leeway_is_accepted():
    assert check(sign(id_claims(exp=NOW - LEEWAY + 1))).exp == NOW - LEEWAY + 1


def test_missing_exp_is_rejected():
    assert reason(sign(id_claims(exp=None))) == "missing_claim"


def test_iat_in_the_future_beyond_the_leeway_is_rejected():
    assert reason(sign(id_claims(iat=NOW + LEEWAY + 1))) == "issued_in_future"


def test_iat_in_the_future_within_the_leeway_is_accepted():
    assert check(sign(id_claims(iat=NOW + LEEWAY))).iat == NOW + LEEWAY


def test_missing_iat_is_rejected():
    assert reason(sign(id_claims(iat=None))) == "missing_claim"


def test_nbf_in_the_future_is_rejected():
    assert reason(sign(id_claims(nbf=NOW + LEEWAY + 5))) == "not_yet_valid"


def test_nbf_in_the_past_is_accepted():
    assert check(sign(id_claims(nbf=NOW - 5))).sub == "user-1"


def test_iat_older_than_max_iat_age_is_rejected_when_asked():
    token = sign(id_claims(iat=NOW - 1000))
    assert check(token).iat == NOW - 1000
    assert reason(token, max_iat_age=600) == "too_old"


def test_nonce_mismatch_is_rejected():
    assert reason(sign(id_claims(nonce="another-login"))) == "nonce_mismatch"


def test_missing_nonce_is_rejected():
    assert reason(sign(id_claims(nonce=None))) == "nonce_mismatch"


def test_non_ascii_nonce_is_compared_without_crashing():
    assert reason(sign(id_claims(nonce="nönce"))) == "nonce_mismatch"


def test_missing_sub_is_rejected():
    assert reason(sign(id_claims(sub=None))) == "missing_claim"


def test_empty_sub_is_rejected():
    assert reason(sign(id_claims(sub=""))) == "missing_claim"


def test_signature_by_a_key_not_in_the_set_is_rejected():
    forged = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    assert reason(sign(id_claims(), forged)) == "bad_signature"


def test_tampered_payload_is_rejected():
    header, _, signature = sign(id_claims()).split(".")
    payload = b64(json.dumps(id_claims(sub="admin")).encode())
    assert reason(f"{header}.{payload}.{signature}") == "bad_signature"


def test_alg_none_is_rejected():
    token = compact({"alg": "none"}, id_claims(), b"")
    assert reason(token) == "alg_not_allowed"


def test_alg_none_is_rejected_even_if_the_caller_allows_it():
    token = compact({"alg": "none"}, id_claims(), b"")
    assert reason(token, allowed_algs={"none", "RS256"}) == "alg_not_allowed"


@pytest.mark.parametrize("secret_form", ["pem", "jwk"])
def test_hs256_signed_with_the_public_key_as_secret_is_rejected(secret_form: str):
    if secret_form == "pem":
        secret = RSA_KEY.as_pem(private=False)
    else:
        secret = json.dumps(RSA_KEY.as_dict(private=False)).encode()
    header = b64(json.dumps({"alg": "HS256", "kid": RSA_KEY.kid}).encode())
    payload = b64(json.dumps(id_claims()).encode())
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{b64(mac)}"
    assert reason(token) == "alg_not_allowed"
    assert reason(token, allowed_algs={"HS256"}) == "alg_not_allowed"


def test_alg_the_provider_does_not_advertise_is_rejected():
    token = sign(id_claims(), EC_KEY, "ES256")
    assert reason(token, allowed_algs={"RS256"}) == "alg_not_allowed"


def test_unknown_kid_is_reported_distinctly():
    assert reason(sign(id_claims(), RSA_KEY_2)) == "unknown_kid"


def test_token_without_kid_verifies_against_the_matching_key_type():
    token = sign(id_claims(), RSA_KEY, kid=None)
    assert check(token, keys=public_set(RSA_KEY, EC_KEY)).sub == "user-1"


def test_token_without_kid_tries_each_key_of_its_type():
    token = sign(id_claims(), RSA_KEY_2, kid=None)
    assert check(token, keys=public_set(RSA_KEY, RSA_KEY_2)).sub == "user-1"


def test_kid_of_a_key_with_another_type_counts_as_unknown():
    token = sign(id_claims(), RSA_KEY, kid=EC_KEY.kid)
    assert reason(token) == "unknown_kid"


def test_allowed_algs_never_include_none_or_hmac():
    assert "none" not in ALLOWED_ALGS
    assert not {a for a in ALLOWED_ALGS if a.startswith("HS")}


def test_unregistered_header_parameters_are_tolerated():
    registry = JWSRegistry(algorithms=["RS256"], strict_check_header=False)
    header = {"alg": "RS256", "kid": "rsa-1", "x-vendor": "1"}
    token = serialize_compact(header, json.dumps(id_claims()), RSA_KEY, registry=registry)
    assert check(token).sub == "user-1"


@pytest.mark.parametrize(
    "extra", [{"crit": ["exp"], "exp": 1}, {"b64": False, "crit": ["b64"]}], ids=["crit", "b64"]
)
def test_critical_header_extensions_are_refused(extra: dict[str, Any]):
    header = b64(json.dumps({"alg": "RS256", "kid": "rsa-1", **extra}).encode())
    _, payload, signature = sign(id_claims()).split(".")
    assert reason(f"{header}.{payload}.{signature}") == "malformed"
