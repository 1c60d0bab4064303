"""PKCE (RFC 7636) verifier and S256 challenge, and random URL-safe tokens."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

__all__ = ["new_verifier", "random_token", "s256_challenge"]

# RFC 7636 §4.1: code_verifier = 43*128unreserved
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def random_token(nbytes: int = 32) -> str:
    """Return ``nbytes`` of cryptographic randomness, base64url without padding."""
    return secrets.token_urlsafe(nbytes)


def new_verifier() -> str:
    """Return a fresh code verifier: 32 random bytes, base64url (43 characters)."""
    return random_token(32)


def s256_challenge(verifier: str) -> str:
    """Return ``BASE64URL(SHA256(ASCII(verifier)))`` without padding.

    Raises ``ValueError`` for a verifier RFC 7636 does not allow, so a bug
    cannot silently produce a challenge the provider will reject later.
    """
    if not _VERIFIER.fullmatch(verifier):
        raise ValueError("code verifier must be 43-128 characters of [A-Za-z0-9-._~]")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
