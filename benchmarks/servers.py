"""Configure and start each program of the benchmark on free loopback ports.

nginx (the fast upstream), the Python streaming upstream, a private redis-server,
the tests' real OpenID Provider, ``bff serve --workers N`` and Apache with
mod_proxy and mod_auth_openidc. Each writes its log into the run directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.procs import Service, free_port, wait_port
from tests.support.provider import ProviderConfig, ProviderProcess
from tests.support.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[1]
APACHE_MODULES = Path("/usr/lib/apache2/modules")
BFF_CLIENT = "bench-bff"
APACHE_CLIENT = "bench-apache"
CLIENT_SECRET = "bench-client-secret-0123456789abcdef"
SESSION_SECRET = "bench-session-secret-0123456789abcdef-0123456789"
# The same browser everywhere: bff binds sessions to the User-Agent by default.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) bff-benchmark/1.0"


def have_nginx() -> bool:
    return shutil.which("nginx") is not None


def have_apache() -> bool:
    return shutil.which("apache2") is not None and (APACHE_MODULES / "mod_auth_openidc.so").exists()


# --------------------------------------------------------------------------------------
# Upstreams


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/nginx-body;
    proxy_temp_path {dir}/nginx-proxy;
    fastcgi_temp_path {dir}/nginx-fastcgi;
    uwsgi_temp_path {dir}/nginx-uwsgi;
    scgi_temp_path {dir}/nginx-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /json {{
            default_type application/json;
            return 200 '{{"hello":"world","items":[1,2,3],"ok":true}}';
        }}
        location = /auth-echo {{
            default_type text/plain;
            return 200 "$http_authorization";
        }}
    }}
}}
"""


def start_nginx(run_dir: Path) -> tuple[Service, int]:
    port = free_port()
    conf = run_dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=run_dir, port=port))
    service = Service("nginx", ["nginx", "-c", str(conf), "-p", str(run_dir)],
                      run_dir / "nginx.log").start()
    wait_port(port, proc=service.proc)
    return service, port


def start_python_upstream(run_dir: Path, name: str = "pyupstream") -> tuple[Service, int]:
    port = free_port()
    service = Service(name, [sys.executable, "-m", "benchmarks.upstream", "--port", str(port)],
                      run_dir / f"{name}.log", cwd=REPO).start()
    wait_port(port, proc=service.proc)
    return service, port


# --------------------------------------------------------------------------------------
# Redis and the provider


def start_redis() -> RedisServer:
    return RedisServer(extra=["--maxclients", "10000"]).start()


@dataclass
class Ports:
    bff: list[int]
    apache: int


def start_provider(ports: Ports) -> ProviderProcess:
    clients = [
        {
            "client_id": BFF_CLIENT,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [f"http://127.0.0.1:{port}/bff/callback" for port in ports.bff],
            "post_logout_redirect_uris": [f"http://127.0.0.1:{port}/" for port in ports.bff],
        },
        {
            "client_id": APACHE_CLIENT,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [f"http://127.0.0.1:{ports.apache}/api/redirect_uri"],
        },
    ]
    # Long-lived access tokens for the steady rounds: no refresh should land in them.
    return ProviderProcess(ProviderConfig(clients=clients, access_token_ttl=3600)).start()


# --------------------------------------------------------------------------------------
# bff


def bff_config(run_dir: Path, api_upstream: str, stream_upstream: str) -> Path:
    path = run_dir / "bff.toml"
    path.write_text(
        f'[[routes]]\nprefix = "/api"\nupstream = "{api_upstream}"\n\n'
        f'[[routes]]\nprefix = "/stream"\nupstream = "{stream_upstream}"\n'
        "max_body_size = 0\ntimeout = 300\n"
    )
    return path


def start_bff(run_dir: Path, port: int, workers: int, issuer: str, redis_url: str,
              config: Path, *, name: str) -> Service:
    """``bff serve --workers N``."""
    env = {
        **os.environ,
        "BFF_ISSUER": issuer,
        "BFF_CLIENT_ID": BFF_CLIENT,
        "BFF_CLIENT_SECRET": CLIENT_SECRET,
        "BFF_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "BFF_SESSION_SECRET": SESSION_SECRET,
        "BFF_REDIS_URL": redis_url,
        "BFF_CONFIG": str(config),
        "BFF_LOG_FORMAT": "json",
    }
    service = Service(
        name,
        [sys.executable, "-m", "bff", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        run_dir / f"{name}.log", env=env, cwd=REPO,
    ).start()
    wait_port(port, proc=service.proc)
    _wait_healthy(f"http://127.0.0.1:{port}/healthz", service)
    return service


def _wait_healthy(url: str, service: Service, attempts: int = 200) -> None:
    for _ in range(attempts):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if service.proc is not None and service.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{service.name} did not become healthy:\n{service.tail()}")


# --------------------------------------------------------------------------------------
# Apache: mod_proxy alone (/plain/) and behind mod_auth_openidc (/api/, /stream/)


APACHE_CONF = """\
ServerRoot {dir}
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {dir}/apache.pid
DefaultRuntimeDir {dir}
Mutex file:{dir} default
ErrorLog {dir}/apache-error.log
LogLevel warn
User www-data
Group www-data

LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authn_core_module {mods}/mod_authn_core.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule authz_user_module {mods}/mod_authz_user.so
LoadModule headers_module {mods}/mod_headers.so
LoadModule proxy_module {mods}/mod_proxy.so
LoadModule proxy_http_module {mods}/mod_proxy_http.so
LoadModule auth_openidc_module {mods}/mod_auth_openidc.so

# Threads for -c32 and the 100-connection storm from the start, and no process churn:
# 3 x 64 threads up front, room for a 4th, and idle threads are never reaped.
StartServers 3
ServerLimit 4
ThreadsPerChild 64
ThreadLimit 64
MaxRequestWorkers 256
MinSpareThreads 32
MaxSpareThreads 256
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 120
LimitRequestBody 0
Timeout 300

OIDCProviderMetadataURL {issuer}/.well-known/openid-configuration
OIDCClientID {client_id}
OIDCClientSecret {client_secret}
OIDCProviderTokenEndpointAuth client_secret_basic
OIDCRedirectURI http://127.0.0.1:{port}/api/redirect_uri
OIDCCryptoPassphrase {passphrase}
# Without offline_access: mod_auth_openidc re-sends `scope` with every refresh grant, and the
# test provider only grants offline_access through consent, so the refresh would fail with
# invalid_scope. The provider issues a refresh token either way (see tests/oidc_provider).
OIDCScope "openid profile email"
OIDCPKCEMethod S256
OIDCSessionType server-cache
OIDCCacheType redis
OIDCRedisCacheServer 127.0.0.1:{redis_port}
OIDCSessionInactivityTimeout 1800
OIDCSessionMaxDuration 28800
OIDCRefreshAccessTokenBeforeExpiry 60
OIDCPassClaimsAs {pass_claims}
OIDCPassIDTokenAs serialized
OIDCPassUserInfoAs json

<Location /plain/>
    ProxyPass {api}/
</Location>
<Location /api/>
    AuthType openid-connect
    Require valid-user
    RequestHeader set Authorization "Bearer %{{OIDC_access_token}}e"
    ProxyPass {api}/
</Location>
<Location /stream/>
    AuthType openid-connect
    Require valid-user
    RequestHeader set Authorization "Bearer %{{OIDC_access_token}}e"
    ProxyPass {stream}/ timeout=300
</Location>
"""


def start_apache(run_dir: Path, port: int, issuer: str, redis_port: int, api_upstream: str,
                 stream_upstream: str, pass_claims: str = "environment") -> Service:
    conf = run_dir / "apache.conf"
    conf.write_text(APACHE_CONF.format(
        dir=run_dir, port=port, mods=APACHE_MODULES, issuer=issuer, client_id=APACHE_CLIENT,
        client_secret=CLIENT_SECRET, passphrase=secrets.token_hex(16), redis_port=redis_port,
        api=api_upstream, stream=stream_upstream, pass_claims=pass_claims,
    ))
    # The children run as www-data; they only need to read the directory.
    run_dir.chmod(0o755)
    service = Service("apache", ["apache2", "-f", str(conf), "-DFOREGROUND"],
                      run_dir / "apache.log", cwd=run_dir).start()
    wait_port(port, proc=service.proc)
    return service
