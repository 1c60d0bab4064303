"""Start a real OpenID Provider (panva/oidc-provider, tests/oidc_provider/) and log in through it.

The provider runs as a Node.js subprocess configured from a JSON file. It is entirely in memory:
every ProviderProcess is a fresh OP with freshly generated signing keys.

Typical use::

    with ProviderProcess(ProviderConfig(clients=[{...}])) as op:
        ...  # point the gateway at op.issuer
        response = login_through_provider(client, f"{gateway}/bff/login")
        assert op.stats()["grants"]["authorization_code"] == 1
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import urljoin, urlsplit

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
PROVIDER_DIR = REPO_ROOT / "tests" / "oidc_provider"
SERVER_SCRIPT = PROVIDER_DIR / "server.mjs"
START_TIMEOUT = 20.0


class ProviderError(RuntimeError):
    """The provider could not be started or an admin request failed."""


class LoginFlowError(RuntimeError):
    """The login flow through the provider did not go as expected."""


def find_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ProviderConfig:
    """Mirrors the JSON config read by tests/oidc_provider/server.mjs.

    ``port`` 0 means "pick a free port at start"; ``issuer`` None means ``http://127.0.0.1:<port>``.
    Each entry of ``clients`` is oidc-provider client metadata (client_id, client_secret,
    redirect_uris, post_logout_redirect_uris, grant_types, token_endpoint_auth_method,
    backchannel_logout_uri, backchannel_logout_session_required, id_token_signed_response_alg...).
    Clients default to grant_types ["authorization_code", "refresh_token"], response_types
    ["code"], client_secret_basic and the first of ``signing_algs``.
    """

    port: int = 0
    issuer: str | None = None
    clients: list[dict[str, Any]] = field(default_factory=list)
    access_token_ttl: int = 300
    id_token_ttl: int = 3600
    refresh_token_ttl: int = 86400
    session_ttl: int = 86400
    rotate_refresh_token: bool = False
    clock_tolerance: int = 0
    signing_algs: list[str] = field(default_factory=lambda: ["RS256"])
    conform_id_token_claims: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["issuer"] is None:
            data["issuer"] = f"http://127.0.0.1:{self.port}"
        return data


class ProviderProcess:
    """A running oidc-provider subprocess; also a context manager."""

    def __init__(self, config: ProviderConfig | None = None) -> None:
        self.config = config or ProviderConfig()
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._stdout: IO[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._issuer: str | None = None
        self.startup_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, config: ProviderConfig | None = None) -> Self:
        if self._proc is not None:
            raise ProviderError("provider already started")
        if config is not None:
            self.config = config
        if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            raise ProviderError(
                f"{PROVIDER_DIR / 'node_modules'} is missing: "
                "run `npm ci --prefix tests/oidc_provider`"
            )
        node = shutil.which("node")
        if node is None:
            raise ProviderError("node (Node.js 20+) is not on PATH")
        if self.config.port == 0:
            self.config.port = find_free_port()

        self._tmpdir = tempfile.TemporaryDirectory(prefix="oidc-provider-")
        tmp = Path(self._tmpdir.name)
        config_path = tmp / "config.json"
        config_path.write_text(json.dumps(self.config.to_json()))
        self._stdout = (tmp / "stdout.log").open("w+b")
        self._stderr = (tmp / "stderr.log").open("w+b")
        started = time.monotonic()
        self._proc = subprocess.Popen(
            [node, str(SERVER_SCRIPT), str(config_path)],
            cwd=PROVIDER_DIR,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
        )
        try:
            self._issuer = self._wait_ready(started + START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, deadline: float) -> str:
        assert self._proc is not None and self._stdout is not None
        while True:
            self._stdout.seek(0)
            for line in self._stdout.read().decode(errors="replace").splitlines():
                if line.startswith("READY "):
                    return line.removeprefix("READY ").strip()
            code = self._proc.poll()
            if code is not None or time.monotonic() > deadline:
                why = (
                    f"exited with code {code}"
                    if code is not None
                    else f"not ready after {START_TIMEOUT:g}s"
                )
                raise ProviderError(f"oidc-provider {why}; stderr:\n{self.stderr_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for stream in (self._stdout, self._stderr):
            if stream is not None:
                stream.close()
        self._stdout = self._stderr = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        self._issuer = None

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    # -- facts -------------------------------------------------------------------------------
    @property
    def issuer(self) -> str:
        if self._issuer is None:
            raise ProviderError("provider is not running")
        return self._issuer

    @property
    def port(self) -> int:
        return self.config.port

    def discovery(self) -> dict[str, Any]:
        """The provider's /.well-known/openid-configuration document."""
        result: dict[str, Any] = self._admin("GET", "/.well-known/openid-configuration")
        return result

    # -- test-only admin endpoints -----------------------------------------------------------
    def _admin(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> Any:
        response = httpx.request(method, self.issuer + path, json=body, timeout=10)
        if response.status_code not in ok:
            raise ProviderError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def stats(self) -> dict[str, Any]:
        """Counters since start or the last reset::

        {"grants": {"authorization_code": n, "refresh_token": n},
         "grant_errors": [{"error", "error_description", "grant_type"}],
         "revocations": n, "end_sessions": n,
         "backchannel": [{"client_id", "sub", "sid", "ok", "error"?}]}
        """
        result: dict[str, Any] = self._admin("GET", "/__test/stats")
        return result

    def reset_stats(self) -> None:
        self._admin("POST", "/__test/reset")

    def send_backchannel_logout(
        self, client_id: str, sub: str, sid: str | None = None
    ) -> dict[str, Any]:
        """Make the provider POST a logout token to the client's backchannel_logout_uri.

        Returns the outcome ``{"client_id", "sub", "sid", "ok", "error"?}``; does not raise when the
        receiver refused it (``ok`` is then False).
        """
        body = {"client_id": client_id, "sub": sub, "sid": sid}
        result: dict[str, Any] = self._admin(
            "POST", "/__test/backchannel-logout", body, ok=(200, 500)
        )
        return result

    def token_active(self, token: str) -> bool:
        """Whether the provider still holds ``token`` (access or refresh) as valid: known, not
        expired, not consumed (rotated), its grant not revoked."""
        return bool(self._admin("POST", "/__test/token-active", {"token": token})["active"])

    def update_settings(self, **settings: int | bool) -> dict[str, Any]:
        """Change at runtime any of access_token_ttl, id_token_ttl, refresh_token_ttl, session_ttl
        (positive ints) or rotate_refresh_token (bool); applies to tokens issued afterwards."""
        result: dict[str, Any] = self._admin("POST", "/__test/config", dict(settings))
        return result

    def set_access_token_ttl(self, seconds: int) -> None:
        self.update_settings(access_token_ttl=seconds)


# ------------------------------------------------------------------------------------------------
# Driving the devInteractions login (and, if ever shown, consent) pages.


@dataclass
class _Form:
    action: str | None
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self._current: _Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._current = _Form(attr.get("action"), attr.get("method", "get").lower())
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and attr.get("name"):
            if attr.get("type", "text").lower() not in ("submit", "button", "image", "reset"):
                self._current.fields[attr["name"]] = attr.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


@dataclass(frozen=True)
class _Request:
    method: str
    url: str
    data: dict[str, str] | None = None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


_MAX_STEPS = 20


def _login_steps(
    authorize_url: str, username: str, password: str
) -> Generator[_Request, httpx.Response, str]:
    """Sans-IO driver: yields the requests to make, is sent their responses, returns the URL of the
    first redirect leaving the provider's origin (the client's redirect_uri with code & state)."""
    provider = _origin(authorize_url)
    request = _Request("GET", authorize_url)
    for _ in range(_MAX_STEPS):
        response = yield request
        if response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            if _origin(target) != provider:
                return target
            request = _Request("GET", target)
            continue
        content_type = response.headers.get("content-type", "")
        if response.status_code != 200 or "text/html" not in content_type:
            raise LoginFlowError(
                f"{request.method} {request.url} -> {response.status_code} {content_type}: "
                f"{response.text[:2000]}"
            )
        parser = _FormParser()
        parser.feed(response.text)
        parser.close()
        forms = [form for form in parser.forms if form.method == "post" and "prompt" in form.fields]
        if len(forms) != 1:
            raise LoginFlowError(
                f"expected one login/consent form at {response.url}: {response.text[:2000]}"
            )
        form = forms[0]
        data = dict(form.fields)
        if data["prompt"] == "login":
            data["login"] = username
            data["password"] = password
        elif data["prompt"] != "consent":
            raise LoginFlowError(
                f"unexpected interaction prompt {data['prompt']!r} at {response.url}"
            )
        request = _Request("POST", urljoin(str(response.url), form.action or ""), data)
    raise LoginFlowError(f"no redirect out of the provider after {_MAX_STEPS} requests")


def follow_login(
    client: httpx.Client, authorize_url: str, username: str = "alice", password: str = "password"
) -> str:
    """Starting at the provider's authorization URL, log in as ``username`` (any name works; it
    becomes ``sub``) and return the URL the provider finally redirects to outside its origin."""
    steps = _login_steps(authorize_url, username, password)
    request = next(steps)
    while True:
        response = client.request(
            request.method, request.url, data=request.data, follow_redirects=False
        )
        try:
            request = steps.send(response)
        except StopIteration as done:
            result: str = done.value
            return result


async def afollow_login(
    client: httpx.AsyncClient,
    authorize_url: str,
    username: str = "alice",
    password: str = "password",
) -> str:
    """Async twin of :func:`follow_login`."""
    steps = _login_steps(authorize_url, username, password)
    request = next(steps)
    while True:
        response = await client.request(
            request.method, request.url, data=request.data, follow_redirects=False
        )
        try:
            request = steps.send(response)
        except StopIteration as done:
            result: str = done.value
            return result


def _authorize_url(start: httpx.Response) -> str:
    if not start.is_redirect:
        raise LoginFlowError(
            f"{start.request.url} did not redirect: {start.status_code} {start.text[:2000]}"
        )
    return urljoin(str(start.url), start.headers["location"])


def login_through_provider(
    client: httpx.Client, start_url: str, username: str = "alice", password: str = "password"
) -> httpx.Response:
    """Log in through a gateway: GET ``start_url`` (e.g. ``…/bff/login?…``), which must redirect to
    the provider; log in there; then request the gateway callback the provider redirects to, with
    the same client, and return that response without following it.

    ``client`` needs a cookie jar (the default) and should not follow redirects itself. Beware that
    cookies ignore ports: gateway and provider on the same host share the jar's cookies.
    """
    authorize_url = _authorize_url(client.get(start_url, follow_redirects=False))
    callback_url = follow_login(client, authorize_url, username, password)
    return client.get(callback_url, follow_redirects=False)


async def alogin_through_provider(
    client: httpx.AsyncClient, start_url: str, username: str = "alice", password: str = "password"
) -> httpx.Response:
    """Async twin of :func:`login_through_provider`."""
    authorize_url = _authorize_url(await client.get(start_url, follow_redirects=False))
    callback_url = await afollow_login(client, authorize_url, username, password)
    return await client.get(callback_url, follow_redirects=False)


def logout_at_provider(client: httpx.Client, issuer: str) -> httpx.Response:
    """End the browser's session at the provider itself (its own logout page and confirm form).

    The provider then sends back-channel logout tokens to the clients of that session.
    """
    page = client.get(f"{issuer}/session/end")
    if page.status_code != 200:
        raise LoginFlowError(f"end-session page answered {page.status_code}")
    parser = _FormParser()
    parser.feed(page.text)
    if not parser.forms:
        raise LoginFlowError("no confirm form on the provider's end-session page")
    form = parser.forms[0]
    fields = {**form.fields, "logout": "yes"}
    return client.post(urljoin(str(page.url), form.action or ""), data=fields)
