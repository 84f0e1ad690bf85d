"""Read models follow their projection: a service whose `project` changed what it writes
(a higher `views_version`) rebuilds its documents from the log at start, once."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import ProcessingEvent

from lifeline.stores.projection import Projection, compare, rebuild
from lifeline.stores.sidestore import SideStore, SideTx
from services.payment.application import PaymentApplication, project
from services.payment.bootstrap import SPEC

from .services import SYSTEM, benefit_data
from .services.test_applications import make


def _old_project(event: Any, tx: SideTx) -> None:
    """Payment's projection before benefits had kinds."""
    if not hasattr(event, "entitlement_id"):
        return
    doc = {"entitlement_id": event.entitlement_id, "case_id": event.case_id}
    tx.put("entitlement", event.entitlement_id, doc, ref=event.case_id)


def test_a_new_views_version_rebuilds_the_read_models_once():
    app = make(PaymentApplication)
    for n in range(3):
        pe = ProcessingEvent()
        app.record_benefit(benefit_data(f"C-{n}", benefit_id=f"B-{n:020d}"), SYSTEM, pe)
        app._record(pe)
    side = SideStore.in_memory()
    old = Projection(app, side, _old_project, version=1)
    old.ensure_version()
    old.catch_up()
    assert compare(side, rebuild(app, project))  # the old documents lack kind, payable, …

    assert SPEC.views_version > 1
    new = Projection(app, side, project, version=SPEC.views_version)
    assert new.ensure_version() is True
    new.catch_up()
    assert compare(side, rebuild(app, project)) == []
    assert new.ensure_version() is False  # once
    app.close()
