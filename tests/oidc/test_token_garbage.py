"""Garbage in: only TokenValidationError out, whatever the shape of the input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bff.errors import TokenValidationError
from bff.oidc.tokens import validate_id_token, validate_logout_token

from .helpers import (
    ALGS,
    CLIENT_ID,
    EC_KEY,
    ISSUER,
    KEYS,
    LEEWAY,
    NONCE,
    NOW,
    b64,
    compact,
    id_claims,
    sign,
)

SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
claim_names = st.sampled_from(
    ["iss", "sub", "aud", "azp", "exp", "iat", "nbf", "nonce", "sid", "jti", "events"]
)


def both(token: Any) -> None:
    """Run both validators; each must either pass or raise TokenValidationError."""
    common: dict[str, Any] = dict(
        keys=KEYS, issuer=ISSUER, client_id=CLIENT_ID, now=NOW, leeway=LEEWAY, allowed_algs=ALGS
    )
    for run in (
        lambda: validate_id_token(token, nonce=NONCE, **common),
        lambda: validate_logout_token(token, **common),
    ):
        try:
            run()
        except TokenValidationError:
            pass


def malformed(token: str) -> None:
    with pytest.raises(TokenValidationError) as info:
        validate_id_token(
            token,
            keys=KEYS,
            issuer=ISSUER,
            client_id=CLIENT_ID,
            nonce=NONCE,
            now=NOW,
            leeway=LEEWAY,
            allowed_algs=ALGS,
        )
    assert info.value.reason == "malformed"


@SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_token_validation_errors(text: str):
    both(text)


@SETTINGS
@given(st.lists(st.binary(max_size=60), min_size=3, max_size=3))
def test_three_arbitrary_base64_segments_raise_only_token_validation_errors(parts: list[bytes]):
    both(".".join(b64(p) for p in parts))


@SETTINGS
@given(json_values, json_values)
def test_arbitrary_json_header_and_payload_raise_only_token_validation_errors(header, payload):
    both(".".join([b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), "c2ln"]))


@SETTINGS
@given(st.dictionaries(claim_names, json_values, max_size=8))
def test_validly_signed_tokens_with_arbitrary_claims_raise_only_token_validation_errors(changes):
    both(sign(id_claims(**changes), EC_KEY, "ES256"))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",
        "!!!.???.***",
        "eyJhbGciOiJSUzI1NiJ9.e30",
        "€.€.€",
        compact({"alg": "RS256", "kid": "rsa-1"}, [1, 2]),
        compact({"alg": "RS256", "kid": "rsa-1"}, "a string"),
        compact(["not", "an", "object"], {}),
        compact({"alg": 256}, {}),
        compact({"alg": "RS256", "kid": 7}, {}),
        "x" * (16 * 1024 + 1),
    ],
    ids=lambda t: t[:24] or "empty",
)
def test_tokens_of_the_wrong_shape_are_malformed(token: str):
    malformed(token)


def test_json_constants_nan_and_infinity_are_malformed():
    header = b64(b'{"alg":"RS256","kid":"rsa-1"}')
    payload = b64(b'{"exp": NaN}')
    malformed(f"{header}.{payload}.c2ln")


def test_deeply_nested_json_is_malformed_not_a_recursion_error():
    header = b64(b'{"alg":"RS256","kid":"rsa-1"}')
    payload = b64(b"[" * 5000)
    malformed(f"{header}.{payload}.c2ln")


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": 5},
        {"aud": [CLIENT_ID, 5]},
        {"exp": "x"},
        {"exp": True},
        {"iat": "yesterday"},
        {"nbf": [1]},
        {"sub": 12345},
        {"sid": {"a": 1}},
        {"iss": ["https://op.example.com"]},
        {"azp": 1},
        {"exp": 1e300},
    ],
    ids=lambda c: ",".join(f"{k}={v!r}" for k, v in c.items()),
)
def test_claims_of_the_wrong_type_are_malformed(changes: dict[str, Any]):
    malformed(sign(id_claims(**changes), EC_KEY, "ES256"))
