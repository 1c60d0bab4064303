"""Build the upstream URL from the raw request path so that it never leaves the upstream's base.

The check works on the raw request target (ASGI ``scope["raw_path"]``), never on the
decoded path: every segment is decoded again and again (double and triple encodings
included) and refused when any level of it is a dot segment, hides a separator, or
carries control characters. Percent-encodings that pass are kept exactly as the browser
sent them; nothing is decoded and re-encoded on the way to the upstream.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote_to_bytes, urlsplit

_HEX = frozenset(b"0123456789abcdefABCDEF")
# RFC 3986 pchar without '%' (handled on its own): unreserved, sub-delims, ':' and '@'.
_PCHAR = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@"
)
_QUERY = _PCHAR | frozenset(b"/?%[]")
# The same sets as bytes, for bytes.translate(None, ...): empty result = only these bytes.
_PCHAR_BYTES = bytes(sorted(_PCHAR))
_QUERY_BYTES = bytes(sorted(_QUERY))
# A deeper nesting than this is not a file name anyone types; it is an attack.
_MAX_DECODE_ROUNDS = 4


class UnsafePath(ValueError):
    """The request path could reach outside the route's upstream base path, or is malformed."""


def join_upstream(upstream: str, raw_path: bytes, query: bytes) -> str:
    """Return ``upstream`` + the checked ``raw_path`` (+ ``?query``); raise UnsafePath if unsafe.

    ``raw_path`` is the part of the browser's raw path that goes after the upstream base
    (``b""``, or starting with ``/``). ``query`` is the raw query string without ``?``.
    """
    path = _safe_path(raw_path)
    base = upstream.rstrip("/")
    if not path and not urlsplit(base).path:  # scheme://host without any path
        path = "/"
    url = base + path
    safe_query = _safe_query(query)
    return f"{url}?{safe_query}" if safe_query else url


def strip_raw_prefix(raw_path: bytes, prefix: str) -> bytes:
    """Remove the route ``prefix`` from the raw path, refusing a path that spells it differently.

    Routes are matched on the decoded path; a raw path that reaches the same prefix
    only after decoding (``/%61pi`` for ``/api``) is refused rather than guessed at.
    """
    if prefix in ("", "/"):
        return raw_path
    literal = prefix.encode("ascii")
    if raw_path == literal:
        return b""
    if raw_path.startswith(literal + b"/"):
        return raw_path[len(literal):]
    raise UnsafePath("the raw path does not start with the route prefix")


def _safe_path(raw_path: bytes) -> str:
    if not raw_path:
        return ""
    if not raw_path.startswith(b"/"):
        raise UnsafePath("the path must start with '/'")
    segments = raw_path[1:].split(b"/")
    last = len(segments) - 1
    checked: list[str] = []
    for index, segment in enumerate(segments):
        if not segment and index != last:
            raise UnsafePath("empty path segment")
        checked.append(_safe_segment(segment))
    return "/" + "/".join(checked)


def _safe_segment(segment: bytes) -> str:
    if not segment.translate(None, _PCHAR_BYTES):
        # Plain characters only (no '%', so nothing is decoded): only a dot segment can be wrong.
        _check_level(segment)
        return segment.decode("ascii")
    encoded = bytearray()
    i = 0
    while i < len(segment):
        byte = segment[i]
        if byte == 0x25:  # '%'
            pair = segment[i + 1 : i + 3]
            if len(pair) != 2 or not all(c in _HEX for c in pair):
                raise UnsafePath("malformed percent-encoding")
            encoded += segment[i : i + 3]
            i += 3
            continue
        if byte < 0x20 or byte == 0x7F:
            raise UnsafePath("control character in path")
        if byte == 0x5C:
            raise UnsafePath("backslash in path")
        if byte in _PCHAR:
            encoded.append(byte)
        else:  # a space, a quote, raw UTF-8...: encode it as a browser would
            encoded += b"%%%02X" % byte
        i += 1
    _check_all_levels(bytes(encoded))
    return encoded.decode("ascii")


def _check_all_levels(segment: bytes) -> None:
    current = segment
    for _ in range(_MAX_DECODE_ROUNDS + 1):
        decoded = unquote_to_bytes(current)
        _check_level(decoded)
        if decoded == current:
            break
        current = decoded
    else:
        raise UnsafePath("too many levels of percent-encoding")
    try:
        text = current.decode("utf-8")
    except UnicodeDecodeError:  # includes overlong forms such as %c0%ae
        raise UnsafePath("path segment is not valid UTF-8") from None
    # Some servers fold compatibility characters (fullwidth dot U+FF0E, solidus U+FF0F).
    folded = unicodedata.normalize("NFKC", text)
    if folded != text:
        _check_level(folded.encode("utf-8"))
        _check_level(unquote_to_bytes(folded))


def _check_level(level: bytes) -> None:
    if b"/" in level or b"\\" in level:
        raise UnsafePath("encoded path separator")
    if any(b < 0x20 or b == 0x7F for b in level):
        raise UnsafePath("control character in path")
    # '..;param' is '..' to servlet containers; '... ' is '..' to Windows servers.
    name = level.split(b";", 1)[0]
    if b"." in name and not name.strip(b". "):
        raise UnsafePath("dot segment in path")


def _safe_query(query: bytes) -> str:
    if not query.translate(None, _QUERY_BYTES):
        return query.decode("ascii")
    out = bytearray()
    for byte in query:
        if byte < 0x20 or byte == 0x7F:
            raise UnsafePath("control character in query")
        if byte in _QUERY:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return out.decode("ascii")
