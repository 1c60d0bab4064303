"""HTTP plumbing shared by the OIDC modules: transport errors, JSON bodies, OAuth errors.

Messages name the endpoint's purpose and the status, never a request body:
bodies carry codes, secrets and tokens.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from bff.errors import InvalidGrant, OAuthError, ProviderError, ProviderUnavailable

DEFAULT_TIMEOUT = 10.0


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    time_limit: float,
    data: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Send one request; unreachable, timed out, 429 or 5xx become ProviderUnavailable."""
    try:
        response = await http.request(
            method, url, data=data, headers=headers, timeout=time_limit, follow_redirects=False
        )
    except httpx.TimeoutException as exc:
        raise ProviderUnavailable(f"{what}: timed out after {time_limit:g}s") from exc
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise ProviderUnavailable(f"{what}: HTTP {response.status_code}")
    return response


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The body as a JSON object; non-JSON is treated as transient (an error page)."""
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProviderUnavailable(
            f"{what}: HTTP {response.status_code} with a body that is not JSON"
        ) from exc
    if not isinstance(body, dict):
        raise ProviderError(f"{what}: the JSON body is not an object")
    return body


def raise_for_oauth_error(response: httpx.Response, what: str) -> None:
    """Raise for a non-200 answer: an RFC 6749 §5.2 error body, or a bare status."""
    if response.status_code == 200:
        return
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        description = body.get("error_description")
        desc = description if isinstance(description, str) else ""
        if body["error"] == "invalid_grant":
            raise InvalidGrant(desc)
        raise OAuthError(body["error"], desc)
    raise ProviderError(f"{what}: unexpected HTTP {response.status_code}")


def choose_auth_method(client_secret: str | None, supported: Sequence[str]) -> str:
    """``none`` for a public client; ``client_secret_basic`` unless only ``_post`` is offered."""
    if client_secret is None:
        return "none"
    if "client_secret_post" in supported and "client_secret_basic" not in supported:
        return "client_secret_post"
    return "client_secret_basic"


def apply_client_auth(
    method: str,
    client_id: str,
    client_secret: str | None,
    form: dict[str, str],
) -> dict[str, str]:
    """Add client authentication to ``form`` (in place) and return extra headers."""
    if method == "client_secret_basic" and client_secret is not None:
        # RFC 6749 §2.3.1: id and secret are form-urlencoded *before* base64, so a
        # ':' or '%' in the secret survives. quote() writes a space as %20, which
        # form decoders and plain percent-decoders both read back as a space.
        pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}
    form["client_id"] = client_id
    if method == "client_secret_post" and client_secret is not None:
        form["client_secret"] = client_secret
    return {}
