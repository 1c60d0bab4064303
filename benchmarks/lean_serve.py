"""EXPERIMENT: ``bff serve`` with the upstream transport swapped for ``LeanTransport``.

    python -m benchmarks.lean_serve --host 127.0.0.1 --port 8080 --workers 2

Same settings, same uvicorn options, same app; only ``Forwarder.create`` is
replaced in every worker, through the factory below.
"""

from __future__ import annotations

import argparse
import os
import ssl
from typing import Any

import uvicorn

from bff.config import load_settings
from bff.logs import configure_logging
from bff.proxy import forward
from bff.serve import _uvicorn_options, app_from_environment


def _lean_forwarder(**kwargs: Any) -> forward.Forwarder:
    from benchmarks.lean_transport import LeanTransport

    verify = kwargs.get("verify", True)
    context = verify if isinstance(verify, ssl.SSLContext) else None
    return forward.Forwarder(LeanTransport(
        keepalive_expiry=float(kwargs.get("keepalive_expiry", 5.0)), ssl_context=context))


def lean_app() -> Any:
    """The uvicorn factory: bff's own, with the lean transport."""
    forward.Forwarder.create = staticmethod(_lean_forwarder)  # type: ignore[method-assign]
    return app_from_environment()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    settings = load_settings(os.environ)
    configure_logging(settings.log_format)
    options = _uvicorn_options(args.host, args.port, settings)
    if options.get("http") != "httptools":
        options.pop("h11_max_incomplete_event_size")
    uvicorn.run("benchmarks.lean_serve:lean_app", factory=True, workers=args.workers,
                **options)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
