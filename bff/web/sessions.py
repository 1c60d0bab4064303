"""``GET /bff/user``, ``GET /bff/sessions`` and ``DELETE /bff/sessions/{id}``."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bff.session.model import Session
from bff.web.deps import client, resources, session_cookie
from bff.web.devices import device_label
from bff.web.endings import end_session
from bff.web.responses import NO_STORE, error_json


def _unauthenticated() -> Response:
    return error_json(401, "unauthenticated", "You are not signed in, or your session has ended.")


async def _current(request: Request) -> Session | None:
    return await resources(request).sessions.load(session_cookie(request), client(request))


async def user(request: Request) -> Response:
    session = await _current(request)
    if session is None:
        return _unauthenticated()
    res = resources(request)
    # This request just renewed the idle window; the absolute limit still caps it.
    ends = min(session.expires_at, res.clock() + res.settings.idle_timeout)
    body = {
        **session.claims,
        "sub": session.sub,
        "sid": session.key,
        "session_expires_at": int(ends),
        "logout_url": f"{res.settings.base_path}/bff/logout?sid={session.key}",
    }
    return JSONResponse(body, headers=NO_STORE)


def _describe(session: Session, current: Session) -> dict[str, object]:
    return {
        "id": session.key,
        "created": int(session.created_at),
        "last_seen": int(session.last_seen),
        "expires_at": int(session.expires_at),
        "ip": session.ip,
        "user_agent": session.user_agent,
        "device": device_label(session.user_agent),
        "current": session.key == current.key,
    }


async def list_sessions(request: Request) -> Response:
    current = await _current(request)
    if current is None:
        return _unauthenticated()
    res = resources(request)
    now = res.clock()
    live = [
        s for s in await res.store.list_for_user(current.sub)
        if res.sessions.timed_out(s, now) is None
    ]
    live.sort(key=lambda s: s.created_at)
    return JSONResponse({"sessions": [_describe(s, current) for s in live]}, headers=NO_STORE)


async def delete_session(request: Request) -> Response:
    current = await _current(request)
    if current is None:
        return _unauthenticated()
    res = resources(request)
    wanted = request.path_params["session_id"]
    for session in await res.store.list_for_user(current.sub):
        if hmac.compare_digest(session.key.encode(), wanted.encode()):
            await end_session(res, session, "user_revoked", client(request))
            return Response(status_code=204, headers=NO_STORE)
    return error_json(404, "not_found", "No such session among yours.")
