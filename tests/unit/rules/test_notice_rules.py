"""Notices' delivery rules (docs/RULES.md §5): an SMS never carries an ID number or an amount;
a notice is delivered once per channel; a failed SMS waits its backoff on the wall clock and
fails for good when told; the household's mobile number is a mainland mobile, travels sealed
and is shown masked. Pure functions and aggregates, no store (the use cases end to end in
process: tests/unit/services/test_notice_delivery.py)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import pytest

from lifeline.contracts import registry
from lifeline.domain.values import Application, ContactPhone
from lifeline.rules.periods import SHANGHAI
from lifeline.stores.sealing import Sealer
from services.notify.delivery import Delivery, DeliveryNotAllowed, sms_text, sms_text_problems
from services.notify.domain import LEGAL_NAMES, Notice
from services.notify.outbound import OUTBOUND
from tests.unit.services import CLERK, VILLAGE, application, pid

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)
PHONE = "13812345678"
ID_NUMBER = pid(77)
SEALER = Sealer("test-secret")


# --- the SMS text: never an ID number, never an amount -----------------------------------------
@pytest.mark.parametrize("kind", list(LEGAL_NAMES))
def test_an_sms_says_whose_notice_which_case_and_where_to_read_it_nothing_else(kind):
    case_id = "C-0123456789ABCDEF0123"
    text = sms_text(LEGAL_NAMES[kind], "王*明", case_id, VILLAGE)
    assert sms_text_problems(text, case_id) == []
    assert LEGAL_NAMES[kind] in text and case_id in text and "王*明" in text
    assert "东营区" in text and "社会救助窗口" in text and "app" in text
    assert not any(ch.isdigit() for ch in text.replace(case_id, ""))


@pytest.mark.parametrize(("text", "problems"), [
    (f"王*明：您的申请已受理，身份证号 {ID_NUMBER}。", ["id_number", "digits"]),
    (f"王*明：身份证号{pid(4)[:17].lower()}x。", ["id_number", "digits"]),  # check character X, in lower case
    ("王*明：每月救助金2060.00元，请查收。", ["digits", "money"]),
    ("王*明：每月救助金２０６０元。", ["digits", "money"]),
    ("王*明：本月发放1500。", ["digits"]),
    ("王*明：发放救助金贰仟零陆拾元整。", ["money"]),
    ("王*明：发放¥2060。", ["digits", "money"]),
    ("王*明：救助金 RMB 2060。", ["digits", "money"]),
    ("王*明：如有疑问请致电 13812345678。", ["digits"]),
    ("王*明：旧身份证号 370502800501123。", ["digits"]),
])
def test_anything_stating_an_id_number_or_money_is_refused(text, problems):
    assert sms_text_problems(text, "C-0123456789ABCDEF0123") == problems


def test_a_case_number_with_the_form_of_an_id_number_is_left_out():
    case_id = f"C-{ID_NUMBER}"
    text = sms_text("受理通知书", "王*明", case_id, VILLAGE)
    assert ID_NUMBER not in text and "受理通知书" in text
    assert sms_text_problems(text, case_id) == []


def test_every_notice_text_would_be_refused_as_an_sms():
    """Why the SMS is its own short text: the notices' bodies state amounts."""
    from services.notify.domain import change_text

    body = change_text("王*明", "C-1", "BenefitAdjusted", "2027-01", "收入变化", 150000, 206000)
    assert "money" in sms_text_problems(body, "C-1")


# --- the state machine -------------------------------------------------------------------------------
def notice(case_id: str = "C-T1", kind: str = "acceptance") -> Notice:
    return Notice.issue(case_id, kind, "王*明", VILLAGE, "正文", "5f0c6f1e-3f1d-4a53-9d1e-2b7c1f0d8a11",
                        NOW.isoformat(), CLERK)


def test_a_delivery_is_delivered_once():
    d = Delivery.schedule(notice(), "letter", None, CLERK)
    assert (d.state, d.attempts, d.idempotency_key) == ("pending", 0, f"{d.notice_id}:letter")
    d.deliver("PRINT-20261125-370502101", NOW, CLERK)
    assert (d.state, d.attempts, d.reference) == ("delivered", 1, "PRINT-20261125-370502101")
    with pytest.raises(DeliveryNotAllowed) as refused:
        d.deliver("PRINT-AGAIN", NOW, CLERK)
    assert refused.value.rule == "already_delivered"
    with pytest.raises(DeliveryNotAllowed):
        d.fail("late", NOW, 1.0, CLERK)
    delivered = d.collect_events()[-1]
    assert OUTBOUND(delivered).data == {
        "notice_id": d.notice_id, "case_id": "C-T1", "channel": "letter", "attempt": 1,
        "reference": "PRINT-20261125-370502101", "delivered_at": NOW.isoformat()}
    registry.validate_data("NoticeDelivered", OUTBOUND(delivered).data)


def test_a_failed_sms_waits_its_backoff_on_the_wall_clock_and_fails_for_good_when_told():
    d = Delivery.schedule(notice(), "sms", "138****5678", CLERK)
    assert d.due(0.0, 300)
    d.fail("gateway_unavailable: HTTP 503", NOW, 1.0, CLERK)
    failed_at = d.failed_wall
    assert d.state == "pending" and d.attempts == 1
    assert not d.due(failed_at + 0.9, 300) and d.due(failed_at + 1.0, 300)
    d.fail("gateway_unavailable: HTTP 503", NOW, 2.0, CLERK)
    assert not d.due(d.failed_wall + 1.9, 300) and d.due(d.failed_wall + 2.0, 300)
    assert d.due(d.failed_wall + 1.0, 1.0)  # the cap shortens the wait
    d.fail("invalid_number: the gateway refused the number", NOW, None, CLERK)
    assert d.state == "failed" and not d.due(d.failed_wall + 10**6, 300)
    with pytest.raises(DeliveryNotAllowed) as refused:
        d.deliver("SMS-1", NOW, CLERK)
    assert refused.value.rule == "delivery_failed"
    events = d.collect_events()
    wire = [OUTBOUND(e).data for e in events if isinstance(e, Delivery.Failed)]
    for data in wire:
        registry.validate_data("NoticeFailed", data)
    assert [(w["attempt"], w["retry_at"]) for w in wire] == [
        (1, "2026-11-25T15:00:01+08:00"), (2, "2026-11-25T15:00:02+08:00"), (3, None)]
    assert not any(PHONE in json.dumps(w) or "138****5678" in json.dumps(w) for w in wire)


# --- the household's mobile number ---------------------------------------------------------------
def test_the_number_is_sealed_at_once_and_shown_masked():
    contact = SEALER.contact(PHONE)
    assert contact.phone_masked == "138****5678" and PHONE not in contact.phone_sealed
    assert SEALER.unseal(contact.phone_sealed) == PHONE
    for shown in (PHONE, "138*****678", "1381234****", ""):
        with pytest.raises(ValueError, match="phone_masked") as refused:
            ContactPhone(shown, contact.phone_sealed)
        assert not shown or shown not in str(refused.value)


def test_the_sealed_number_travels_in_application_submitted_v6():
    app = dataclasses.replace(application("C-SMS", [pid(21)]), contact=SEALER.contact(PHONE))
    data = app.to_wire()
    registry.validate_data("ApplicationSubmitted", data)
    assert data["contact"]["phone_masked"] == "138****5678" and PHONE not in json.dumps(data)
    assert Application.from_wire(data) == app
    assert application("C-NONE", [pid(22)]).to_wire()["contact"] is None
