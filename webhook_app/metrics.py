"""Prometheus metrics of the webhook process, in a registry of its own (one per app, so tests can build many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WebhookMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter(
            "webhook_events_received_total", "Verified webhook deliveries", ["provider", "type"], registry=self.registry
        )
        self.outcomes = Counter(
            "webhook_events_total",
            "Webhook events by outcome (processed, ignored, failed, dead, duplicate)",
            ["provider", "type", "outcome"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "webhook_requests_rejected_total",
            "Deliveries refused before storing",
            ["provider", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "webhook_processing_seconds",
            "Receipt to processed, per event",
            ["provider"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 30, 300),
        )
        self.backlog = Gauge(
            "webhook_inbox_backlog",
            "Inbox events by status (pending, failed, dead)",
            ["status"],
            registry=self.registry,
        )

    def set_backlog(self, counts: dict[str, int]) -> None:
        for status in ("pending", "failed", "dead"):
            self.backlog.labels(status).set(counts.get(status, 0))
