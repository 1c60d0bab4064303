"""A provider double that answers whatever ID token a test forges (for rule-breaking tests).

Only the parts a real provider cannot be made to produce are forged here: the
discovery document, JWKS, token and userinfo endpoints of a tiny Starlette app
served on a real port, so the gateway talks to it exactly as to a real provider.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import Key, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .asgi_server import ServerThread
from .redis_server import RedisServer

SIGNING_KEY = RSAKey.generate_key(2048, parameters={"kid": "forged-1", "use": "sig"})


@dataclass
class ForgedProvider:
    """Settings a test changes between logins."""

    client_id: str = "forged-client"
    issuer: str = ""
    keys: list[Key] = field(default_factory=lambda: [SIGNING_KEY])
    algs: list[str] = field(default_factory=lambda: ["RS256"])
    id_token: Callable[[str], str] | None = None  # nonce -> token
    userinfo_sub: str | None = None
    token_calls: int = 0

    def claims(self, expected_nonce: str, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": "mallory", "aud": self.client_id, "exp": now + 300,
            "iat": now, "nonce": expected_nonce, "email": "mallory@example.test",
        }
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def sign(self, claims: dict[str, Any], key: Key = SIGNING_KEY, alg: str = "RS256",
             **header: Any) -> str:
        return jwt.encode({"alg": alg, "kid": key.kid, **header}, claims, key, algorithms=[alg])

    def app(self) -> Starlette:
        async def discovery(request: Request) -> JSONResponse:
            return JSONResponse({
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "id_token_signing_alg_values_supported": self.algs,
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "code_challenge_methods_supported": ["S256"],
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
            })

        async def jwks(request: Request) -> JSONResponse:
            return JSONResponse({"keys": [k.as_dict(private=False) for k in self.keys]})

        async def token(request: Request) -> JSONResponse:
            self.token_calls += 1
            nonce = request.app.state.last_nonce
            assert self.id_token is not None
            return JSONResponse({
                "access_token": "forged-access-token", "token_type": "Bearer", "expires_in": 300,
                "refresh_token": "forged-refresh-token", "id_token": self.id_token(nonce),
            })

        async def userinfo(request: Request) -> JSONResponse:
            return JSONResponse({"sub": self.userinfo_sub or "mallory"})

        return Starlette(routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/jwks", jwks), Route("/token", token, methods=["POST"]),
            Route("/userinfo", userinfo),
        ])


def serve_forged(provider: ForgedProvider) -> ServerThread:
    app = provider.app()
    app.state.last_nonce = ""
    server = ServerThread(app)
    provider.issuer = server.url
    return server


@dataclass
class Rig:
    provider: ForgedProvider
    gateway: ServerThread
    redis: RedisServer
    provider_app: Any

    def attempt(self, browser: httpx.Client | None = None) -> httpx.Response:
        with contextlib.ExitStack() as stack:
            if browser is None:
                browser = stack.enter_context(httpx.Client(base_url=self.gateway.url))
            start = browser.get("/bff/login")
            assert start.status_code == 302
            query = parse_qs(urlsplit(start.headers["location"]).query)
            self.gateway_nonce(query["nonce"][0])
            return browser.get("/bff/callback", params={"code": "c", "state": query["state"][0]},
                               headers={"Accept": "application/json"})

    def gateway_nonce(self, nonce: str) -> None:
        self.provider_app.state.last_nonce = nonce

    def session_keys(self) -> list[bytes]:
        return [k for k in self.redis.client().keys("*") if b":s" in k or b"idx" in k]
