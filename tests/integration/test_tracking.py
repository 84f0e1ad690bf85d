"""A consumed event is remembered by its own identity, in the same transaction as its effects."""

from __future__ import annotations

import uuid

import pytest

from lifeline.contracts import registry
from lifeline.stores.eventstore import event_store_env
from lifeline.settings import Settings
from services.verification.application import VerificationApplication
from tests.unit.services import submitted_data
from tests.unit.contract_examples import make_id_number

pytestmark = pytest.mark.integration


@pytest.fixture
def consumer_app(infra, namespace, tmp_data_dir):
    """Verification: it handles ApplicationSubmitted by opening one procedure per case."""
    app = VerificationApplication(
        env=event_store_env(Settings.from_env(infra.env(namespace, tmp_data_dir)), "verification"))
    yield app
    app.close()


def opened(app: VerificationApplication) -> int:
    """Procedures opened (the people index's entries written beside them are not counted)."""
    return sum(1 for n in app.recorder.select_notifications(1, 1000) if n.topic.endswith(":Verification.Started"))


def application(sequence: int):
    case_id = f"C-T{uuid.uuid4().hex[:10].upper()}"
    people = [make_id_number("37050219800101" + f"{sequence % 1000:03d}")]
    # The data as intake's own mapping produces it (Application.to_wire).
    data = submitted_data(case_id, people, region_code="370502101001")
    return registry.new_event(
        "ApplicationSubmitted", data, subject=case_id, source="lifeline/intake",
        sequence=sequence, actor={"user_id": "c", "role": "clerk", "org_code": ""},
    )


def test_out_of_order_positions_are_each_processed_once(consumer_app):
    later, earlier = application(500), application(300)
    assert consumer_app.process_cloud_event(later) is True
    # An earlier position from another partition arrives afterwards: still new.
    assert consumer_app.process_cloud_event(earlier) is True
    assert consumer_app.process_cloud_event(earlier) is False
    assert consumer_app.process_cloud_event(later) is False
    assert opened(consumer_app) == 2  # one procedure opened each


def test_effects_and_tracking_are_one_transaction(consumer_app, monkeypatch):
    event = application(700)

    def boom(*args, **kwargs):
        raise RuntimeError("crash while recording")

    monkeypatch.setattr(consumer_app, "_record", boom)
    with pytest.raises(RuntimeError):
        consumer_app.process_cloud_event(event)
    monkeypatch.undo()
    assert not consumer_app.is_processed(event)  # nothing half-done
    assert consumer_app.process_cloud_event(event) is True
    assert opened(consumer_app) == 1
