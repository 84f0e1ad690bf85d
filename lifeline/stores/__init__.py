"""Stores: event-store configuration, the process-application base, read models."""
