"""Run the example nginx configuration (deploy/nginx/bff.conf) on loopback.

Reusable by any test that wants nginx in front of something, e.g. the real
gateway::

    from tests.deploy.nginx_runner import start_nginx

    with start_nginx("127.0.0.1:8080", tmp_path) as nginx:
        httpx.get(f"{nginx.base_url}/healthz", verify=nginx.ssl_context())

``start_nginx`` renders deploy/nginx/bff.conf with the upstream address,
listen ports and certificate paths substituted (every other line is used as
written), wraps it in ``events {}`` / ``http {}`` and runs
``nginx -p TMP -c TMP/nginx.conf -g 'daemon off; pid ...; error_log ...;'``.

Prerequisites (``nginx``, ``openssl``) go through :func:`require_executable`:
a missing one fails the test when ``CI=true`` and skips it otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
NGINX_EXAMPLE = DEPLOY_DIR / "nginx" / "bff.conf"

# Literal values in deploy/nginx/bff.conf that a loopback run must replace.
EXAMPLE_UPSTREAM = "server bff:8080"
EXAMPLE_HTTPS_LISTEN = "listen 443 ssl http2;"
EXAMPLE_HTTP_LISTEN = "listen 80;"
EXAMPLE_CERT = "/etc/nginx/certs/fullchain.pem"
EXAMPLE_KEY = "/etc/nginx/certs/privkey.pem"
SERVER_NAME = "bff.example.com"

STARTUP_TIMEOUT = 15.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_executable(name: str, *, hint: str = "") -> str:
    """Path of ``name`` on PATH; fail under CI=true, skip elsewhere."""
    # Debian installs nginx in /usr/sbin, which a non-root PATH may lack.
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        message = f"{name!r} not found on PATH" + (f" ({hint})" if hint else "")
        if in_ci():
            pytest.fail(message + "; CI must provide it", pytrace=False)
        pytest.skip(message)
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def make_self_signed_cert(directory: Path, common_name: str = SERVER_NAME) -> tuple[Path, Path]:
    """Create fullchain.pem/privkey.pem with openssl, as deploy/README.md describes.

    The certificate covers ``common_name``, ``localhost`` and ``127.0.0.1``.
    """
    openssl = require_executable("openssl", hint="Debian package openssl")
    directory.mkdir(parents=True, exist_ok=True)
    cert = directory / "fullchain.pem"
    key = directory / "privkey.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-nodes", "-days", "2", "-sha256",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(key), "-out", str(cert),
            "-subj", f"/CN={common_name}",
            "-addext", f"subjectAltName=DNS:{common_name},DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _replace_once(text: str, old: str, new: str) -> str:
    count = text.count(old)
    if count != 1:
        raise AssertionError(
            f"deploy/nginx/bff.conf changed: expected {old!r} exactly once, found {count} times; "
            "update tests/deploy/nginx_runner.py to match"
        )
    return text.replace(old, new)


def render_site_config(
    *,
    upstream: str,
    https_port: int,
    http_port: int,
    cert: Path,
    key: Path,
    source: Path = NGINX_EXAMPLE,
) -> str:
    """The example site config with loopback-specific values substituted."""
    text = source.read_text(encoding="utf-8")
    text = _replace_once(text, EXAMPLE_UPSTREAM, f"server {upstream}")
    text = _replace_once(text, EXAMPLE_HTTPS_LISTEN, f"listen 127.0.0.1:{https_port} ssl http2;")
    text = _replace_once(text, EXAMPLE_HTTP_LISTEN, f"listen 127.0.0.1:{http_port};")
    text = _replace_once(text, EXAMPLE_CERT, str(cert))
    text = _replace_once(text, EXAMPLE_KEY, str(key))
    return text


def wrap_main_config(site_config: str, prefix: Path) -> str:
    """A complete nginx.conf: main context + events {} + http { site }."""
    temp = prefix / "temp"
    lines = []
    if os.geteuid() == 0:
        # Test-only: workers would otherwise run as "nobody", which cannot
        # enter pytest's 0700 temporary directories.
        lines.append("user root;")
    lines += [
        "worker_processes 1;",
        "events { worker_connections 256; }",
        "http {",
        f"    access_log {prefix / 'access.log'};",
        f"    client_body_temp_path {temp / 'client_body'};",
        f"    proxy_temp_path {temp / 'proxy'};",
        f"    fastcgi_temp_path {temp / 'fastcgi'};",
        f"    uwsgi_temp_path {temp / 'uwsgi'};",
        f"    scgi_temp_path {temp / 'scgi'};",
        "    default_type application/octet-stream;",
        "",
        site_config,
        "}",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class NginxConfig:
    prefix: Path
    conf: Path
    https_port: int
    http_port: int
    cert: Path
    key: Path

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    def global_directives(self, *, daemon: bool) -> str:
        directives = f"pid {self.prefix / 'nginx.pid'}; error_log {self.error_log} info;"
        if not daemon:
            directives = "daemon off; " + directives
        return directives

    def command(self, nginx: str, *extra: str, daemon: bool = False) -> list[str]:
        return [
            nginx,
            *extra,
            "-p", str(self.prefix),
            "-e", str(self.error_log),
            "-c", str(self.conf),
            "-g", self.global_directives(daemon=daemon),
        ]


def write_config(upstream: str, tmp_path: Path) -> NginxConfig:
    """Render the example for ``upstream`` ("host:port") into ``tmp_path/nginx``."""
    prefix = tmp_path / "nginx"
    (prefix / "temp").mkdir(parents=True, exist_ok=True)
    cert, key = make_self_signed_cert(prefix / "certs")
    https_port = free_port()
    http_port = free_port()
    while http_port == https_port:
        http_port = free_port()
    site = render_site_config(
        upstream=upstream, https_port=https_port, http_port=http_port, cert=cert, key=key
    )
    conf = prefix / "nginx.conf"
    conf.write_text(wrap_main_config(site, prefix), encoding="utf-8")
    return NginxConfig(prefix, conf, https_port, http_port, cert, key)


def nginx_config_test(config: NginxConfig) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on a rendered configuration."""
    nginx = require_executable("nginx", hint="Debian package nginx")
    return subprocess.run(
        config.command(nginx, "-t"), capture_output=True, text=True, timeout=60, check=False
    )


@dataclass(frozen=True)
class RunningNginx:
    """A started nginx.  ``https_port`` is what most callers need."""

    https_port: int
    http_port: int
    cert: Path
    config: NginxConfig
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def ssl_context(self) -> ssl.SSLContext:
        """Client context trusting the generated self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.cert))

    def error_log(self) -> str:
        try:
            return self.config.error_log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def _wait_listening(port: int, process: subprocess.Popen[bytes], config: NginxConfig) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = config.error_log.read_text(errors="replace") if config.error_log.exists() else ""
            raise RuntimeError(f"nginx exited with {process.returncode}:\n{log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on 127.0.0.1:{port} within {STARTUP_TIMEOUT}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: fast shutdown of master and workers
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def start_nginx(upstream_host_port: str, tmp_path: Path) -> Iterator[RunningNginx]:
    """Run deploy/nginx/bff.conf in front of ``upstream_host_port`` over TLS.

    Yields a :class:`RunningNginx` (``.https_port``, ``.base_url``,
    ``.ssl_context()``); nginx is stopped on exit.
    """
    nginx = require_executable("nginx", hint="Debian package nginx")
    last_error: Exception | None = None
    for attempt in range(3):  # free ports can be taken between probe and bind
        config = write_config(upstream_host_port, tmp_path / f"attempt{attempt}")
        process = subprocess.Popen(
            config.command(nginx),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_listening(config.https_port, process, config)
        except RuntimeError as exc:
            _stop(process)
            last_error = exc
            if "Address already in use" in str(exc):
                continue
            raise
        try:
            yield RunningNginx(config.https_port, config.http_port, config.cert, config, process)
        finally:
            _stop(process)
        return
    raise RuntimeError(f"could not start nginx: {last_error}")
