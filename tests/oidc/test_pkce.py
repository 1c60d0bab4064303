"""PKCE verifier and challenge (RFC 7636)."""

from __future__ import annotations

import re

import pytest

from bff.oidc.pkce import new_verifier, random_token, s256_challenge


def test_verifier_is_43_unreserved_characters_and_fresh_each_time():
    verifiers = {new_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", v) for v in verifiers)


def test_s256_challenge_matches_the_rfc_7636_appendix_b_example():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize("verifier", ["short", "x" * 129, "é" * 43, "a b" * 20])
def test_s256_challenge_refuses_verifiers_the_rfc_forbids(verifier: str):
    with pytest.raises(ValueError):
        s256_challenge(verifier)


def test_random_token_has_the_requested_entropy():
    assert len(random_token()) == 43
    assert len(random_token(16)) == 22
