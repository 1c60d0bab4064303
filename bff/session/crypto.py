"""Encryption of tokens at rest (AES-256-GCM) with keys derived from the session secrets.

The first secret encrypts; every secret decrypts, so secrets can be rotated
without ending sessions. Each ciphertext is bound to its session and field via
the associated data, so a blob cannot be moved to another session.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_INFO = b"bff token encryption v1"


class DecryptionError(Exception):
    """A blob could not be decrypted with any configured secret."""


def derive_key(secret: str, info: bytes = _INFO) -> bytes:
    """A 256-bit key from a configured secret (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"bff", info=info).derive(
        secret.encode()
    )


class TokenCipher:
    """Encrypts and decrypts short strings bound to a context (session key + field)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one secret is needed")
        self._keys: dict[bytes, AESGCM] = {}
        self._current = b""
        for secret in secrets:
            key = derive_key(secret)
            key_id = hashlib.sha256(key).digest()[:4]
            self._keys.setdefault(key_id, AESGCM(key))
            if not self._current:
                self._current = key_id

    def encrypt(self, plaintext: str, context: bytes) -> bytes:
        nonce = os.urandom(12)
        sealed = self._keys[self._current].encrypt(nonce, plaintext.encode(), context)
        return _VERSION + self._current + nonce + sealed

    def decrypt(self, blob: bytes, context: bytes) -> str:
        if len(blob) < 1 + 4 + 12 + 16 or blob[:1] != _VERSION:
            raise DecryptionError("unknown token blob format")
        aead = self._keys.get(blob[1:5])
        if aead is None:
            raise DecryptionError("token blob was sealed with a secret no longer configured")
        try:
            return aead.decrypt(blob[5:17], blob[17:], context).decode()
        except (InvalidTag, UnicodeDecodeError) as exc:
            raise DecryptionError("token blob failed authentication") from exc
