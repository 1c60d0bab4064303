"""Header rules: what the upstream may see and what comes back to the browser."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bff.proxy import inbound_headers, is_identity_header, outbound_headers, request_id

H = list[tuple[bytes, bytes]]


def names(headers: H) -> list[str]:
    return [name.decode().lower() for name, _ in headers]


def values(headers: H, name: str) -> list[str]:
    return [v.decode() for k, v in headers if k.decode().lower() == name]


def out(headers: H, **overrides: Any) -> H:
    options: dict[str, Any] = {
        "client_addr": "203.0.113.7", "scheme": "https", "host": "app.example.org",
        "trusted": False, "request_id": "rid-1", "bearer": "tok", "user_headers": None,
    }
    options.update(overrides)
    return outbound_headers(headers, **options)


def test_browser_credentials_and_host_are_not_forwarded() -> None:
    result = out([(b"cookie", b"bff=s3cret"), (b"authorization", b"Basic dXNlcg=="),
                  (b"host", b"app.example.org"), (b"cookie2", b"x"), (b"accept", b"*/*")])
    assert values(result, "authorization") == ["Bearer tok"]
    assert "cookie" not in names(result) and "cookie2" not in names(result)
    assert "host" not in names(result)
    assert values(result, "accept") == ["*/*"]


def test_no_bearer_means_no_authorization_header() -> None:
    result = out([(b"authorization", b"Bearer stolen")], bearer=None)
    assert "authorization" not in names(result)


def test_hop_by_hop_and_connection_named_headers_are_dropped_outbound() -> None:
    result = out([
        (b"connection", b"keep-alive, X-Private-Hop"), (b"x-private-hop", b"1"),
        (b"keep-alive", b"timeout=5"), (b"te", b"trailers"), (b"trailer", b"x"),
        (b"transfer-encoding", b"chunked"), (b"upgrade", b"websocket"),
        (b"proxy-authorization", b"Basic x"), (b"proxy-connection", b"keep-alive"),
        (b"proxy-authenticate", b"Basic"), (b"x-kept", b"1"), (b"content-length", b"3"),
    ])
    assert set(names(result)) == {
        "x-kept", "content-length", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
        "x-request-id", "authorization",
    }


@pytest.mark.parametrize(
    "name",
    [
        "X-Forwarded-User", "x_forwarded_user", "X_FORWARDED_EMAIL", "x-Forwarded-Preferred_Username",
        "X-Forwarded-Groups", "X-Forwarded-Access-Token", "X-Auth-Request-User",
        "x_auth_request_email", "X-Auth-Request-Access-Token", "X-Remote-User", "Remote-User",
        "remote_user", "X-User", "X-Email", "X_User_Id", "X-WEBAUTH-USER", "OIDC_CLAIM_sub",
        "OIDC_access_token", "X-Amzn-Oidc-Identity", "X-MS-CLIENT-PRINCIPAL-NAME",
        "X-Goog-Authenticated-User-Email", "Cf-Access-Authenticated-User-Email",
        "X-Forwarded-Host", "x_forwarded_for", "X-Real-IP", "Forwarded",
    ],
)
def test_spoofed_identity_headers_in_any_spelling_are_removed(name: str) -> None:
    result = out([(name.encode(), b"admin"), (b"x-kept", b"1")], client_addr=None)
    assert [v for _, v in result if v == b"admin"] == []


def test_identity_check_reads_underscores_as_dashes() -> None:
    assert is_identity_header("X_Forwarded_User")
    assert is_identity_header(b"REMOTE_USER")
    assert not is_identity_header("X-Requested-With")


def test_user_headers_are_set_once_and_replace_spoofed_copies() -> None:
    result = out(
        [(b"x-forwarded-user", b"mallory"), (b"X_Forwarded_User", b"mallory"),
         (b"x-tenant", b"evil")],
        user_headers={"X-Forwarded-User": "alice", "X-Forwarded-Email": "a@x.org", "X-Tenant": "t1"},
    )
    assert values(result, "x-forwarded-user") == ["alice"]
    assert values(result, "x-forwarded-email") == ["a@x.org"]
    assert values(result, "x-tenant") == ["t1"]
    assert b"mallory" not in b"".join(v for _, v in result)


def test_user_header_values_cannot_inject_lines() -> None:
    result = out([], user_headers={"X-Forwarded-User": "alice\r\nX-Admin: 1"})
    assert values(result, "x-forwarded-user") == ["aliceX-Admin: 1"]


def test_csrf_header_named_in_strip_is_removed() -> None:
    result = out([(b"x-csrf", b"1"), (b"X_CSRF", b"1")], strip=["X-CSRF"])
    assert "x-csrf" not in names(result) and "x_csrf" not in names(result)


def test_untrusted_peer_forwarded_for_is_replaced_by_the_peer_address() -> None:
    result = out([(b"x-forwarded-for", b"10.0.0.1, 10.0.0.2")], trusted=False)
    assert values(result, "x-forwarded-for") == ["203.0.113.7"]


def test_trusted_peer_forwarded_for_chain_is_extended() -> None:
    result = out([(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-for", b"10.0.0.2")],
                 trusted=True, client_addr="10.0.0.9")
    assert values(result, "x-forwarded-for") == ["198.51.100.1, 10.0.0.2, 10.0.0.9"]


def test_forwarded_proto_and_host_come_from_the_resolved_values_only() -> None:
    result = out([(b"x-forwarded-proto", b"http"), (b"x-forwarded-host", b"evil.example")],
                 trusted=True, scheme="https", host="app.example.org")
    assert values(result, "x-forwarded-proto") == ["https"]
    assert values(result, "x-forwarded-host") == ["app.example.org"]


def test_request_id_header_is_replaced_by_the_given_one() -> None:
    result = out([(b"x-request-id", b"from-browser")], request_id="chosen")
    assert values(result, "x-request-id") == ["chosen"]


def test_sane_incoming_request_id_is_kept() -> None:
    assert request_id([(b"x-request-id", b"abc-123.DEF_9")]) == "abc-123.DEF_9"


@pytest.mark.parametrize("value", [b"", b"a b", b"x" * 129, b"evil\"id", b"\xff", b"a;b"])
def test_insane_incoming_request_id_is_replaced_by_a_fresh_one(value: bytes) -> None:
    new = request_id([(b"x-request-id", value)])
    assert re.fullmatch(r"[0-9a-f]{32}", new)
    assert request_id([]) != request_id([])


def test_inbound_drops_hop_by_hop_but_keeps_cookies_and_length() -> None:
    result = inbound_headers([
        (b"connection", b"close, X-Upstream-Private"), (b"x-upstream-private", b"s"),
        (b"keep-alive", b"timeout=5"), (b"transfer-encoding", b"chunked"),
        (b"proxy-authenticate", b"Basic"), (b"upgrade", b"h2c"), (b"trailer", b"x"),
        (b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2"), (b"content-length", b"2"),
        (b"content-type", b"text/plain"),
    ])
    assert result == [(b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2"),
                      (b"content-length", b"2"), (b"content-type", b"text/plain")]
