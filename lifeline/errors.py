"""Errors an operator fixes in configuration (settings, policy, calendar and region files).

A process that meets one at start says what and where in one line and exits 2, without a
traceback (`lifeline` CLI)."""


class ConfigurationError(ValueError):
    pass
