"""Step one of JWT validation: parse a compact JWS and verify its signature.

Everything about the token's shape is checked here by hand, before any
library code runs, so that garbage of any kind ends as
``TokenValidationError("malformed")`` and never as some other exception.
The algorithm comes from an explicit allow-list and the key is chosen by
``kid`` from the provider's key set; an unknown ``kid`` is reported as such so
the caller can refetch the key set once.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key, KeySet
from joserfc.jws import JWSRegistry, deserialize_compact

from bff.errors import TokenValidationError

MAX_TOKEN_LENGTH = 16 * 1024

_B64URL = re.compile(rb"[A-Za-z0-9_-]*")

# Which key type each asymmetric algorithm needs; HMAC and "none" are absent on purpose.
_KEY_TYPES = {
    **dict.fromkeys(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"), "RSA"),
    **dict.fromkeys(("ES256", "ES384", "ES512"), "EC"),
    **dict.fromkeys(("EdDSA", "Ed25519"), "OKP"),
}


@dataclass(frozen=True)
class VerifiedJws:
    header: dict[str, Any]
    claims: dict[str, Any]


class _Registry(JWSRegistry):
    """A JWSRegistry that takes the allow-list as given.

    joserfc emits a SecurityWarning each time "EdDSA" is used (RFC 9864
    deprecates the polymorphic name in favour of "Ed25519"); providers still
    sign with it, and the allow-list is already ours, so no warning is needed.
    Unknown header parameters are tolerated (``verify`` refuses ``crit``), and
    the size limits are ours (a 16 KiB token), not joserfc's 512-byte header.
    """

    max_header_length = MAX_TOKEN_LENGTH
    max_payload_length = MAX_TOKEN_LENGTH
    max_signature_length = MAX_TOKEN_LENGTH

    def get_alg(self, name: str) -> JWSAlgModel:
        if not self.allowed or name not in self.allowed or name not in self.algorithms:
            raise BadSignatureError(f"algorithm {name!r} is not allowed")
        return self.algorithms[name]


def _b64decode(segment: bytes) -> bytes:
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(segment: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment), parse_constant=_reject_constant)
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise TokenValidationError("malformed", f"{what} is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise TokenValidationError("malformed", f"{what} is not a JSON object")
    return value


def _candidate_keys(keys: KeySet, kid: str | None, alg: str) -> list[Key]:
    kty = _KEY_TYPES[alg]
    found = [
        k
        for k in keys
        if k.key_type == kty and (kid is None or k.kid == kid) and k.get("alg") in (None, alg)
    ]
    if not found:
        name = "no kid" if kid is None else f"kid {kid!r}"
        raise TokenValidationError("unknown_kid", f"no {kty} key for {name} and alg {alg}")
    return found


def verify(token: str, keys: KeySet, allowed_algs: Collection[str]) -> VerifiedJws:
    """Verify the compact JWS ``token`` with one of ``keys``; return header and claims."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise TokenValidationError("malformed", "token is not a string of at most 16 KiB")
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError as exc:
        raise TokenValidationError("malformed", "token is not ASCII") from exc
    parts = raw.split(b".")
    if len(parts) != 3:
        raise TokenValidationError("malformed", "token is not a compact JWS (3 segments)")
    header = _json_object(parts[0], "JOSE header")
    alg = header.get("alg")
    kid = header.get("kid")
    if not isinstance(alg, str) or (kid is not None and not isinstance(kid, str)):
        raise TokenValidationError("malformed", "JOSE header alg/kid are not strings")
    if "crit" in header or "b64" in header:
        # RFC 7515 §4.1.11: critical extensions we do not implement must be refused;
        # ID and logout tokens never use them (b64=false would change what is signed).
        raise TokenValidationError("malformed", "JOSE header uses crit/b64 extensions")
    if alg not in allowed_algs or alg not in _KEY_TYPES:
        raise TokenValidationError("alg_not_allowed", f"algorithm {alg!r} is not allowed")
    try:
        _b64decode(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise TokenValidationError("malformed", "signature is not base64url") from exc
    claims = _json_object(parts[1], "payload")

    registry = _Registry(algorithms=[alg], strict_check_header=False)
    problem = "signature does not verify"
    for key in _candidate_keys(keys, kid, alg):
        try:
            deserialize_compact(raw, key, registry=registry)
        except BadSignatureError:
            continue
        except (JoseError, ValueError, TypeError) as exc:
            # e.g. an ES256 token and a P-384 key under the same kid
            problem = f"signature check failed: {exc}"
            continue
        return VerifiedJws(header, claims)
    raise TokenValidationError("bad_signature", problem)
