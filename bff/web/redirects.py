"""Local-only return URLs: the one place that decides where the browser may be sent back."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MAX_RETURN_TO = 2048


def safe_return_to(value: str | None, fallback: str = "/") -> str:
    """``value`` when it is a same-origin relative path, else ``fallback``.

    Refuses everything browsers are known to read as another origin or a script:
    ``//host``, ``/\\host``, schemes (``javascript:``), control characters or
    whitespace anywhere (``/\\t/host``), backslashes, and the same after
    percent-decoding (``/%2F%2Fhost``, ``%5C``).
    """
    if not value or len(value) > MAX_RETURN_TO:
        return fallback
    for candidate in (value, unquote(value), unquote(unquote(value))):
        if not _plain_local_path(candidate):
            return fallback
    return value


def _plain_local_path(path: str) -> bool:
    if not path.startswith("/") or path.startswith("//"):
        return False
    if "\\" in path or any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        return False
    if any(0x80 <= ord(c) <= 0x9F or c in "\u2028\u2029\u00a0\u3000\ufeff" for c in path):
        return False
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        return False
    # "/./\\host", "/.//host", "/a/..//host": no dot or empty segments at all, so no
    # normalisation by the browser can turn the path into a network-path reference.
    segments = parts.path.split("/")[1:]
    if parts.path != "/" and any(s in ("", ".", "..") for s in segments[:-1]):
        return False
    return not (segments and segments[-1] in (".", ".."))
