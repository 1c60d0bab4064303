"""What each fault test measured, for the terminal summary and test-artifacts/faults-report.json."""

from __future__ import annotations

from typing import Any

RESULTS: list[dict[str, Any]] = []


def record(fault: str, *, seen: str, recovery_s: float, sessions_lost: int, notes: str = "") -> None:
    RESULTS.append({"fault": fault, "seen": seen, "recovery_s": round(recovery_s, 3),
                    "sessions_lost": sessions_lost, "notes": notes})
