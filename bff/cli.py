"""The ``bff`` command: argument parsing only; the work is in serve, demo and check."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence

from dotenv import dotenv_values

from bff.errors import BffError, ConfigError


def _environment(env_file: str | None) -> dict[str, str]:
    """The process environment over an optional .env file (the environment wins)."""
    values: dict[str, str] = {}
    path = env_file or (".env" if os.path.exists(".env") else None)
    if path:
        if not os.path.exists(path):
            raise ConfigError([f"--env-file: {path!r} does not exist"])
        values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    values.update(os.environ)
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bff", description="OpenID Connect backend-for-frontend gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the production gateway")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--env-file")
    demo = sub.add_parser("demo", help="everything on one machine, no set-up")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    check = sub.add_parser("check", help="validate configuration and reachability")
    check.add_argument("--env-file")
    sub.add_parser("keygen", help="print a fresh secret for BFF_SESSION_SECRET")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "keygen":
            print(secrets.token_urlsafe(48))
            return 0
        if args.command == "serve":
            from bff.serve import serve

            if args.workers < 1:
                raise ConfigError(["--workers must be at least 1"])
            serve(_environment(args.env_file), host=args.host, port=args.port,
                  workers=args.workers)
            return 0
        if args.command == "demo":
            from bff.demo import run_demo

            return run_demo(host=args.host, port=args.port)
        if args.command == "check":
            from bff.check import run_check

            return run_check(_environment(args.env_file))
    except ConfigError as exc:
        print("bff: invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    except BffError as exc:
        print(f"bff: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2
