"""The invariants `lifeline chaos` checks after its kills (lifeline/dev/chaos.py `check`) find a
loss or a double when there is one: each over a log as the services would have stored it."""

from __future__ import annotations

from types import SimpleNamespace

from lifeline.dev.chaos import Household, check

CASE = "C-0123456789ABCDEF0123"


def household(**kw) -> Household:
    h = Household(1, 1, ["370502195001010011"], ["王建国"], "RCC", "6228480000000000001", "13800000000",
                  consent=True, asked_fen=100_000, case_id=CASE, approved=True)
    for k, v in kw.items():
        setattr(h, k, v)
    return h


def clean_logs() -> dict[str, list[tuple[int, str, dict]]]:
    """One household from application to a settled payment, a fund allocation disbursed and a
    notice delivered on every channel."""
    pay = {"payment_id": "P-1", "entitlement_id": "E-1", "period": "2027-01", "case_id": CASE}
    return {
        "intake": [(1, "ApplicationSubmitted", {"case_id": CASE}), (2, "ApplicationAccepted", {"case_id": CASE}),
                   (3, "ReferralRaised", {"referral_id": "R-1", "case_id": CASE})],
        "verification": [(1, "VerificationCompleted", {"case_id": CASE}),
                         (2, "BenefitApproved", {"case_id": CASE, "benefit_id": "B-1"})],
        "payment": [(1, "EntitlementOpened", {"entitlement_id": "E-1", "benefit_id": "B-1", "first_period": "2027-01"}),
                    (2, "PaymentInstructed", pay), (3, "PaymentSettled", {"payment_id": "P-1"}),
                    (4, "PaymentRunCompleted", {"county_code": "370502", "period": "2027-01"})],
        "charity": [(1, "FundRegistered", {"fund_id": "F-1", "balance_fen": 100}),
                    (2, "NeedOpened", {"need_id": "N-1", "referral_id": "R-1"}),
                    (3, "FundAllocated", {"fund_id": "F-1", "allocation_id": "A-1", "amount_fen": 100}),
                    (4, "AllocationDisbursed", {"fund_id": "F-1", "allocation_id": "A-1", "amount_fen": 100})],
        "notify": [(1, "NoticeIssued", {"notice_id": "NACC-1", "case_id": CASE, "kind": "acceptance"})]
        + [(2 + i, "NoticeDelivered", {"notice_id": "NACC-1", "channel": c}) for i, c in
           enumerate(("in_app", "letter", "sms"))],
    }


def findings(logs=None, sms=None, bank=None, **kw):
    flow = SimpleNamespace(households=[household(referral_id="R-1", need_id="N-1", allocations=["A-1"], **kw)])
    return check(flow, logs or clean_logs(), {"NACC-1:sms": 1} if sms is None else sms,
                 {"P-1": 1} if bank is None else bank)


def test_a_clean_run_finds_nothing():
    f = findings()
    assert (f.lost, f.doubled) == ([], [])


def test_each_double_is_found():
    logs = clean_logs()
    logs["payment"].insert(3, (9, "PaymentInstructed", {"payment_id": "P-2", "entitlement_id": "E-1",
                                                      "period": "2027-01", "case_id": CASE}))
    logs["payment"].append((10, "PaymentSettled", {"payment_id": "P-2"}))
    logs["charity"].append((5, "FundAllocated", {"fund_id": "F-1", "allocation_id": "A-2", "amount_fen": 1}))
    logs["notify"].append((9, "NoticeDelivered", {"notice_id": "NACC-1", "channel": "sms"}))
    logs["payment"].append((11, "EntitlementOpened", {"entitlement_id": "E-2", "benefit_id": "B-1",
                                                      "first_period": "2027-02"}))
    f = findings(logs, sms={"NACC-1:sms": 2}, bank={"P-1": 2, "P-2": 1})
    text = "\n".join(f.doubled)
    for expected in ("entitlement E-1 paid 2 times for 2027-01", "fund F-1 overdrawn", "NACC-1 delivered 2 times by sms",
                     "2 SMS sent", "benefit B-1 of case", "payment P-1 sent to the bank in 2 files"):
        assert expected in text, text
    assert f.lost == [], f.lost


def test_each_loss_is_found():
    logs = clean_logs()
    logs["payment"] = [e for e in logs["payment"] if e[1] not in ("EntitlementOpened", "PaymentSettled")]
    logs["notify"] = [e for e in logs["notify"] if e[2].get("channel") != "letter"]
    logs["charity"] = [e for e in logs["charity"] if e[1] != "AllocationDisbursed"]
    f = findings(logs, bank={})
    text = "\n".join(f.lost)
    for expected in ("B-1 of case", "never settled", "never delivered by letter", "A-1 of N-1 disbursed",
                     "in no file the bank received"):
        assert expected in text, text
