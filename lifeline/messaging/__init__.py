"""Messaging: the Kafka bus, the outbox relay, exactly-once consumers."""
