"""Small accessors shared by the endpoints: the app's resources and the request's client."""

from __future__ import annotations

import secrets

from starlette.requests import HTTPConnection

from bff.resources import Resources
from bff.session.cookies import read_cookie
from bff.session.service import ClientInfo
from bff.web.client import client_info


def resources(conn: HTTPConnection) -> Resources:
    res: Resources = conn.app.state.resources
    return res


def request_id(conn: HTTPConnection) -> str:
    rid: str | None = conn.scope.get("bff.request_id")
    return rid or secrets.token_hex(8)


def client(conn: HTTPConnection) -> ClientInfo:
    return client_info(conn.scope, resources(conn).settings.trusted_proxies, request_id(conn))


def session_cookie(conn: HTTPConnection) -> str | None:
    return read_cookie(conn.headers.get("cookie"), resources(conn).settings.cookie_name)
