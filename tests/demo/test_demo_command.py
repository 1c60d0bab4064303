"""``python -m bff demo``: one command, no configuration, a working gateway; Ctrl-C stops it all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from tests.support.provider import REPO_ROOT, find_free_port

from .mock_provider import end_provider_session, login

START_TIMEOUT = 30


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    url: str
    stdout: list[str]
    stderr_path: Path
    pump: threading.Thread

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return "".join(self.stdout)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFF_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_demo(port: int, tmp_path: Path) -> Demo:
    stderr_path = tmp_path / "demo.stderr"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bff", "demo", "--port", str(port)], cwd=REPO_ROOT,
            env=_clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            text=True,
        )
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C to stop" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    demo = Demo(proc, f"http://127.0.0.1:{port}", lines, stderr_path, reader)
    if not ready.wait(START_TIMEOUT) or proc.poll() is not None:
        finish(demo)
        pytest.fail(f"bff demo did not start:\n{''.join(lines)}\n{stderr_path.read_text()}")
    return demo


def finish(demo: Demo) -> None:
    """Kill the demo if it still runs; close its pipe once the reader has seen its end."""
    if demo.proc.poll() is None:
        demo.proc.kill()
    demo.proc.wait()
    demo.pump.join(5)
    if demo.proc.stdout is not None:
        demo.proc.stdout.close()


def stop(demo: Demo, timeout: float = 20) -> int:
    demo.proc.send_signal(signal.SIGINT)
    try:
        return demo.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        finish(demo)
        pytest.fail(f"bff demo did not stop on SIGINT:\n{demo.stderr()}")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = start_demo(find_free_port(), tmp_path)
    try:
        yield running
    finally:
        finish(running)


def test_demo_prints_the_url_to_open_and_serves_the_spa_under_a_strict_csp(demo: Demo) -> None:
    assert f"open {demo.url}/" in demo.output()
    page = httpx.get(demo.url + "/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    scripts = re.findall(r"<script\b[^>]*>", page.text)
    assert scripts and all('src="' in tag for tag in scripts)  # no inline script
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)  # nothing external
    script = httpx.get(demo.url + "/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "async function bff(" in script.text and '"X-CSRF": "1"' in script.text


def test_one_command_demo_logs_in_calls_the_api_and_logs_out(demo: Demo) -> None:
    with httpx.Client(timeout=10) as browser:
        done = login(browser, demo.url, "alice", "?returnTo=/")
        assert done.status_code == 302 and done.headers["location"] == "/"
        assert browser.cookies.get("bff")
        csrf = {"X-CSRF": "1"}

        user = browser.get(f"{demo.url}/bff/user", headers=csrf)
        assert user.status_code == 200
        assert user.json()["sub"] == "alice" and user.json()["name"] == "Alice Example"

        whoami = browser.get(f"{demo.url}/api/whoami", headers=csrf)
        assert whoami.status_code == 200
        token = whoami.json()["token"]
        assert token["kind"] == "jwt" and token["signature_verified"] is False
        assert token["claims"]["sub"] == "alice"
        assert token["claims"]["exp"] - token["claims"]["iat"] == 40
        assert whoami.json()["request"]["cookie_received"] is False

        assert browser.post(f"{demo.url}/api/items", json={"text": "hi"}).status_code == 403
        added = browser.post(f"{demo.url}/api/items", json={"text": "hi"}, headers=csrf)
        assert added.status_code == 201 and added.json()["author"] == "Alice Example"

        sessions = browser.get(f"{demo.url}/bff/sessions", headers=csrf).json()["sessions"]
        assert len(sessions) == 1 and sessions[0]["current"] is True

        logout = browser.post(f"{demo.url}/bff/logout", headers=csrf)
        assert logout.status_code == 200
        back = end_provider_session(browser, logout.json()["logout_url"])
        assert back == f"{demo.url}/"
        assert not browser.cookies.get("bff")
        assert browser.get(f"{demo.url}/bff/user", headers=csrf).status_code == 401
        assert browser.get(f"{demo.url}/api/whoami", headers=csrf).status_code == 401
    assert "login.success" in demo.stderr()


def test_create_account_link_reaches_the_providers_sign_up_page(demo: Demo) -> None:
    with httpx.Client(timeout=10) as browser:
        start = browser.get(f"{demo.url}/bff/login?prompt=create")
        page = browser.get(start.headers["location"])
        assert "Create an account" in page.text
        assert "cdn." not in page.text  # the provider's pages work offline too
        assert login(browser, demo.url, "carol", "?prompt=create").status_code == 302
        user = browser.get(f"{demo.url}/bff/user", headers={"X-CSRF": "1"}).json()
        assert user["sub"] == "carol"


def test_ctrl_c_stops_everything_with_exit_code_0_and_no_process_left(demo: Demo) -> None:
    children = psutil.Process(demo.proc.pid).children(recursive=True)
    assert any("redis-server" in " ".join(child.cmdline()) for child in children)
    with httpx.Client(timeout=10) as browser:
        login(browser, demo.url)
    started = time.monotonic()
    assert stop(demo) == 0, demo.stderr()
    assert time.monotonic() - started < 10
    demo.pump.join(5)
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, [child.cmdline() for child in alive]
    assert "bff demo stopped." in demo.output()
    assert "Traceback" not in demo.stderr()
    with pytest.raises(httpx.TransportError):
        httpx.get(demo.url + "/healthz", timeout=2)


def test_a_busy_port_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bff", "demo", "--port", str(port)], cwd=REPO_ROOT,
            env=_clean_env(), capture_output=True, text=True, timeout=60, check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr and "Traceback" not in result.stderr
