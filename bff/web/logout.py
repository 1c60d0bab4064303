"""``/bff/logout``, ``/bff/logout-all`` and ``/bff/backchannel-logout``."""

from __future__ import annotations

import hmac
import logging
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from bff.errors import ProviderError, ProviderUnavailable, TokenValidationError
from bff.logs import audit
from bff.resources import Resources
from bff.session.model import Session
from bff.session.service import ClientInfo
from bff.web.deps import client, resources, session_cookie
from bff.web.endings import end_session
from bff.web.login import clear_session_cookie
from bff.web.responses import NO_STORE, error_json, error_page

log = logging.getLogger("bff.logout")

MAX_LOGOUT_TOKEN = 16 * 1024


def _post_logout_target(res: Resources) -> str:
    target = res.settings.post_logout_redirect
    return target if target.startswith(("http://", "https://")) else res.settings.public_origin + target


async def _logout_url(res: Resources, id_token: str | None) -> str:
    """The provider's end-session URL, or our post-logout target when it has none."""
    target = _post_logout_target(res)
    try:
        url = await res.oidc.end_session_url(id_token_hint=id_token, post_logout_redirect_uri=target)
    except ProviderError:
        url = None
    return url or target


async def _end_locally(res: Resources, session: Session | None, who: ClientInfo) -> str:
    """End the browser's own session (if any); the URL to send the browser to next."""
    id_token = None
    if session is not None:
        id_token = res.sessions.decrypt(session, "it")
        await end_session(res, session, "local", who)
    return await _logout_url(res, id_token)


async def logout_post(request: Request) -> Response:
    res = resources(request)
    who = client(request)
    session = await res.sessions.load(session_cookie(request), who)
    response = JSONResponse({"logout_url": await _end_locally(res, session, who)}, headers=NO_STORE)
    clear_session_cookie(response, request)
    return response


async def logout_get(request: Request) -> Response:
    """A plain logout link; it needs the session's ``sid`` so other sites cannot log users out."""
    res = resources(request)
    who = client(request)
    session = await res.sessions.load(session_cookie(request), who)
    if session is None:
        response: Response = RedirectResponse(_post_logout_target(res), 302, headers=NO_STORE)
        clear_session_cookie(response, request)
        return response
    sid = request.query_params.get("sid", "")
    if not hmac.compare_digest(sid.encode(), session.key.encode()):
        audit("logout.refused", session=session.key, sub=session.sub, reason="sid_mismatch",
              ip=who.ip, request_id=who.request_id)
        return error_page(400, "bad_request", "This logout link is not valid for your session. "
                          "Use the application's log out button instead.")
    response = RedirectResponse(await _end_locally(res, session, who), 302, headers=NO_STORE)
    clear_session_cookie(response, request)
    return response


async def end_all(
    res: Resources, sessions: list[Session], reason: str, who: ClientInfo, *, revoke: bool = True
) -> int:
    """End each session; how many were still live."""
    ended = 0
    for item in sessions:
        if await end_session(res, item, reason, who, revoke=revoke):
            ended += 1
    return ended


async def logout_all(request: Request) -> Response:
    res = resources(request)
    who = client(request)
    session = await res.sessions.load(session_cookie(request), who)
    if session is None:
        return error_json(401, "unauthenticated", "You are not signed in.")
    id_token = res.sessions.decrypt(session, "it")
    others = [s for s in await res.store.list_for_user(session.sub) if s.key != session.key]
    ended = await end_all(res, [session, *others], "all_devices", who)
    audit("logout.all_devices", session=session.key, sub=session.sub, ended=ended, ip=who.ip,
          request_id=who.request_id)
    response = JSONResponse(
        {"ended": ended, "logout_url": await _logout_url(res, id_token)}, headers=NO_STORE
    )
    clear_session_cookie(response, request)
    return response


async def backchannel_logout(request: Request) -> Response:
    """OpenID Connect Back-Channel Logout 1.0: the provider tells us a session is over."""
    res = resources(request)
    who = client(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if content_type != "application/x-www-form-urlencoded" or len(body) > MAX_LOGOUT_TOKEN + 64:
        return _bad_logout(who.ip, "bad_request", "expected a form-encoded logout_token")
    try:
        form = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return _bad_logout(who.ip, "bad_request", "the body is not form-encoded ASCII")
    tokens = [value for key, value in form if key == "logout_token"]
    if len(tokens) != 1 or not tokens[0]:
        return _bad_logout(who.ip, "missing_token", "exactly one logout_token is required")
    try:
        claims = await res.oidc.validate_logout_token(tokens[0])
    except TokenValidationError as exc:
        return _bad_logout(who.ip, exc.reason, "the logout_token is not valid")
    except ProviderUnavailable:
        return error_json(503, "unavailable", "The provider's keys cannot be fetched right now.",
                          {"Retry-After": "5"})
    except ProviderError:
        return _bad_logout(who.ip, "provider_error", "the logout_token cannot be checked")
    if not await res.store.remember_jti(f"{res.settings.issuer}|{claims.jti}", 3600):
        return _bad_logout(who.ip, "replayed", "this logout_token was already used")
    if claims.sid:
        targets = []
        for key in await res.store.keys_for_provider_sid(claims.sid):
            session = await res.store.get(key)
            if session is not None and (claims.sub is None or session.sub == claims.sub):
                targets.append(session)
    else:
        targets = await res.store.list_for_user(claims.sub or "")
    ended = await end_all(res, targets, "backchannel", who, revoke=False)
    audit("logout.backchannel_received", sub=claims.sub, provider_sid_present=bool(claims.sid),
          ended=ended, ip=who.ip, request_id=who.request_id)
    return Response(status_code=200, headers=NO_STORE)


def _bad_logout(ip: str, reason: str, detail: str) -> Response:
    audit("logout.backchannel_rejected", reason=reason, ip=ip)
    return error_json(400, "invalid_request", f"Back-channel logout refused: {detail}.")
