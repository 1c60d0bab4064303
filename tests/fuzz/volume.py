"""How many generated inputs each fuzz target ran (reported at the end of the run)."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, settings

VOLUME: Counter[str] = Counter()


def tried(target: str) -> None:
    VOLUME[target] += 1


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings for a fuzz target: ``examples`` inputs, no per-input deadline
    (the app talks to Redis and the provider; a busy machine is not a failure)."""
    return settings(max_examples=examples, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
