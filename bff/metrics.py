"""Prometheus metrics, one registry per app (no import-time globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bff_requests", "Requests answered, by route and status", ["route", "status"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "bff_upstream_latency_seconds", "Time to the upstream's response headers", ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.logins = Counter(
            "bff_logins", "Completed logins by outcome and failure reason", ["outcome", "reason"],
            registry=self.registry,
        )
        self.refreshes = Counter(
            "bff_token_refreshes", "Refresh grants by outcome", ["outcome"], registry=self.registry
        )
        self.store_errors = Counter(
            "bff_store_errors", "Session store failures", registry=self.registry
        )
        self.provider_errors = Counter(
            "bff_provider_errors", "OpenID Provider failures", ["operation"], registry=self.registry
        )
        self.logouts = Counter(
            "bff_logouts", "Sessions ended, by reason", ["reason"], registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
