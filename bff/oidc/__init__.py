"""OpenID Connect relying-party machinery: discovery, keys, token validation, provider calls.

Framework-free: nothing here imports Starlette.
"""

from .client import OidcClient
from .jwks import JwksCache
from .metadata import MetadataCache, ProviderMetadata
from .pkce import new_verifier, random_token, s256_challenge
from .token_response import TokenResponse
from .tokens import (
    ALLOWED_ALGS,
    IdTokenClaims,
    LogoutTokenClaims,
    validate_id_token,
    validate_logout_token,
)

__all__ = [
    "ALLOWED_ALGS",
    "IdTokenClaims",
    "JwksCache",
    "LogoutTokenClaims",
    "MetadataCache",
    "OidcClient",
    "ProviderMetadata",
    "TokenResponse",
    "new_verifier",
    "random_token",
    "s256_challenge",
    "validate_id_token",
    "validate_logout_token",
]
