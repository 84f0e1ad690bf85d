"""Correcting where a household is paid: sealed at once, masked everywhere, the next payment
goes there; a recognition has no account to correct."""

from __future__ import annotations

import json

import pytest

from lifeline.domain.clock import FixedClock
from lifeline.stores.projection import rebuild
from services.payment.application import EntitlementNotFound, PaymentApplication
from services.payment.application import project as payment_project
from services.payment.domain import Entitlement, NothingToPay

from . import CLERK, MEMORY_ENV, SEALER, benefit_data, cloud, new_case_id

NEW_NUMBER = "6228480012345679999"


def approved(app: PaymentApplication, **kw) -> str:
    case_id = new_case_id()
    data = benefit_data(case_id, **kw)
    assert app.process_cloud_event(cloud("BenefitApproved", data, subject=case_id, source="lifeline/verification"))
    return "E-" + data["benefit_id"].split("-", 1)[-1]


@pytest.fixture
def payment():
    app = PaymentApplication(dict(MEMORY_ENV), clock=FixedClock("2026-12-01T09:00:00+08:00"), sealer=SEALER)
    yield app
    app.close()


def test_a_corrected_account_is_sealed_masked_and_paid_into(payment):
    entitlement_id = approved(payment)
    e = payment.correct_account(entitlement_id, {"channel": "PSBC", "account_number": NEW_NUMBER,
                                                 "account_name": "王小明"}, "原账户已销户", CLERK)
    assert e.bank_account_ref == "PSBC:6228***********9999"
    assert SEALER.unseal(e.bank_account.number_sealed) == NEW_NUMBER
    stored = [payment.mapper.to_domain_event(n) for n in payment.recorder.select_notifications(1, 10)]
    (corrected,) = [s for s in stored if isinstance(s, Entitlement.AccountCorrected)]
    assert NEW_NUMBER not in json.dumps([corrected.bank_account.number_masked, corrected.bank_account_ref])
    assert payment.get_entitlement(entitlement_id).bank_account == e.bank_account  # replayed
    views = rebuild(payment, payment_project)
    with views.transaction() as tx:
        assert tx.get("entitlement", entitlement_id)["bank_account_ref"] == "PSBC:6228***********9999"


def test_nothing_to_correct_on_a_recognition_or_an_unknown_entitlement(payment):
    recognition = approved(payment, kind="recognition", benefit_type="low_income", tier=None,
                           monthly_amount_fen=None)
    with pytest.raises(NothingToPay):
        payment.correct_account(recognition, {"channel": "RCC", "account_number": NEW_NUMBER,
                                              "account_name": "王小明"}, "x", CLERK)
    with pytest.raises(EntitlementNotFound):
        payment.get_entitlement("E-NOTHING")
