"""Prometheus metrics every service exposes at /metrics."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
GROUP_COMMIT_SIZE = Histogram(
    "lifeline_group_commit_saves", "Saves recorded together in one transaction (lifeline/stores/groupcommit.py)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=REGISTRY,
)
SHED = Counter(
    "lifeline_http_shed_total", "Requests answered 503 because the service was at capacity", ["service"],
    registry=REGISTRY,
)
