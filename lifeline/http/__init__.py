"""HTTP edge: authentication, problem+json, Idempotency-Key, the app factory."""
