"""After approval (动态管理): the approved monthly benefit is adjusted, suspended, resumed and
terminated from a payment period on, on the Verification aggregate; each change is one public
event (BenefitAdjusted, BenefitSuspended, BenefitResumed, BenefitTerminated), and a change the
rules refuse triggers nothing."""

from __future__ import annotations

from datetime import datetime

import pytest

from lifeline.contracts import registry
from services.verification.application import benefit_change_view, verification_view
from services.verification.domain import DecisionNotAllowed, ProcedureError, RuleBroken, Verification
from services.verification.outbound import OUTBOUND
from tests.unit.rules.test_procedure import accepted, at, complete, decide
from tests.unit.services import REVIEWER, ready_to_decide, replay

DECIDED_AT = at("2026-10-20")  # first period 2026-11
LATER = at("2026-11-20")


def approved(**application) -> Verification:
    """A case approved on 2026-10-20 (a 低保 monthly benefit of 206,000 fen from 2026-11 unless
    the application says otherwise); its events are still pending."""
    v = accepted(at("2026-09-28"), **application)
    complete(v, at("2026-09-29", 9))
    ready_to_decide(v, DECIDED_AT)
    decide(v, DECIDED_AT)
    return v


def change(v: Verification, what: str, period: str, amount: int | None = None, when: datetime = LATER):
    return v.change_benefit(what, period, amount, "年度复核", when, REVIEWER)


def refused(v: Verification, what: str, period: str, amount: int | None = None) -> ProcedureError:
    """The change is refused and triggers nothing."""
    def state() -> tuple:
        return (v.version, len(v.pending_events), v.benefit_status, v.current_monthly_amount_fen,
                list(v.benefit_changes))

    before = state()
    with pytest.raises(ProcedureError) as e:
        change(v, what, period, amount)
    assert state() == before
    return e.value


def test_an_approved_monthly_benefit_is_adjusted_suspended_resumed_and_terminated():
    v = approved()
    assert (v.benefit.first_period, v.benefit_status, v.current_monthly_amount_fen) == ("2026-11", "paying", 206000)

    assert change(v, "adjust", "2026-11", 150000).status == "paying"  # from the first period itself
    assert change(v, "suspend", "2027-01").status == "suspended"
    assert change(v, "adjust", "2027-02", 120000).status == "suspended"  # the amount to resume at
    assert change(v, "resume", "2027-02").status == "paying"  # the same period as the last change
    last = change(v, "terminate", "2027-06")
    assert (last.status, last.monthly_amount_fen) == ("terminated", 120000)
    assert [(c.change, c.from_period, c.status, c.monthly_amount_fen) for c in v.benefit_changes] == [
        ("adjust", "2026-11", "paying", 150000), ("suspend", "2027-01", "suspended", 150000),
        ("adjust", "2027-02", "suspended", 120000), ("resume", "2027-02", "paying", 120000),
        ("terminate", "2027-06", "terminated", 120000)]
    assert benefit_change_view(v) == {
        "case_id": v.case_id, "benefit_id": v.benefit.benefit_id, "change": "terminate",
        "from_period": "2027-06", "status": "terminated", "monthly_amount_fen": 120000}
    view = verification_view(v)
    assert (view["state"], view["benefit_status"], view["current_monthly_amount_fen"]) == (
        "approved", "terminated", 120000)
    assert view["benefit"]["monthly_amount_fen"] == 206000  # what was approved stays as approved
    assert [c["change"] for c in view["benefit_changes"]] == ["adjust", "suspend", "adjust", "resume", "terminate"]

    # Each change is one public event after the approval, valid for its schema, with exactly
    # these fields.
    events = v.collect_events()
    wire = published(events)
    assert [name for name, _ in wire][-6] == "BenefitApproved"
    base = {"case_id": v.case_id, "benefit_id": v.benefit.benefit_id, "reason": "年度复核",
            "decided_by": REVIEWER.user_id, "decided_at": LATER.isoformat()}
    assert wire[-5:] == [
        ("BenefitAdjusted", {**base, "from_period": "2026-11", "monthly_amount_fen": 150000,
                             "previous_monthly_amount_fen": 206000}),
        ("BenefitSuspended", {**base, "from_period": "2027-01"}),
        ("BenefitAdjusted", {**base, "from_period": "2027-02", "monthly_amount_fen": 120000,
                             "previous_monthly_amount_fen": 150000}),
        ("BenefitResumed", {**base, "from_period": "2027-02"}),
        ("BenefitTerminated", {**base, "from_period": "2027-06"}),
    ]
    # The log rebuilds the same benefit.
    again = replay(events)
    assert (again.benefit_status, again.current_monthly_amount_fen, again.benefit_changes) == (
        v.benefit_status, v.current_monthly_amount_fen, v.benefit_changes)


def published(events: list) -> list[tuple[str, dict]]:
    """The public events among `events` (each validated against its schema)."""
    out = []
    for event in events:
        if (wire := OUTBOUND(event)) is not None:
            registry.validate_data(wire.name, wire.data)
            out.append((wire.name, wire.data))
    return out


@pytest.mark.parametrize("how", ["completed", "refused", "recognition"])
def test_only_an_approved_monthly_benefit_changes(how):
    if how == "recognition":  # 低收入家庭认定: approved without money
        v = approved(assistance_type="low_income")
        assert v.benefit.kind == "recognition" and v.benefit_status is None
    else:
        v = accepted(at("2026-09-28"))
        complete(v, at("2026-09-29", 9), income=5_000_000 if how == "refused" else 0)
        if how == "refused":
            ready_to_decide(v, DECIDED_AT, "refuse")
            v.refuse(DECIDED_AT, REVIEWER, "收入超标")
    for what, amount in (("adjust", 100000), ("suspend", None), ("resume", None), ("terminate", None)):
        error = refused(v, what, "2027-01", amount)
        assert (type(error), error.status, error.rule) == (DecisionNotAllowed, 409, "monthly_benefit")


def test_one_off_relief_has_no_benefit_to_change():
    v = approved(assistance_type="linshi_jinan", requested_amount_fen=150000)
    if v.state != "approved":
        pytest.skip("the shipped policy does not grant this household one-off relief")
    assert v.benefit.kind == "one_off"
    assert refused(v, "suspend", "2027-01").rule == "monthly_benefit"


@pytest.mark.parametrize(("period", "rule"), [
    ("2026-10", "period_before_first_period"),   # the month of the decision: nothing paid yet
    ("2025-12", "period_before_first_period"),
    ("2027-13", "from_period"),
    ("2027-1", "from_period"),
    ("２０２７-01", "from_period"),             # full-width digits are not a period on the wire
    ("2027-01\n", "from_period"),
])
def test_from_period_is_a_period_not_before_the_benefits_first(period, rule):
    v = approved()
    error = refused(v, "suspend", period)
    assert (type(error), error.status, error.rule) == (RuleBroken, 422, rule)


def test_changes_apply_in_the_order_of_their_periods():
    v = approved()
    change(v, "suspend", "2027-03")
    error = refused(v, "resume", "2027-02")
    assert (error.status, error.rule) == (422, "period_before_last_change")
    assert change(v, "resume", "2027-03").status == "paying"


@pytest.mark.parametrize(("before", "what", "rule"), [
    ((), "resume", "benefit_not_suspended"),                  # paying: nothing to resume
    (("suspend",), "suspend", "benefit_not_paying"),          # already suspended
    (("terminate",), "suspend", "benefit_terminated"),
    (("terminate",), "resume", "benefit_terminated"),
    (("terminate",), "terminate", "benefit_terminated"),
    (("terminate",), "adjust", "benefit_terminated"),
    (("suspend", "terminate"), "resume", "benefit_terminated"),
])
def test_suspend_only_when_paying_resume_only_when_suspended_nothing_after_terminate(before, what, rule):
    v = approved()
    for earlier in before:
        change(v, earlier, "2027-01")
    error = refused(v, what, "2027-02", 100000 if what == "adjust" else None)
    assert (type(error), error.status, error.rule) == (DecisionNotAllowed, 409, rule)


def test_a_suspended_benefit_may_be_terminated():
    v = approved()
    change(v, "suspend", "2027-01")
    assert change(v, "terminate", "2027-01").status == "terminated"


@pytest.mark.parametrize(("what", "amount", "rule"), [
    ("adjust", None, "adjustment_amount"),
    ("adjust", 0, "adjustment_amount"),
    ("adjust", -100, "adjustment_amount"),
    ("adjust", True, "adjustment_amount"),
    ("adjust", 206000, "adjustment_unchanged"),   # the amount in force
    ("suspend", 100000, "monthly_amount_fen"),   # an amount comes with an adjustment only
    ("terminate", 0, "monthly_amount_fen"),
])
def test_an_adjustment_needs_a_positive_amount_different_from_the_one_in_force(what, amount, rule):
    v = approved()
    error = refused(v, what, "2027-01", amount)
    assert (type(error), error.status, error.rule) == (RuleBroken, 422, rule)


def test_a_change_gives_its_reason():
    v = approved()
    with pytest.raises(RuleBroken) as e:
        v.change_benefit("suspend", "2027-01", None, "  ", LATER, REVIEWER)
    assert e.value.rule == "reason" and v.benefit_status == "paying" and not v.benefit_changes


def test_an_unknown_change_is_refused():
    v = approved()
    assert refused(v, "pause", "2027-01").rule == "benefit_change"
