"""Hypothesis strategies for what can arrive on the wire, and the contract every answer must keep."""

from __future__ import annotations

import base64
import json
import string
from typing import Any

from hypothesis import strategies as st

from .conftest import Fuzzed
from .driver import Answer

# Bytes an HTTP/1.1 parser lets through in a header value: visible ASCII, space, tab, obs-text.
VALUE_BYTES = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
TOKEN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
# Visible ASCII allowed in a request target's path by the server (no '?', '#', space).
PATH_CHARS = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in "?#")
TRICKY = ["..", ".", "%2e%2e", "%2E.", "%252e%252e", "%2f", "%5c", "\\", "%00", "%c0%ae", "%ef%bc%8e",
          "..;", ".. ", "%", "%zz", "%e2%80%ae", "~", ";", "@", ":", "//", "%2F%2F", "%u002e"]


def header_values(max_size: int = 200) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size).map(
        lambda raw: bytes(VALUE_BYTES[b % len(VALUE_BYTES)] for b in raw).strip(b" \t"))


header_names = st.text(TOKEN_CHARS, min_size=1, max_size=30).map(str.encode)


def segments() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(PATH_CHARS.replace("/", ""), max_size=12),
        st.sampled_from(TRICKY),
        st.binary(min_size=1, max_size=4).map(lambda b: "".join(f"%{x:02X}" for x in b)),
    )


raw_paths = st.lists(segments(), max_size=6).map(lambda parts: "/" + "/".join(parts))
queries = st.text(PATH_CHARS + "?#", max_size=60)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values: st.SearchStrategy[Any] = _scalars | st.lists(_scalars, max_size=2) | st.dictionaries(
    st.sampled_from(["http://schemas.openid.net/event/backchannel-logout", "x"]), _scalars | st.just({}),
    max_size=2)
CLAIMS = ["iss", "aud", "iat", "exp", "nbf", "jti", "sub", "sid", "events", "nonce", "azp", "typ"]


@st.composite
def jwt_like(draw: st.DrawFn) -> str:
    """Strings shaped like JWS compact serialisations, with every part possibly broken."""
    header: dict[str, Any] = draw(st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "jku", "x5u", "b64"]),
        st.sampled_from(["none", "None", "HS256", "RS256", "ES256", "EdDSA", "", "logout+jwt"])
        | json_values, max_size=4))
    claims: dict[str, Any] = draw(st.dictionaries(st.sampled_from(CLAIMS) | st.text(max_size=6),
                                                  json_values, max_size=8))
    parts = [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()),
             b64(draw(st.binary(max_size=300)))]
    mangle = draw(st.sampled_from(["none", "drop", "extra", "raw", "pad", "bytes"]))
    if mangle == "drop":
        parts = parts[: draw(st.integers(0, 2))]
    elif mangle == "extra":
        parts.append(draw(st.text(max_size=10)))
    elif mangle == "raw":
        parts[draw(st.integers(0, 2))] = draw(st.text(max_size=40))
    elif mangle == "pad":
        parts = [p + "==" for p in parts]
    elif mangle == "bytes":
        return draw(st.text(max_size=200))
    return ".".join(parts)


def check(fuzzed: Fuzzed, answer: Answer, allowed: set[int], what: object) -> None:
    """The contract for any answer to hostile input: no escape, no 5xx unless allowed, no ERROR
    logged, and every JSON error exactly ``{"error": str, "detail": str}``."""
    assert answer.escaped is None, (what, repr(answer.escaped))
    assert answer.status in allowed, (what, answer.status, answer.body[:300])
    assert fuzzed.errors.take() == [], what
    content_type = answer.header("content-type") or ""
    if answer.status >= 400 and content_type.startswith("application/json"):
        body = answer.json()
        assert isinstance(body, dict) and set(body) == {"error", "detail"}, (what, body)
        assert isinstance(body["error"], str) and isinstance(body["detail"], str), (what, body)
