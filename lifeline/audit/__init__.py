"""Audit (SPEC §5): a case's records as they stood at a past moment (`asof`), one case's whole
history across the five services as a verifiable bundle (`export`), and a consuming service's
read models rebuilt from the Kafka topics (`kafka_replay`). docs/ARCHITECTURE.md, "Audit"."""
