"""Logging: JSON lines (serve) or readable console lines (demo), and the audit trail.

Audit events go to the ``bff.audit`` logger with their fields in ``extra``;
they carry the session handle, never the cookie value or a token.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

AUDIT = logging.getLogger("bff.audit")
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def audit(event: str, **fields: Any) -> None:
    """Emit one audit event (``login.success``, ``logout.local``, ...)."""
    AUDIT.info(event, extra={"event": event, **{k: v for k, v in fields.items() if v is not None}})


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = _extras(record)
        extras.pop("event", None)
        tail = " ".join(f"{k}={v}" for k, v in extras.items())
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if tail:
            line += f"  {tail}"
        if record.exc_info and record.levelno >= logging.ERROR:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(fmt: str, level: int = logging.INFO) -> None:
    """Route bff's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger("bff")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = [handler]


def redact(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers safe to log: cookies and credentials masked."""
    hidden = {"cookie", "authorization", "set-cookie", "proxy-authorization"}
    return {k: ("<redacted>" if k.lower() in hidden else v) for k, v in headers.items()}
