"""Keys, token factories and a fake provider shared by the oidc tests."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import respx
from joserfc import jwt
from joserfc.jwk import ECKey, Key, KeySet, OKPKey, RSAKey

ISSUER = "https://op.example.com"
CLIENT_ID = "bff-client"
NONCE = "n-0S6_WzA2Mj"
NOW = 1_700_000_000
LEEWAY = 60
ALGS = frozenset({"RS256", "ES256", "PS256", "Ed25519", "EdDSA"})

RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})
RSA_KEY_2 = RSAKey.generate_key(2048, parameters={"kid": "rsa-2", "use": "sig"})
EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
OKP_KEY = OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"})


def public_set(*keys: Key) -> KeySet:
    return KeySet.import_key_set({"keys": [k.as_dict(private=False) for k in keys]})


def jwks_json(*keys: Key) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


KEYS = public_set(RSA_KEY, EC_KEY, OKP_KEY)


def sign(claims: dict[str, Any], key: Key = RSA_KEY, alg: str = "RS256", **header: Any) -> str:
    hdr = {"alg": alg, "kid": key.kid, **header}
    hdr = {k: v for k, v in hdr.items() if v is not None}
    return jwt.encode(hdr, claims, key, algorithms=[alg])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: Any, claims: Any, signature: bytes = b"sig") -> str:
    """A token with whatever header, payload and signature bytes a test wants."""
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )


def id_claims(**changes: Any) -> dict[str, Any]:
    """Valid ID token claims at NOW; a change to None removes the claim."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": CLIENT_ID,
        "exp": NOW + 300,
        "iat": NOW,
        "nonce": NONCE,
        "sid": "sid-1",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def logout_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": CLIENT_ID,
        "iat": NOW,
        "exp": NOW + 120,
        "jti": "jti-1",
        "sid": "sid-1",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def discovery(issuer: str = ISSUER, **changes: Any) -> dict[str, Any]:
    base = issuer.rstrip("/")
    doc: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/auth",
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/jwks",
        "userinfo_endpoint": f"{base}/userinfo",
        "end_session_endpoint": f"{base}/logout",
        "revocation_endpoint": f"{base}/revoke",
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "code_challenge_methods_supported": ["S256"],
        "backchannel_logout_supported": True,
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def mock_provider(
    router: respx.MockRouter, doc: dict[str, Any] | None = None, keys: tuple[Key, ...] = ()
) -> tuple[respx.Route, respx.Route]:
    """Serve discovery and JWKS for ISSUER on ``router``; returns both routes."""
    doc = doc or discovery()
    disco = router.get(f"{ISSUER}/.well-known/openid-configuration").mock(
        return_value=httpx.Response(200, json=doc)
    )
    jwks = router.get(doc["jwks_uri"]).mock(
        return_value=httpx.Response(200, json=jwks_json(*(keys or (RSA_KEY,))))
    )
    return disco, jwks
