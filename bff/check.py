"""``bff check``: configuration and reachability, as a readable report (exit 0 only if all is well)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from typing import TextIO

import httpx

from bff.config import Settings, load_settings
from bff.errors import BffError
from bff.oidc.jwks import JwksCache
from bff.oidc.metadata import MetadataCache
from bff.session.connect import redis_from_url


async def _checks(settings: Settings) -> list[tuple[str, bool, str]]:
    results: list[tuple[str, bool, str]] = [("configuration", True, "valid")]
    if settings.redis_url is None:
        results.append(("redis", True, "embedded server (BFF_REDIS_URL unset)"))
    else:
        client = redis_from_url(settings.redis_url)
        try:
            await asyncio.wait_for(client.ping(), 5)
            results.append(("redis", True, "reachable"))
        except (Exception, TimeoutError) as exc:  # report, never crash
            results.append(("redis", False, f"unreachable ({type(exc).__name__}: {exc})"))
        finally:
            await client.aclose()
    async with httpx.AsyncClient(timeout=10) as http:
        metadata = MetadataCache(http, settings.issuer)
        try:
            meta = await metadata.get()
            results.append(("provider discovery", True, f"issuer {meta.issuer}"))
            keys = await JwksCache(http, metadata).key_set()
            results.append(("provider JWKS", True, f"{len(keys.keys)} key(s)"))
            if meta.revocation_endpoint is None:
                results.append(("provider revocation", True, "not offered: logout cannot revoke "
                                "refresh tokens"))
            if meta.end_session_endpoint is None:
                results.append(("provider end-session", True, "not offered: logout stays local"))
        except BffError as exc:
            results.append(("provider", False, str(exc)))
        for route in settings.routes:
            try:
                response = await http.get(route.upstream, timeout=route.timeout)
                results.append((f"route {route.prefix}", True,
                                f"{route.upstream} answered {response.status_code}"))
            except httpx.HTTPError as exc:
                results.append((f"route {route.prefix}", False,
                                f"{route.upstream} unreachable ({type(exc).__name__})"))
    return results


def run_check(env: Mapping[str, str], out: TextIO = sys.stdout) -> int:
    settings = load_settings(env)
    results = asyncio.run(_checks(settings))
    width = max(len(name) for name, _, _ in results)
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'}  {name:<{width}}  {detail}", file=out)
    failed = [name for name, ok, _ in results if not ok]
    print("\nall checks passed" if not failed else f"\n{len(failed)} check(s) failed", file=out)
    return 0 if not failed else 1
