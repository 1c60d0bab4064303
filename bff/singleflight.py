"""Share one in-flight coroutine between concurrent callers (provider fetches, Redis connects)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Run at most one ``factory()`` at a time; callers arriving meanwhile await it.

    The shared task is shielded, so a caller being cancelled (a client hung
    up) does not cancel the fetch the other callers are waiting for.
    """

    def __init__(self) -> None:
        self._task: asyncio.Future[T] | None = None

    async def run(self, factory: Callable[[], Awaitable[T]]) -> T:
        if self._task is None:
            task = asyncio.ensure_future(factory())
            task.add_done_callback(self._done)
            self._task = task
        return await asyncio.shield(self._task)

    def _done(self, task: asyncio.Future[T]) -> None:
        if self._task is task:
            self._task = None
        if not task.cancelled():
            # Mark the exception retrieved: when every waiter was cancelled no one
            # else reads it, and asyncio would log "exception was never retrieved".
            task.exception()

    async def cancel(self) -> None:
        """Stop the call in flight, if any, and wait until it has stopped."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
