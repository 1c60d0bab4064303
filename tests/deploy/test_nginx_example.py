"""deploy/nginx/bff.conf: `nginx -t`, and a real run over TLS on loopback.

The runs put nginx (the example config, with only ports, upstream and
certificate paths substituted) in front of :class:`proxy_checks.EchoBackend`
directly, and in front of the real gateway (``python -m bff serve``) whose
route leads to the EchoBackend, and drive both with
:func:`proxy_checks.check_proxy_chain`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.deploy.nginx_runner import (
    EXAMPLE_CERT,
    EXAMPLE_HTTP_LISTEN,
    EXAMPLE_HTTPS_LISTEN,
    EXAMPLE_KEY,
    EXAMPLE_UPSTREAM,
    NGINX_EXAMPLE,
    REPO_ROOT,
    SERVER_NAME,
    free_port,
    nginx_config_test,
    start_nginx,
    write_config,
)
from tests.deploy.proxy_checks import METRICS_MARKER, EchoBackend, check_proxy_chain


def test_example_contains_what_the_runner_substitutes() -> None:
    text = NGINX_EXAMPLE.read_text(encoding="utf-8")
    for literal in (EXAMPLE_UPSTREAM, EXAMPLE_HTTPS_LISTEN, EXAMPLE_HTTP_LISTEN, EXAMPLE_CERT, EXAMPLE_KEY):
        assert text.count(literal) == 1, literal
    for directive in (
        "map $http_upgrade $connection_upgrade",
        "proxy_set_header X-Forwarded-For",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Host",
        "proxy_set_header Upgrade    $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_buffering off;",
        "proxy_request_buffering off;",
        "proxy_http_version 1.1;",
        "client_max_body_size",
        "ssl_certificate ",
        "ssl_certificate_key ",
    ):
        assert directive in text, directive


def test_nginx_accepts_the_example(tmp_path: Path) -> None:
    config = write_config("127.0.0.1:9", tmp_path)
    result = nginx_config_test(config)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_in_front_of_a_backend(tmp_path: Path) -> None:
    with EchoBackend() as backend, start_nginx(backend.host_port, tmp_path) as nginx:
        report = check_proxy_chain(
            nginx.base_url,
            backend,
            verify=nginx.ssl_context(),
            host_header=f"{SERVER_NAME}:{nginx.https_port}",
        )
        assert report.echo_headers.get("x-forwarded-port") == str(nginx.https_port)
        assert report.echo_headers.get("x-real-ip") == "127.0.0.1"
        # Host is passed through as the browser sent it.
        assert report.echo_headers.get("host") == f"{SERVER_NAME}:{nginx.https_port}"

        with httpx.Client(verify=nginx.ssl_context(), timeout=10) as client:
            # /metrics stays internal.
            metrics = client.get(f"{nginx.base_url}/metrics")
            assert metrics.status_code == 404
            assert METRICS_MARKER not in metrics.content
            # HSTS on every answer, including errors.
            assert metrics.headers.get("strict-transport-security", "").startswith("max-age=")

        # Plain HTTP only redirects to HTTPS.
        with httpx.Client(timeout=10) as plain:
            redirect = plain.get(
                f"http://127.0.0.1:{nginx.http_port}/some/page?x=1", headers={"Host": SERVER_NAME}
            )
            assert redirect.status_code == 308
            assert redirect.headers["location"] == f"https://{SERVER_NAME}/some/page?x=1"

        assert not nginx.error_log().count("[emerg]")


@contextlib.contextmanager
def running_gateway(tmp_path: Path, public_url: str, port: int, backend: EchoBackend) -> Iterator[str]:
    """``python -m bff serve`` on 127.0.0.1:port with one token-free route to ``backend``.

    The provider is deliberately unreachable: liveness and a ``token = "none"``
    route need none, and the embedded Redis serves the sessions.
    """
    config = tmp_path / "bff.toml"
    config.write_text(
        f'[[routes]]\nprefix = "/echo-route"\nupstream = "http://{backend.host_port}"\ntoken = "none"\n',
        encoding="utf-8",
    )
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("BFF_")
    } | {
        "BFF_ISSUER": "http://127.0.0.1:9/unreachable",
        "BFF_CLIENT_ID": "deploy-test",
        "BFF_CLIENT_SECRET": "deploy-test-secret",
        "BFF_PUBLIC_URL": public_url,
        "BFF_SESSION_SECRET": "deploy-test-session-secret-0123456789abcdef",
        "BFF_TRUSTED_PROXIES": "127.0.0.1",
        "BFF_CONFIG": str(config),
        "BFF_SHUTDOWN_TIMEOUT": "5",
    }
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "gateway.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bff", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the embedded Redis is cleaned up with it
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, (tmp_path / "gateway.log").read_text(errors="replace")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, "gateway did not become live"
                time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
            # Whatever the gateway started and left behind (its embedded Redis)
            # is in the process group created above.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)


def test_nginx_in_front_of_the_gateway(tmp_path: Path) -> None:
    """Browser -> nginx (TLS) -> bff -> upstream, as in deploy/compose.yaml."""
    gateway_port = free_port()
    with EchoBackend() as backend, start_nginx(f"127.0.0.1:{gateway_port}", tmp_path) as nginx:
        public_host = f"{SERVER_NAME}:{nginx.https_port}"
        with running_gateway(tmp_path, f"https://{public_host}", gateway_port, backend):
            report = check_proxy_chain(
                nginx.base_url,
                backend,
                verify=nginx.ssl_context(),
                prefix="/echo-route",
                host_header=public_host,
                extra_headers={"X-CSRF": "1"},
            )
            # the gateway believed nginx (a trusted proxy) about scheme and host
            assert report.echo_headers["x-forwarded-proto"] == "https"
            assert report.echo_headers["x-forwarded-host"] == public_host

            browser = httpx.Client(verify=nginx.ssl_context(), timeout=10, headers={"Host": public_host})
            with browser as client:
                live = client.get(f"{nginx.base_url}/healthz")
                assert live.status_code == 200
                # the gateway's JSON errors pass through unchanged
                user = client.get(f"{nginx.base_url}/bff/user", headers={"X-CSRF": "1"})
                assert user.status_code == 401
                assert user.json()["error"] == "unauthenticated"
                assert client.get(f"{nginx.base_url}/metrics").status_code == 404
