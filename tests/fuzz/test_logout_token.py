"""The back-channel logout token parser: any body, any token shape, is a 400 in the contract's shape
(or the plain validation error in code), never a 500 and never a logout."""

from __future__ import annotations

import time
from urllib.parse import quote

from hypothesis import example, given
from hypothesis import strategies as st
from joserfc.jwk import KeySet, RSAKey

from bff.errors import TokenValidationError
from bff.oidc.tokens import ALLOWED_ALGS, validate_id_token, validate_logout_token

from .conftest import Fuzzed
from .strategies import check, jwt_like
from .volume import fuzz_settings, tried

KEYS = KeySet([RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})])


@fuzz_settings(2000)
@given(token=jwt_like() | st.text(max_size=300))
@example(token="eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
@example(token="..")
def test_token_validation_raises_only_validation_errors(token: str) -> None:
    tried("logout/ID token parser (pure)")
    for validate in (
        lambda: validate_logout_token(token, keys=KEYS, issuer="https://op", client_id="c",
                                      now=time.time(), leeway=60, allowed_algs=ALLOWED_ALGS),
        lambda: validate_id_token(token, keys=KEYS, issuer="https://op", client_id="c", nonce="n",
                                  now=time.time(), leeway=60, allowed_algs=ALLOWED_ALGS),
    ):
        try:
            validate()
        except TokenValidationError:
            continue
        raise AssertionError(f"accepted a token it cannot have verified: {token!r}")


bodies = st.one_of(
    jwt_like().map(lambda t: b"logout_token=" + quote(t, safe="").encode()),
    st.lists(st.tuples(st.sampled_from(["logout_token", "x", ""]), jwt_like() | st.text(max_size=30)),
             max_size=3).map(lambda pairs: "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()),
    st.binary(max_size=200),
)
content_types = st.sampled_from([b"application/x-www-form-urlencoded",
                                 b"application/x-www-form-urlencoded; charset=utf-8",
                                 b"application/json", b"text/plain", b"", b"multipart/form-data"])


@fuzz_settings(500)
@given(body=bodies, content_type=content_types)
@example(body=b"logout_token=" + b"A" * 20000, content_type=b"application/x-www-form-urlencoded")
@example(body=b"\xff\xfe=\x00", content_type=b"application/x-www-form-urlencoded")
def test_any_backchannel_post_is_refused_in_the_contract_shape(
    fuzzed: Fuzzed, body: bytes, content_type: bytes
) -> None:
    tried("back-channel logout POST")
    headers = [(b"content-type", content_type)] if content_type else []
    answer = fuzzed.driver.request("POST", b"/bff/backchannel-logout", headers=headers, body=body)
    check(fuzzed, answer, {400}, body[:200])
    assert answer.json()["error"] == "invalid_request"
