"""A service process: its runtime (store, relay, consumers, read models)."""
