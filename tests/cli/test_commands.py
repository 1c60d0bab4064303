"""The bff command: keygen, configuration errors, check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.stack import CLIENT_ID, CLIENT_SECRET, SECRET, Infra


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BFF_")}
    return subprocess.run([sys.executable, "-m", "bff", *args], env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=60, cwd=cwd)


def test_keygen_prints_a_fresh_long_secret_each_time() -> None:
    first, second = run("keygen"), run("keygen")
    assert first.returncode == 0
    assert len(first.stdout.strip()) >= 43
    assert first.stdout != second.stdout


def test_serve_refuses_invalid_configuration_with_one_line_per_problem(tmp_path: Path) -> None:
    result = run("serve", env={"BFF_ISSUER": "ftp://nope", "BFF_SESSION_SECRET": "short",
                               "BFF_SESSION_IDLE_TIMEOUT": "soon", "BFF_ROUTES": "/api"},
                 cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(lines) >= 6
    text = result.stderr
    for expected in ("BFF_ISSUER", "BFF_CLIENT_ID", "BFF_PUBLIC_URL", "BFF_SESSION_SECRET",
                     "BFF_SESSION_IDLE_TIMEOUT", "BFF_ROUTES"):
        assert expected in text
    assert "Traceback" not in text


def test_config_file_problems_are_reported_too(tmp_path: Path) -> None:
    config = tmp_path / "bff.toml"
    config.write_text('[[routes]]\nprefix = "api"\nupstream = "http://x"\ntoken = "sometimes"\n')
    result = run("check", env={"BFF_CONFIG": str(config)}, cwd=tmp_path)
    assert result.returncode == 2
    assert "token must be required, optional or none" in result.stderr
    assert "route prefix must be a plain path" in result.stderr


def test_env_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "custom.env").write_text("BFF_ISSUER=http://127.0.0.1:1\n")
    result = run("check", "--env-file", str(tmp_path / "custom.env"), cwd=tmp_path)
    assert result.returncode == 2
    assert "BFF_ISSUER" not in result.stderr and "BFF_CLIENT_ID is required" in result.stderr


def test_check_reports_reachable_parts_and_exits_zero(infra: Infra, tmp_path: Path) -> None:
    result = run("check", env={
        "BFF_ISSUER": infra.provider.issuer, "BFF_CLIENT_ID": CLIENT_ID,
        "BFF_CLIENT_SECRET": CLIENT_SECRET, "BFF_PUBLIC_URL": "https://app.example",
        "BFF_SESSION_SECRET": SECRET, "BFF_REDIS_URL": infra.redis.url,
        "BFF_ROUTES": f"/idp={infra.provider.issuer}",
    }, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "provider discovery" in result.stdout and "all checks passed" in result.stdout


def test_check_fails_clearly_when_redis_and_provider_are_down(tmp_path: Path) -> None:
    result = run("check", env={
        "BFF_ISSUER": "http://127.0.0.1:9", "BFF_CLIENT_ID": "x",
        "BFF_PUBLIC_URL": "https://app.example", "BFF_SESSION_SECRET": SECRET,
        "BFF_REDIS_URL": "redis://127.0.0.1:9/0",
    }, cwd=tmp_path)
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "redis" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_extra_auth_params_cannot_override_protocol_parameters(tmp_path: Path) -> None:
    result = run("check", env={"BFF_EXTRA_AUTH_PARAMS": "redirect_uri=https://evil.example"},
                 cwd=tmp_path)
    assert result.returncode == 2
    assert "BFF_EXTRA_AUTH_PARAMS must not set 'redirect_uri'" in result.stderr


def test_an_upstream_address_with_a_hidden_line_break_is_refused(tmp_path: Path) -> None:
    # urlsplit drops "\n" silently; on a request line it would end the headers early.
    config = tmp_path / "bff.toml"
    config.write_text('[[routes]]\nprefix = "/api"\nupstream = "http://127.0.0.1:8080\\n/api"\n')
    result = run("check", env={"BFF_CONFIG": str(config)}, cwd=tmp_path)
    assert result.returncode == 2
    assert "must not contain spaces or control characters" in result.stderr
    assert "Traceback" not in result.stderr
