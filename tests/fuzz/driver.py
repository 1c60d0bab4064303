"""The real ASGI app driven in-process, fast enough for thousands of generated requests.

The app runs on its own event loop in a background thread: its lifespan is run
once (Redis client, OIDC client, connection pools), then each request is built
as the ASGI scope uvicorn's httptools protocol would build from the same bytes
on the wire (lower-cased header names, ``path`` percent-decoded from
``raw_path``, the query string raw), and its answer collected. An exception
that escapes the app is reported, as a server would answer it with a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote

T = TypeVar("T")
Headers = Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    escaped: BaseException | None = None

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None

    def all(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == key]

    def json(self) -> Any:
        return json.loads(self.body)


class AppDriver:
    def __init__(self, app: Any, *, server: tuple[str, int] = ("127.0.0.1", 8080)) -> None:
        self.app = app
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._inbox: asyncio.Queue[dict[str, Any]] | None = None
        self._outbox: asyncio.Queue[dict[str, Any]] | None = None
        self._lifespan: asyncio.Future[None] | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> AppDriver:
        self.thread.start()
        self.run(self._startup())
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self._shutdown(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _startup(self) -> None:
        self._inbox, self._outbox = asyncio.Queue(), asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._lifespan = asyncio.ensure_future(self.app(scope, self._inbox.get, self._outbox.put))
        await self._inbox.put({"type": "lifespan.startup"})
        message = await self._outbox.get()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"app did not start: {message}")

    async def _shutdown(self) -> None:
        assert self._inbox is not None and self._outbox is not None and self._lifespan is not None
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._outbox.get()
        await self._lifespan

    def request(self, method: str, raw_path: bytes, *, query: bytes = b"", headers: Headers = (),
                body: bytes = b"", client: tuple[str, int] = ("127.0.0.1", 40000)) -> Answer:
        return self.run(self.arequest(method, raw_path, query=query, headers=headers, body=body,
                                      client=client))

    async def arequest(self, method: str, raw_path: bytes, *, query: bytes = b"", headers: Headers = (),
                       body: bytes = b"", client: tuple[str, int] = ("127.0.0.1", 40000)) -> Answer:
        text = raw_path.decode("ascii")
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "server": self.server, "client": client, "scheme": "http",
            "root_path": "", "method": method,
            "path": unquote(text) if "%" in text else text, "raw_path": raw_path,
            "query_string": query, "headers": [(k.lower(), v) for k, v in headers], "state": {},
        }
        if body and not any(k.lower() == b"content-length" for k, _ in headers):
            scope["headers"].append((b"content-length", str(len(body)).encode()))
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        finished = asyncio.Event()
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop(0)
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    finished.set()

        escaped: BaseException | None = None
        try:
            await asyncio.wait_for(self.app(scope, receive, send), 30)
        except Exception as exc:
            escaped = exc
        finally:
            finished.set()
        status = int(start.get("status", 500)) if escaped is None else 500
        return Answer(status, list(start.get("headers", [])), b"".join(chunks), escaped)
