"""The signed, opaque session cookie and the Set-Cookie headers the gateway sends.

The cookie carries only a random 256-bit session id, signed with itsdangerous
(the first configured secret signs; every secret verifies). A ``v1.`` prefix
versions the format so it can change without misreading old cookies.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Sequence
from http.cookies import SimpleCookie

from itsdangerous import BadSignature, Signer

_PREFIX = "v1."
_ID_BYTES = 32
_ID = re.compile(r"[A-Za-z0-9_-]+")


class _Signer(Signer):
    """itsdangerous' Signer, deriving each secret's key once instead of on every check."""

    _derived: dict[bytes | None, bytes] | None = None

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if self._derived is None:
            self._derived = {}
        cache_key = secret_key.encode() if isinstance(secret_key, str) else secret_key
        key = self._derived.get(cache_key)
        if key is None:
            key = self._derived[cache_key] = super().derive_key(secret_key)
        return key


def new_session_id() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(_ID_BYTES)


def session_key(session_id: str) -> str:
    """The Redis key part and public handle for a session id: a one-way hash of it."""
    digest = hashlib.sha256(b"bff-session:" + session_id.encode()).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


class CookieSigner:
    """Signs and verifies opaque values for one purpose (``salt``)."""

    def __init__(self, secrets_: Sequence[str], salt: str) -> None:
        # itsdangerous signs with the *last* key of a list; ours is "first signs".
        self._signer = _Signer(list(reversed(secrets_)), salt=salt, digest_method=hashlib.sha256)

    def sign(self, value: str) -> str:
        return _PREFIX + self._signer.sign(value.encode()).decode()

    def unsign(self, cookie_value: str | None, *, max_length: int = 512) -> str | None:
        """The value, or None when absent, malformed, oversized or badly signed."""
        if not cookie_value or len(cookie_value) > max_length or not cookie_value.startswith(_PREFIX):
            return None
        try:
            value = self._signer.unsign(cookie_value[len(_PREFIX):].encode()).decode()
        except (BadSignature, UnicodeError, ValueError):
            return None
        if not _ID.fullmatch(value):
            return None
        return value


def read_cookie(cookie_header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a Cookie header, tolerating garbage around it.

    When the same name appears twice (a cookie-tossing attempt from a sibling
    domain), the first one wins, as browsers send the most specific first.
    """
    if not cookie_header:
        return None
    for part in cookie_header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def set_cookie_header(
    name: str, value: str, *, secure: bool, max_age: int | None, path: str = "/",
    http_only: bool = True, same_site: str = "Lax",
) -> str:
    """A Set-Cookie header value. ``max_age=0`` deletes the cookie."""
    morsel = SimpleCookie()
    morsel[name] = value
    item = morsel[name]
    item["path"] = path
    item["samesite"] = same_site
    if http_only:
        item["httponly"] = True
    if secure:
        item["secure"] = True
    if max_age is not None:
        item["max-age"] = max_age
    return item.OutputString()


def delete_cookie_header(name: str, *, secure: bool, path: str = "/") -> str:
    return set_cookie_header(name, "", secure=secure, max_age=0, path=path)
