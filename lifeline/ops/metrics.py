"""Prometheus metrics every service exposes at /metrics."""

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry()

CONSUMED = Counter(
    "lifeline_events_consumed_total",
    "Consumed events by outcome: processed, duplicate, ignored, dead_lettered",
    ["service", "event", "outcome"],
    registry=REGISTRY,
)
PUBLISHED = Counter(
    "lifeline_events_published_total",
    "Events relayed from the service's log to Kafka",
    ["service", "event"],
    registry=REGISTRY,
)
OUTBOX_POSITION = Gauge(
    "lifeline_outbox_position", "Last log position acknowledged by Kafka", ["service"], registry=REGISTRY
)
HTTP_REQUESTS = Counter(
    "lifeline_http_requests_total", "HTTP requests", ["service", "method", "status"], registry=REGISTRY
)
