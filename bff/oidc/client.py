"""The relying party's calls to the provider: authorization URL, code exchange,
refresh, ID/logout token validation, userinfo, revocation and end-session URL.

Token values never appear in logs, messages or ``repr``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from joserfc.jwk import KeySet

from bff.errors import OAuthError, ProviderError, ProviderUnavailable, TokenValidationError

from ._http import (
    DEFAULT_TIMEOUT,
    apply_client_auth,
    choose_auth_method,
    json_object,
    raise_for_oauth_error,
    send,
)
from .jwks import JwksCache
from .metadata import MetadataCache, ProviderMetadata
from .token_response import TokenResponse
from .tokens import (
    ALLOWED_ALGS,
    IdTokenClaims,
    LogoutTokenClaims,
    validate_id_token,
    validate_logout_token,
)

__all__ = ["OidcClient", "TokenResponse"]

T = TypeVar("T")

_RESERVED_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    }
)
_DEFAULT_PROMPTS = frozenset({"login", "consent", "select_account"})


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` appended, keeping a query the endpoint already has."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class OidcClient:
    """One relying party (``client_id``) at one provider."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        metadata: MetadataCache,
        jwks: JwksCache,
        *,
        client_id: str,
        client_secret: str | None,
        redirect_uri: str,
        scopes: Sequence[str],
        clock_skew: int,
        clock: Callable[[], float] = time.time,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._http = http
        self.metadata = metadata
        self.jwks = jwks
        self.client_id = client_id
        self._client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.scopes = tuple(scopes)
        self._clock_skew = clock_skew
        self._clock = clock
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"OidcClient(issuer={self.metadata.issuer!r}, client_id={self.client_id!r})"

    async def authorization_url(
        self, *, state: str, nonce: str, code_challenge: str, extra: Mapping[str, str] = {}
    ) -> str:
        """The authorization request (code flow, PKCE S256); ``extra`` adds e.g. ``login_hint``."""
        meta = await self.metadata.get()
        clash = _RESERVED_PARAMS.intersection(extra)
        if clash:
            raise ValueError(f"extra may not override {sorted(clash)}")
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        for name, value in extra.items():
            if name == "prompt":
                known = meta.prompt_values_supported or _DEFAULT_PROMPTS
                value = " ".join(p for p in value.split() if p in known)
            if value:
                params[name] = value
        return _with_query(meta.authorization_endpoint, params)

    async def exchange_code(self, code: str, code_verifier: str) -> TokenResponse:
        """Redeem an authorization code (RFC 6749 §4.1.3 with PKCE)."""
        tokens = await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": code_verifier,
            }
        )
        if "openid" in self.scopes and tokens.id_token is None:
            raise ProviderError("token response: id_token is missing")
        return tokens

    async def refresh(self, refresh_token: str) -> TokenResponse:
        """Refresh the access token. No ``scope``: re-sending it makes some providers narrow
        or refuse the grant. ``invalid_grant`` raises InvalidGrant (the session is over)."""
        return await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def _token_request(self, form: dict[str, str]) -> TokenResponse:
        meta = await self.metadata.get()
        method = choose_auth_method(self._client_secret, meta.token_endpoint_auth_methods_supported)
        headers = apply_client_auth(method, self.client_id, self._client_secret, form)
        headers["Accept"] = "application/json"
        what = f"token endpoint ({form['grant_type']})"
        try:
            response = await send(
                self._http,
                "POST",
                meta.token_endpoint,
                what=what,
                time_limit=self._timeout,
                data=form,
                headers=headers,
            )
        except ProviderUnavailable:
            self.metadata.note_unreachable()
            raise
        raise_for_oauth_error(response, what)
        return TokenResponse.from_json(json_object(response, what))

    async def _with_keys(self, run: Callable[[KeySet, ProviderMetadata], T]) -> T:
        """Run a validation; on an unknown ``kid`` refetch the keys once (rate-limited), retry."""
        meta = await self.metadata.get()
        try:
            return run(await self.jwks.key_set(), meta)
        except TokenValidationError as exc:
            if exc.reason != "unknown_kid":
                raise
            fresh = await self.jwks.refetch_for_unknown_kid()
            if fresh is None:
                raise
            return run(fresh, meta)

    def _allowed_algs(self, meta: ProviderMetadata) -> frozenset[str]:
        return ALLOWED_ALGS.intersection(meta.id_token_signing_alg_values_supported)

    async def validate_id_token(self, id_token: str, nonce: str) -> IdTokenClaims:
        """Validate an ID token from this client's login whose request carried ``nonce``."""
        return await self._with_keys(
            lambda keys, meta: validate_id_token(
                id_token,
                keys=keys,
                issuer=meta.issuer,
                client_id=self.client_id,
                nonce=nonce,
                now=self._clock(),
                leeway=self._clock_skew,
                allowed_algs=self._allowed_algs(meta),
            )
        )

    async def validate_logout_token(self, logout_token: str) -> LogoutTokenClaims:
        """Validate a back-channel logout token (signed like the ID tokens)."""
        return await self._with_keys(
            lambda keys, meta: validate_logout_token(
                logout_token,
                keys=keys,
                issuer=meta.issuer,
                client_id=self.client_id,
                now=self._clock(),
                leeway=self._clock_skew,
                allowed_algs=self._allowed_algs(meta),
            )
        )

    async def userinfo(self, access_token: str) -> dict[str, Any] | None:
        """The userinfo claims (a JSON object with a string ``sub``); None when the
        provider has no userinfo_endpoint (it is optional in discovery)."""
        meta = await self.metadata.get()
        if meta.userinfo_endpoint is None:
            return None
        what = "userinfo endpoint"
        response = await send(
            self._http,
            "GET",
            meta.userinfo_endpoint,
            what=what,
            time_limit=self._timeout,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        if response.status_code == 401:
            raise OAuthError("invalid_token", "the provider refused the access token")
        if response.status_code != 200:
            raise ProviderError(f"{what}: unexpected HTTP {response.status_code}")
        # A signed (application/jwt) userinfo answer is refused rather than half-supported:
        # bff registers no userinfo_signed_response_alg, so a provider should not send one.
        if response.headers.get("content-type", "").split(";")[0].strip() == "application/jwt":
            raise ProviderError(f"{what}: signed userinfo responses are not supported")
        claims = json_object(response, what)
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise ProviderError(f"{what}: sub is missing")
        return claims

    async def revoke(self, token: str, token_type_hint: str = "refresh_token") -> bool:  # noqa: S107
        """Revoke ``token`` (RFC 7009). False when the provider offers no revocation."""
        meta = await self.metadata.get()
        if meta.revocation_endpoint is None:
            return False
        supported = meta.raw.get("revocation_endpoint_auth_methods_supported")
        if not isinstance(supported, list):
            supported = list(meta.token_endpoint_auth_methods_supported)
        method = choose_auth_method(self._client_secret, supported)
        form = {"token": token, "token_type_hint": token_type_hint}
        headers = apply_client_auth(method, self.client_id, self._client_secret, form)
        what = "revocation endpoint"
        response = await send(
            self._http,
            "POST",
            meta.revocation_endpoint,
            what=what,
            time_limit=self._timeout,
            data=form,
            headers=headers,
        )
        raise_for_oauth_error(response, what)
        return True

    async def end_session_url(
        self,
        *,
        id_token_hint: str | None,
        post_logout_redirect_uri: str,
        state: str | None = None,
    ) -> str | None:
        """RP-Initiated Logout URL, or None when the provider has no end_session_endpoint."""
        meta = await self.metadata.get()
        if meta.end_session_endpoint is None:
            return None
        params = {"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if id_token_hint:
            params["id_token_hint"] = id_token_hint
        if state:
            params["state"] = state
        return _with_query(meta.end_session_endpoint, params)
