"""Request headers of any name and value on a proxied route: never a 500, and the browser's
credentials, the CSRF header, hop-by-hop headers and spoofed identity headers never reach the
upstream."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from bff.proxy.headers import HOP_BY_HOP, is_identity_header

from .conftest import Fuzzed
from .strategies import check, header_names, header_values
from .volume import fuzz_settings, tried

INTERESTING = [b"cookie", b"authorization", b"x-csrf", b"connection", b"keep-alive", b"te", b"upgrade",
               b"proxy-authorization", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto",
               b"x-forwarded-user", b"X_Forwarded_User", b"forwarded", b"x-real-ip", b"host",
               b"x-request-id", b"origin", b"accept", b"sec-fetch-mode", b"remote-user", b"oidc-claim-sub",
               b"trailer", b"expect", b"user-agent"]
names = st.sampled_from(INTERESTING) | header_names
header_lists = st.lists(st.tuples(names, header_values(120)), max_size=12)
SERVER_LEVEL = {b"content-length", b"transfer-encoding"}  # framing: the server checks these


@fuzz_settings(400)
@given(extra=header_lists, method=st.sampled_from(["GET", "POST", "DELETE", "PATCH"]),
       body=st.binary(max_size=64))
@example(extra=[(b"connection", b"x-secret, cookie"), (b"x-secret", b"1")], method="GET", body=b"")
@example(extra=[(b"x-request-id", b"../../etc"), (b"origin", b"null")], method="POST", body=b"x")
def test_any_headers_on_a_proxied_call_keep_the_contract(
    fuzzed: Fuzzed, extra: list[tuple[bytes, bytes]], method: str, body: bytes
) -> None:
    tried("request headers -> proxied route")
    extra = [(k, v) for k, v in extra if k.lower() not in SERVER_LEVEL]
    # The session cookie and a CSRF header come first, as a browser's would.
    base = [(b"cookie", b"bff=" + fuzzed.cookie.encode()), (b"x-csrf", b"1"),
            (b"user-agent", fuzzed.user_agent.encode())]
    answer = fuzzed.driver.request(method, b"/api/echo", headers=base + extra,
                                   body=body if method != "GET" else b"")
    check(fuzzed, answer, {200, 302, 401, 403, 431}, extra)
    if answer.status != 200:
        return
    seen = {k.lower() for k, _ in answer.json()["headers"]}
    assert not seen & {"cookie", "x-csrf", "proxy-authorization"}, seen
    assert not seen & (HOP_BY_HOP - {"te"}), seen
    named_by_connection = {
        item.strip().lower().decode("latin-1")
        for k, v in extra if k.lower() == b"connection" for item in v.split(b",")}
    assert not seen & (named_by_connection - {"", "host", "content-length", "content-type"}), seen
    identity = {h for h in seen if is_identity_header(h)} - {"x-forwarded-for", "x-forwarded-proto",
                                                            "x-forwarded-host", "x-forwarded-port",
                                                            "x-forwarded-prefix"}
    assert not identity, identity
    bearer = [v for k, v in answer.json()["headers"] if k.lower() == "authorization"]
    assert bearer == ["Bearer fuzz-access-token"], bearer


@fuzz_settings(300)
@given(extra=header_lists, path=st.sampled_from([b"/bff/user", b"/bff/sessions", b"/bff/login",
                                                b"/bff/logout", b"/healthz", b"/bff/nope"]))
def test_any_headers_on_the_gateways_own_endpoints_keep_the_contract(
    fuzzed: Fuzzed, extra: list[tuple[bytes, bytes]], path: bytes
) -> None:
    tried("request headers -> /bff/* endpoints")
    extra = [(k, v) for k, v in extra if k.lower() not in SERVER_LEVEL]
    answer = fuzzed.driver.request("GET", path, headers=extra)
    check(fuzzed, answer, {200, 302, 400, 401, 403, 404, 405, 431}, (path, extra))
