"""``GET /bff/login`` and ``GET /bff/callback``: the authorization code flow with PKCE.

The login's state, nonce, verifier and return path live server-side (single
use, short TTL). The browser that started it gets one small signed cookie with
a random browser id; every pending login of that browser is bound to its hash,
so many tabs work at once and cookies never pile up.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bff.errors import (
    LoginError,
    OAuthError,
    ProviderError,
    ProviderUnavailable,
    StoreUnavailable,
    TokenValidationError,
)
from bff.logs import audit
from bff.oidc.pkce import new_verifier, random_token, s256_challenge
from bff.resources import Resources
from bff.session.cookies import delete_cookie_header, read_cookie, set_cookie_header
from bff.session.model import LoginTransaction
from bff.session.store import NewSession
from bff.web.deps import client, resources, session_cookie
from bff.web.redirects import safe_return_to
from bff.web.responses import NO_STORE, error_response

log = logging.getLogger("bff.login")

LOGIN_TTL = 600
# ID token rules that fail when the gateway's and the provider's clocks disagree.
CLOCK_REASONS = frozenset({"expired", "issued_in_future", "not_yet_valid"})
PASS_THROUGH = ("prompt", "login_hint", "ui_locales", "acr_values", "max_age")
# Claims about the token itself, not the user: kept out of /bff/user.
PROTOCOL_CLAIMS = frozenset(
    {"iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "azp", "auth_time", "jti",
     "sid", "s_hash", "typ"}
)


def _browser_hash(browser_id: str) -> str:
    return hashlib.sha256(b"bff-browser:" + browser_id.encode()).hexdigest()


async def login(request: Request) -> Response:
    res = resources(request)
    settings = res.settings
    who = client(request)
    fallback = settings.base_path + "/"
    return_to = safe_return_to(request.query_params.get("returnTo"), fallback)
    try:
        retry = await res.store.hit_rate_limit(f"login:ip:{who.ip}", settings.login_rate_limit, 60)
        if retry is None:
            retry = await res.store.hit_rate_limit("login:all", settings.login_global_limit, 60)
    except StoreUnavailable:
        return _unavailable(request, "The session store is not reachable. Please try again shortly.")
    if retry is not None:
        audit("login.rate_limited", ip=who.ip, request_id=who.request_id)
        return error_response(
            request.scope, 429, "rate_limited",
            "Too many sign-in attempts from this address. Please wait and try again.",
            {"Retry-After": str(retry)},
        )
    browser_id = res.login_signer.unsign(
        read_cookie(request.headers.get("cookie"), settings.login_cookie_name)
    ) or random_token(24)
    verifier = new_verifier()
    tx = LoginTransaction(
        state=random_token(), nonce=random_token(), code_verifier=verifier,
        return_to=return_to, browser=_browser_hash(browser_id), created_at=res.clock(),
    )
    extra = dict(settings.extra_auth_params)
    extra.update({k: v for k in PASS_THROUGH if (v := request.query_params.get(k)) and len(v) <= 256})
    try:
        # Never send the browser to a provider that is down: a cached discovery
        # document would build the URL all the same.
        await res.metadata.ensure_reachable()
        url = await res.oidc.authorization_url(
            state=tx.state, nonce=tx.nonce, code_challenge=s256_challenge(verifier), extra=extra
        )
        await res.store.put_login(tx, LOGIN_TTL)
    except ProviderUnavailable:
        res.metrics.provider_errors.labels("discovery").inc()
        return _unavailable(request, "The sign-in service cannot be reached right now. "
                            "Please try again in a moment.")
    except ProviderError as exc:
        log.error("provider metadata refused: %s", exc)
        res.metrics.provider_errors.labels("discovery").inc()
        return _unavailable(request, "The sign-in service is misconfigured. Please contact support.")
    except StoreUnavailable:
        res.metrics.store_errors.inc()
        return _unavailable(request, "The session store is not reachable. Please try again shortly.")
    response = RedirectResponse(url, status_code=302, headers=NO_STORE)
    response.headers.append(
        "set-cookie",
        set_cookie_header(
            settings.login_cookie_name, res.login_signer.sign(browser_id),
            secure=settings.secure, max_age=LOGIN_TTL,
        ),
    )
    return response


def _unavailable(request: Request, detail: str) -> Response:
    return error_response(request.scope, 503, "unavailable", detail, {"Retry-After": "5"},
                          link=(resources(request).settings.base_path + "/", "Back"))


def _single(params: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    if len(values) > 1:
        raise LoginError("duplicate_parameter", f"The sign-in response repeats '{name}'.")
    return values[0] if values else None


async def callback(request: Request) -> Response:
    res = resources(request)
    who = client(request)
    try:
        return await _complete(request)
    except LoginError as exc:
        res.metrics.logins.labels("failure", exc.reason).inc()
        audit("login.failure", reason=exc.reason, ip=who.ip, user_agent=who.user_agent,
              request_id=who.request_id)
        log.info("login failed: %s (%s)", exc.reason, exc)
        return error_response(request.scope, exc.status, "login_failed", str(exc),
                              link=(res.settings.base_path + "/bff/login", "Sign in again"))
    except (ProviderUnavailable, StoreUnavailable) as exc:
        reason = "provider_unavailable" if isinstance(exc, ProviderUnavailable) else "store_unavailable"
        res.metrics.logins.labels("failure", reason).inc()
        audit("login.failure", reason=reason, ip=who.ip, request_id=who.request_id)
        return _unavailable(request, "Sign-in could not be completed because a service is "
                            "temporarily unreachable. Please try again.")


async def _complete(request: Request) -> Response:
    res = resources(request)
    settings = res.settings
    who = client(request)
    raw_query = request.scope.get("query_string", b"").decode("latin-1")
    if len(raw_query) > 8192:
        raise LoginError("oversized", "The sign-in response is too large.")
    params = parse_qsl(raw_query, keep_blank_values=True)
    state = _single(params, "state")
    code = _single(params, "code")
    error = _single(params, "error")
    if error is not None:
        if state:
            await res.store.pop_login(state)  # the attempt is over either way
        reason = "access_denied" if error == "access_denied" else "provider_error"
        message = ("Sign-in was cancelled or refused at the identity provider."
                   if error == "access_denied" else "The identity provider reported an error.")
        raise LoginError(reason, message)
    if not state or len(state) > 256:
        raise LoginError("missing_state", "The sign-in response has no valid state.")
    browser_id = res.login_signer.unsign(read_cookie(request.headers.get("cookie"),
                                                     settings.login_cookie_name))
    tx = await res.store.pop_login(state)
    if tx is None:
        raise LoginError("unknown_state", "This sign-in link is unknown, expired or already used.")
    if browser_id is None or not secrets.compare_digest(tx.browser, _browser_hash(browser_id)):
        raise LoginError("foreign_state", "This sign-in was started in another browser.")
    if not code or len(code) > 2048:
        raise LoginError("missing_code", "The sign-in response has no authorization code.")
    await _check_response_issuer(res, _single(params, "iss"))
    try:
        tokens = await res.oidc.exchange_code(code, tx.code_verifier)
        if not tokens.id_token:
            raise LoginError("no_id_token", "The identity provider returned no ID token.")
        id_claims = await res.oidc.validate_id_token(tokens.id_token, tx.nonce)
        userinfo = await res.oidc.userinfo(tokens.access_token)
    except TokenValidationError as exc:
        if exc.reason in CLOCK_REASONS:
            log.warning("ID token refused: %s; the clocks of this gateway and the identity "
                        "provider differ by more than BFF_CLOCK_SKEW=%ss (check NTP on both)",
                        exc, settings.clock_skew)
        raise LoginError(f"id_token_{exc.reason}", "The identity provider's ID token was not "
                         "valid.") from exc
    except OAuthError as exc:
        raise LoginError(f"token_{exc.error}", "The identity provider refused the sign-in.") from exc
    except ProviderUnavailable:
        res.metrics.provider_errors.labels("token").inc()
        raise
    except ProviderError as exc:
        raise LoginError("provider_response", "The identity provider answered something "
                         "unexpected.") from exc
    if userinfo is not None and userinfo.get("sub") != id_claims.sub:
        raise LoginError("userinfo_sub_mismatch", "The identity provider's user info is for a "
                         "different user.")
    claims = {k: v for k, v in id_claims.claims.items() if k not in PROTOCOL_CLAIMS}
    if userinfo:
        claims.update({k: v for k, v in userinfo.items() if k not in PROTOCOL_CLAIMS})
    lifetime = tokens.expires_in if tokens.expires_in is not None else 300
    old = await res.sessions.load(session_cookie(request), who)
    if old is not None:
        await res.sessions.end(old, "replaced_by_login", who)
    cookie_value, session = await res.sessions.create(
        NewSession(
            sub=id_claims.sub, claims=claims, provider_sid=id_claims.sid, ip=who.ip,
            user_agent=who.user_agent, access_token=tokens.access_token,
            access_expires_at=res.clock() + lifetime, refresh_token=tokens.refresh_token,
            id_token=tokens.id_token,
        )
    )
    res.metrics.logins.labels("success", "").inc()
    audit("login.success", session=session.key, sub=session.sub, ip=who.ip,
          user_agent=who.user_agent, request_id=who.request_id)
    response = RedirectResponse(tx.return_to, status_code=302, headers=NO_STORE)
    response.headers.append(
        "set-cookie",
        set_cookie_header(settings.cookie_name, cookie_value, secure=settings.secure,
                          max_age=settings.absolute_timeout),
    )
    return response


async def _check_response_issuer(res: Resources, iss: str | None) -> None:
    """RFC 9207: an ``iss`` in the authorization response must be our issuer (mix-up defence).

    When the provider says it always sends one, its absence is refused too.
    """
    if iss is not None:
        if not secrets.compare_digest(iss.encode(), res.settings.issuer.encode()):
            raise LoginError("issuer_mismatch", "The sign-in response came from another identity "
                             "provider.")
        return
    meta = await res.oidc.metadata.get()
    if meta.raw.get("authorization_response_iss_parameter_supported") is True:
        raise LoginError("missing_issuer", "The sign-in response does not name its identity provider.")


def clear_session_cookie(response: Response, request: Request) -> None:
    settings = resources(request).settings
    response.headers.append("set-cookie", delete_cookie_header(settings.cookie_name,
                                                               secure=settings.secure))
