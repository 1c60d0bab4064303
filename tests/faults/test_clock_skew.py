"""Clock skew between gateway and provider: tolerated up to BFF_CLOCK_SKEW, refused beyond, loudly.

The gateway's clock is moved (the provider keeps real time), as a drifting
host clock would move it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from tests.support.stack import Stack

from .report import record

SKEW = 30


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def login_log() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("bff.login")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@pytest.mark.parametrize("offset", [-(SKEW - 10), SKEW - 10, 0])
def test_skew_within_the_tolerance_is_accepted(make_stack: Callable[..., Stack], offset: int) -> None:
    stack = make_stack(BFF_CLOCK_SKEW=str(SKEW))
    stack.clock.advance(offset)
    browser = stack.browser()
    assert stack.login(browser).status_code == 302
    assert stack.api(browser, "GET", "/bff/user").json()["sub"] == "alice"


@pytest.mark.parametrize(("offset", "reason", "phrase"), [
    (-(SKEW + 30), "issued_in_future", "in the future (tolerance 30s)"),
    (3600 + SKEW + 30, "expired", "expired"),  # the provider's ID tokens live an hour
])
def test_skew_beyond_the_tolerance_is_refused_with_a_clear_log_line(
    make_stack: Callable[..., Stack], login_log: Lines, offset: int, reason: str, phrase: str
) -> None:
    stack = make_stack(BFF_CLOCK_SKEW=str(SKEW))
    stack.clock.advance(offset)
    browser = stack.browser()
    refused = stack.login(browser)
    assert refused.status_code == 400
    assert "bff" not in browser.cookies
    warnings = [line for line in login_log.lines if "BFF_CLOCK_SKEW=30" in line]
    assert len(warnings) == 1 and phrase in warnings[0] and "NTP" in warnings[0], login_log.lines
    assert any(f"id_token_{reason}" in line for line in login_log.lines)
    stack.clock.advance(-offset)  # the clock is fixed: the next login just works
    assert stack.login(browser).status_code == 302
    if reason == "issued_in_future":
        record(f"Clock skew: gateway {-offset}s behind the provider (BFF_CLOCK_SKEW={SKEW})",
               seen="within the tolerance: nothing; beyond it: login refused with a 400 page "
                    "and one warning naming the offset, BFF_CLOCK_SKEW and NTP",
               recovery_s=0.0, sessions_lost=0,
               notes="the next login after the clock is fixed works")
