"""Each ID token rule of OpenID Connect Core 3.1.3.7, broken alone, refuses the login."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import pytest
from joserfc.jwk import ECKey, RSAKey

from tests.support.forged_provider import SIGNING_KEY, ForgedProvider, Rig

OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "forged-1"})  # same kid, wrong key
EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(make: Callable[[ForgedProvider, str], str]) -> Callable[[ForgedProvider], None]:
    def apply(provider: ForgedProvider) -> None:
        provider.id_token = lambda nonce: make(provider, nonce)
    return apply


def _none_alg(p: ForgedProvider, nonce: str) -> str:
    header = _b64(json.dumps({"alg": "none", "kid": "forged-1"}).encode())
    return f"{header}.{_b64(json.dumps(p.claims(nonce)).encode())}."


def _hmac_with_public_key(p: ForgedProvider, nonce: str) -> str:
    """The classic key-confusion forgery, built by hand (joserfc rightly refuses to)."""
    header = _b64(json.dumps({"alg": "HS256", "kid": "forged-1"}).encode())
    payload = _b64(json.dumps(p.claims(nonce)).encode())
    secret = SIGNING_KEY.as_pem(private=False)
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(mac)}"


BROKEN = {
    "wrong_issuer": forge(lambda p, n: p.sign(p.claims(n, iss="https://evil.example"))),
    "audience_without_client": forge(lambda p, n: p.sign(p.claims(n, aud="someone-else"))),
    "several_audiences_without_azp": forge(
        lambda p, n: p.sign(p.claims(n, aud=[p.client_id, "other"]))),
    "azp_of_another_client": forge(
        lambda p, n: p.sign(p.claims(n, aud=[p.client_id, "other"], azp="other"))),
    "expired_beyond_skew": forge(
        lambda p, n: p.sign(p.claims(n, exp=int(time.time()) - 120, iat=int(time.time()) - 400))),
    "issued_in_the_future": forge(lambda p, n: p.sign(p.claims(n, iat=int(time.time()) + 600))),
    "missing_iat": forge(lambda p, n: p.sign(p.claims(n, iat=None))),
    "wrong_nonce": forge(lambda p, n: p.sign(p.claims("another-nonce"))),
    "missing_nonce": forge(lambda p, n: p.sign(p.claims(n, nonce=None))),
    "missing_sub": forge(lambda p, n: p.sign(p.claims(n, sub=None))),
    "alg_none": forge(_none_alg),
    "hmac_signed_with_the_public_key": forge(_hmac_with_public_key),
    "signed_by_another_key": forge(lambda p, n: p.sign(p.claims(n), key=OTHER_KEY)),
    "alg_not_advertised": forge(lambda p, n: p.sign(p.claims(n), key=EC_KEY, alg="ES256")),
    "unknown_kid": forge(lambda p, n: p.sign(p.claims(n), key=RSAKey.generate_key(
        2048, parameters={"kid": "nobody-knows"}))),
    "garbage": forge(lambda p, n: "not.a.jwt"),
}


def test_a_well_formed_id_token_logs_in(rig: Rig) -> None:
    forge(lambda p, n: p.sign(p.claims(n)))(rig.provider)
    response = rig.attempt()
    assert response.status_code == 302, response.text
    assert "bff=" in response.headers.get("set-cookie", "")


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_id_token_breaking_one_rule_refuses_login_and_leaves_nothing(rig: Rig, rule: str) -> None:
    if rule == "alg_not_advertised":
        rig.provider.keys = [SIGNING_KEY, EC_KEY]  # key is published, alg is not advertised
    BROKEN[rule](rig.provider)
    response = rig.attempt()
    assert response.status_code == 400, f"{rule}: {response.status_code} {response.text}"
    assert response.json()["error"] == "login_failed"
    assert "set-cookie" not in response.headers or "bff=" not in response.headers["set-cookie"]
    assert rig.session_keys() == []


def test_expired_within_clock_skew_is_accepted(rig: Rig) -> None:
    now = int(time.time())
    forge(lambda p, n: p.sign(p.claims(n, exp=now - 10, iat=now - 300)))(rig.provider)
    assert rig.attempt().status_code == 302


def test_userinfo_for_another_subject_refuses_login(rig: Rig) -> None:
    forge(lambda p, n: p.sign(p.claims(n)))(rig.provider)
    rig.provider.userinfo_sub = "someone-else"
    response = rig.attempt()
    assert response.status_code == 400
    assert rig.session_keys() == []


def test_rotated_signing_key_is_picked_up_without_restart(rig: Rig) -> None:
    forge(lambda p, n: p.sign(p.claims(n)))(rig.provider)
    assert rig.attempt().status_code == 302
    new_key = RSAKey.generate_key(2048, parameters={"kid": "forged-2"})
    rig.provider.keys = [SIGNING_KEY, new_key]
    forge(lambda p, n: p.sign(p.claims(n), key=new_key))(rig.provider)
    assert rig.attempt().status_code == 302
