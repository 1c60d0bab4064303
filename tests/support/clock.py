"""A clock the tests can move forward: the gateway's notion of now, injected."""

from __future__ import annotations

import time


class MovableClock:
    """Real time plus an offset that tests advance (idle and absolute timeouts)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
