"""Shared fixtures: the real provider and private Redis for the session, a gateway per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.support.stack import Infra, Stack, running_stack, start_infra


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    shared = start_infra()
    try:
        yield shared
    finally:
        shared.provider.stop()
        shared.redis.cleanup()


@pytest.fixture
def make_stack(infra: Infra) -> Iterator[Callable[..., Stack]]:
    """Start a gateway with extra BFF_* settings; provider settings reset after the test."""
    infra.redis.client().flushall()
    infra.provider.reset_stats()
    with ExitStack() as stack:
        def make(**overrides: Any) -> Stack:
            return stack.enter_context(running_stack(infra, **overrides))

        yield make
    infra.provider.update_settings(access_token_ttl=300, rotate_refresh_token=False)


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack()
