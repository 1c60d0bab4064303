"""``serve()``: run the gateway under uvicorn, one or more worker processes.

With no ``BFF_REDIS_URL`` the parent process starts the embedded Redis first
and hands its URL to every worker, so all workers share one session store.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Mapping

import uvicorn

from bff.app import BffApp, create_app
from bff.config import Settings, load_settings
from bff.embedded_redis import EmbeddedRedis
from bff.http_server import UVICORN_HTTP
from bff.logs import configure_logging


def app_from_environment() -> BffApp:
    """The uvicorn factory used by ``bff serve`` (each worker builds its own app)."""
    settings = load_settings(os.environ, demo=os.environ.get("BFF_DEMO") == "1")
    configure_logging(settings.log_format)
    return create_app(settings)


def _uvicorn_options(host: str, port: int, settings: Settings) -> dict[str, object]:
    options: dict[str, object] = {
        "host": host,
        "port": port,
        # bff decides whom to trust from BFF_TRUSTED_PROXIES, not uvicorn.
        "proxy_headers": False,
        "forwarded_allow_ips": "",
        "server_header": False,
        "timeout_graceful_shutdown": settings.shutdown_timeout,
        "log_config": None,
        "access_log": False,
        "ws_max_size": 16 * 1024 * 1024,
        # httptools' parser, with a response's writes joined into one send (bff.http_server).
        "http": UVICORN_HTTP,
    }
    if importlib.util.find_spec("uvloop"):
        options["loop"] = "uvloop"
    return options


def serve(env: Mapping[str, str], *, host: str, port: int, workers: int = 1,
          demo: bool = False) -> None:
    """Validate settings, start the embedded Redis if needed, run uvicorn until stopped."""
    settings = load_settings(env, demo=demo)
    configure_logging(settings.log_format)
    with contextlib.ExitStack() as stack:
        if settings.redis_url is None:
            embedded = stack.enter_context(EmbeddedRedis())
            os.environ["BFF_REDIS_URL"] = embedded.url
        for key, value in env.items():
            os.environ.setdefault(key, value)
        if demo:
            os.environ["BFF_DEMO"] = "1"
        options = _uvicorn_options(host, port, settings)
        uvicorn.run("bff.serve:app_from_environment", factory=True, workers=workers,
                    **options)  # type: ignore[arg-type]
