"""Development and test tooling: process supervisors for the embedded broker and
Redis (`lifeline up`, tests) and for real Apache Kafka and PostgreSQL (tests).
Services never import this package."""
