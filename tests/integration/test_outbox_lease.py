"""With several replicas, one relay at a time publishes; a dead one's lease runs out."""

from __future__ import annotations

import pytest

from lifeline.stores.sidestore import SideStore
from lifeline.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def two_replicas(infra, namespace, tmp_data_dir):
    settings = Settings.from_env(infra.env(namespace, tmp_data_dir))
    a, b = SideStore(settings, "intake"), SideStore(settings, "intake")  # same store, two handles
    yield a, b
    a.close()
    b.close()


def lease(store: SideStore, holder: str, now: float, ttl: float = 10.0) -> bool:
    with store.transaction() as tx:
        return tx.take_lease("outbox", holder, now, ttl)


def test_one_holder_at_a_time_and_takeover_after_expiry(two_replicas):
    a, b = two_replicas
    assert lease(a, "replica-a", now=1000.0)
    assert not lease(b, "replica-b", now=1001.0)  # a holds it
    assert lease(a, "replica-a", now=1005.0)  # renewal pushes expiry to 1015
    assert not lease(b, "replica-b", now=1014.9)
    assert lease(b, "replica-b", now=1015.1)  # a went silent (kill -9): b takes over
    assert not lease(a, "replica-a", now=1016.0)


def test_a_resigned_lease_is_free_at_once(two_replicas):
    a, b = two_replicas
    assert lease(a, "replica-a", now=2000.0)
    with a.transaction() as tx:
        tx.release_lease("outbox", "replica-a")
    assert lease(b, "replica-b", now=2000.1)
    with a.transaction() as tx:
        tx.release_lease("outbox", "replica-a")  # not its lease any more: no effect
    assert not lease(a, "replica-a", now=2000.2)
