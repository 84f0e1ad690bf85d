"""Finding households and following referrals up (issue 11, intake): the risk rules as a pure
rule and as configuration, the DiscoveryReport and the referral's follow-up as aggregates, and
the use cases in one process (in-memory store, a FixedClock)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from lifeline.contracts import registry
from lifeline.domain.clock import FixedClock
from lifeline.rules.periods import SHANGHAI
from lifeline.settings import Settings
from lifeline.simulators.partners import LifeEventIn, PartnerSimulator, ReferralAnswerIn
from services.intake.application import IntakeApplication
from services.intake.application import project as intake_project
from services.intake.bootstrap import build
from services.intake.discovery import (
    DiscoveryNotAllowed,
    DiscoveryReport,
    RiskWatch,
    RuleBroken,
    monitoring_report_id,
)
from services.intake.domain import Case, Referral, ReferralNotAllowed
from services.intake.outbound import OUTBOUND
from lifeline.stores.projection import Projection
from lifeline.stores.sidestore import SideStore

from . import CLERK, MEMORY_ENV, SEALER, TOWNSHIP, VILLAGE, application_body, benefit_data, cloud, \
    log_length, pid, stored

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)  # Wednesday


@pytest.fixture
def intake():
    app = IntakeApplication(dict(MEMORY_ENV), clock=FixedClock(NOW), sealer=SEALER)
    yield app
    app.close()


def public(event) -> dict:
    out = OUTBOUND(event)
    assert out is not None, type(event).__name__
    registry.validate_data(out.name, out.data)
    return {"name": out.name, **out.data}


def views(app: IntakeApplication) -> SideStore:
    side = SideStore.in_memory()
    Projection(app, side, intake_project).catch_up()
    return side


GOOD_RULES = """schema_version: 1
rules:
  - rule_id: loss
    label_zh: 受灾
    record_kind: disaster_loss
    amount_above_fen: 5
"""


# --- configuration reaches the application ----------------------------------------------------------
def test_the_composition_root_loads_the_configured_rules_and_clock_lengths(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD_RULES, encoding="utf-8")
    settings = Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path), "LIFELINE_RISK_RULES_FILE": str(path),
                                  "LIFELINE_DISCOVERY_CONTACT_DAYS": "5", "LIFELINE_REFERRAL_DAYS": "10"})
    app = build(settings, clock=FixedClock(NOW), env=dict(MEMORY_ENV))
    try:
        assert app.risk_rules.origin == str(path)
        assert app.clock_days == {"discovery_contact": 5, "referral": 10}
    finally:
        app.close()


# --- discovery reports: use cases ------------------------------------------------------------------
BODY = {"reporter": {"kind": "hospital", "organisation": "东营区人民医院", "name": None, "contact": None},
        "person": {"id_number": pid(302), "name": "王小明", "address": "胜利社区3号楼", "region_code": VILLAGE},
        "seen": "无力支付住院费用", "urgency": "urgent"}


def test_an_application_from_a_report_takes_its_case_id_once(intake):
    report = intake.report_discovery(BODY, CLERK, "D-ONE")
    assert intake.report_discovery(BODY, CLERK, "D-ONE").case_id == report.case_id  # the same request again
    with views(intake).transaction() as tx:
        assert tx.get("case", report.case_id)["status"] == "discovered"
        assert tx.get("discovery_report", "D-ONE")["state"] == "discovered"
    body = application_body([pid(302)], discovery_report_id="D-ONE")
    case_id = intake.submit_application(body, CLERK)
    assert case_id == report.case_id
    (submitted,) = stored(intake, Case.Submitted)
    assert OUTBOUND(submitted).data["case_id"] == report.case_id  # ApplicationSubmitted names the reserved case
    assert intake.get_discovery_report("D-ONE").state == "applied"
    cleared = [e for e in stored(intake, DiscoveryReport.DeadlineCleared)]
    assert [e.outcome for e in cleared] == ["met"]
    with views(intake).transaction() as tx:
        assert tx.get("case", case_id)["status"] == "submitted"
        assert tx.get("case", case_id)["discovery_report_id"] == "D-ONE"
        assert tx.get("discovery_report", "D-ONE")["state"] == "applied"
    size = log_length(intake)
    with pytest.raises(DiscoveryNotAllowed) as refused:
        intake.submit_application(body, CLERK)
    assert refused.value.rule == "discovery_applied_once"
    with pytest.raises(RuleBroken) as unknown:
        intake.submit_application(application_body([pid(303)], discovery_report_id="D-NONE"), CLERK)
    assert (unknown.value.rule, unknown.value.field) == ("discovery_report_unknown", "discovery_report_id")
    assert log_length(intake) == size  # nothing stored


# --- dynamic monitoring: use cases ------------------------------------------------------------------
def life_event(sim: PartnerSimulator, **kw) -> object:
    body = LifeEventIn(**{"kind": "disaster_loss", "id_number": pid(310), "name": "钱多多", "region_code": VILLAGE,
                          "amount_fen": 1_500_000, "occurred_on": "2026-11-20", **kw})
    _, raw = sim.life_event(body)
    return registry.decode(raw)


@pytest.fixture
def simulator(tmp_path):
    sim = PartnerSimulator(Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path)}))
    sim.clock = FixedClock(NOW)
    return sim


def test_a_partner_life_event_opens_one_report_however_often_it_comes(intake, simulator):
    event = life_event(simulator)
    assert intake.process_cloud_event(event) is True
    assert intake.process_cloud_event(event) is False            # redelivered: tracking
    # The same record again in another CloudEvent (another position): the watch has seen it.
    again = cloud("LifeEventReported", event.data, subject=event.subject, source=event.source)
    assert intake.process_cloud_event(again) is True
    (reported,) = stored(intake, DiscoveryReport.Reported)
    data = public(reported)
    assert (data["reporter_kind"], data["rule_id"], data["record_ids"]) == (
        "monitoring", "disaster_loss", [event.data["record_id"]])
    assert reported.report_id == monitoring_report_id("disaster_loss", event.data["record_id"])
    assert data["urgency"] == "critical" and data["region_code"] == VILLAGE
    # Below the amount, nothing; a person applying already, nothing.
    assert intake.process_cloud_event(life_event(simulator, amount_fen=100, id_number=pid(311)))
    intake.submit_application(application_body([pid(312)]), CLERK)
    assert intake.process_cloud_event(life_event(simulator, id_number=pid(312)))
    assert len(stored(intake, DiscoveryReport.Reported)) == 1
    assert len(stored(intake, RiskWatch.RecordNoted)) == 3
    # The watch is keyed as the person index is: the ID number is neither its key nor in its events.
    for n in intake.recorder.select_notifications(1, 1000):
        if "discovery:RiskWatch" in n.topic:
            assert pid(310).encode() not in n.state


def test_medical_bills_add_up_across_records_and_the_report_names_them(intake, simulator):
    for day, fen in (("2026-03-01", 1_200_000), ("2026-09-01", 1_000_000)):
        intake.process_cloud_event(life_event(simulator, kind="medical_expense", amount_fen=fen, occurred_on=day))
    (reported,) = stored(intake, DiscoveryReport.Reported)
    assert reported.rule_id == "medical_expense_12_months" and len(reported.record_ids) == 2
    assert reported.reporter_organisation == "medical_insurance"


def test_a_death_in_a_recognised_low_income_household_reports_a_living_member(intake):
    applicant, other = pid(320), pid(321, female=True)
    case_id = intake.submit_application(application_body([applicant, other], assistance_type="low_income"), CLERK)
    intake.process_cloud_event(cloud("BenefitApproved", benefit_data(
        case_id, kind="recognition", benefit_type="low_income", tier=None, monthly_amount_fen=None),
        subject=case_id, source="lifeline/verification"))
    death = {"record_id": "PS-1", "department": "public_security", "id_number": other, "name": "李红",
             "date_of_death": "2026-11-20", "reported_at": NOW.isoformat()}
    assert intake.process_cloud_event(cloud("DeathReported", death, subject="PS-1", source="partner/public_security"))
    (reported,) = stored(intake, DiscoveryReport.Reported)
    assert (reported.rule_id, reported.related_case_id, reported.id_number, reported.record_ids) == (
        "death_in_low_income_household", case_id, applicant, ["PS-1"])
    # A death of someone nobody watches: nothing.
    lone = {**death, "record_id": "PS-2", "id_number": pid(322)}
    assert intake.process_cloud_event(cloud("DeathReported", lone, subject="PS-2", source="partner/public_security"))
    assert len(stored(intake, DiscoveryReport.Reported)) == 1


# --- referrals followed up -----------------------------------------------------------------------
REQUEST = {"target": "medical_insurance", "need_category": "medical", "amount_asked_fen": 0,
           "urgency": "normal", "consent_to_share": True}


def referral_of(intake: IntakeApplication) -> tuple[str, str]:
    case_id = intake.submit_application(application_body([pid(330)]), CLERK)
    return case_id, intake.raise_referral(case_id, REQUEST, CLERK)


def test_a_referral_is_due_by_the_referral_clock_and_answered_once(intake, simulator):
    case_id, referral_id = referral_of(intake)
    (raised,) = stored(intake, Referral.Raised)
    assert raised.due_date == "2026-12-02"  # 5 working days after Wednesday 11-25
    (deadline,) = stored(intake, Referral.DeadlineSet)
    d = public(deadline)
    assert (d["deadline_id"], d["case_id"], d["clock"], d["responsible_office"], d["due_date"]) == (
        f"{referral_id}/referral", case_id, "referral", TOWNSHIP, "2026-12-02")
    _, raw = simulator.referral_answer(ReferralAnswerIn(referral_id=referral_id, case_id=case_id,
                                                        department="housing", outcome="accepted"))
    assert intake.process_cloud_event(registry.decode(raw))      # not its target: nothing
    assert stored(intake, Referral.OutcomeRecorded) == []
    _, raw = simulator.referral_answer(ReferralAnswerIn(referral_id=referral_id, case_id=case_id,
                                                        department="medical_insurance", outcome="resolved",
                                                        note="已落实"))
    assert intake.process_cloud_event(registry.decode(raw))
    (recorded,) = stored(intake, Referral.OutcomeRecorded)
    assert public(recorded) == {"name": "ReferralOutcomeRecorded", "referral_id": referral_id, "case_id": case_id,
                                "target": "medical_insurance", "outcome": "resolved", "note": "已落实",
                                "answered_by": "department", "due_date": "2026-12-02", "late": False,
                                "recorded_at": NOW.isoformat()}
    (cleared,) = stored(intake, Referral.DeadlineCleared)
    assert (cleared.deadline_id, cleared.outcome) == (f"{referral_id}/referral", "met")
    with pytest.raises(ReferralNotAllowed) as refused:
        intake.record_referral_outcome(referral_id, "declined", "", CLERK)
    assert refused.value.rule == "referral_answered_once"
    with views(intake).transaction() as tx:
        doc = tx.get("referral", referral_id)
    assert (doc["status"], doc["outcome"], doc["answered_by"], doc["assignee"], doc["deadline_state"]) == (
        "answered", "resolved", "department", "clerk-001", "met")


def test_a_clerks_due_date_is_kept_and_one_before_today_refused(intake):
    case_id = intake.submit_application(application_body([pid(331)]), CLERK)
    rid = intake.raise_referral(case_id, {**REQUEST, "due_date": date(2026, 12, 31)}, CLERK)
    assert intake.get_referral(rid).due_date == "2026-12-31"
    size = log_length(intake)
    with pytest.raises(RuleBroken) as refused:
        intake.raise_referral(case_id, {**REQUEST, "due_date": date(2026, 11, 24)}, CLERK)
    assert refused.value.field == "due_date" and log_length(intake) == size


def breach(referral_id: str, case_id: str, clock: str = "referral") -> object:
    return cloud("DeadlineBreached", {
        "deadline_id": f"{referral_id}/{clock}", "case_id": case_id, "clock": clock, "label_zh": "转介办理",
        "region_code": VILLAGE, "responsible_office": TOWNSHIP, "due_date": "2026-12-02",
        "due_at": "2026-12-03T00:00:00+08:00", "breached_at": "2026-12-03T00:00:05+08:00",
        "escalated_to": {"office": "370502", "level": "county"}}, subject=case_id, source="lifeline/notify")


def test_an_overdue_referral_is_escalated_once_to_its_clerk_and_the_office_above(intake):
    case_id, referral_id = referral_of(intake)
    assert intake.process_cloud_event(breach(referral_id, case_id))
    assert intake.process_cloud_event(breach(referral_id, case_id))  # another breach event: once
    (overdue,) = stored(intake, Referral.Overdue)
    assert (overdue.responsible_clerk, overdue.escalated_to) == ("clerk-001", {"office": "370502", "level": "county"})
    with views(intake).transaction() as tx:
        doc = tx.get("referral", referral_id)
    assert doc["status"] == "overdue"
    assert doc["escalated_to"] == {"clerk": "clerk-001", "office": "370502", "level": "county"}
    # Answered late by a clerk: closed, the clock cleared late.
    intake.clock.set(datetime(2026, 12, 4, 10, tzinfo=SHANGHAI))
    intake.record_referral_outcome(referral_id, "accepted", "已电话督办，医保局已受理", CLERK)
    (recorded,) = stored(intake, Referral.OutcomeRecorded)
    assert (recorded.answered_by, recorded.late) == ("clerk", True)
    assert [e.outcome for e in stored(intake, Referral.DeadlineCleared)] == ["late"]
    # Breaches of other clocks, or of unknown deadlines, are not intake's.
    assert intake.process_cloud_event(breach(case_id, case_id, "household_survey"))
    assert intake.process_cloud_event(breach("R-UNKNOWN", case_id))
    assert len(stored(intake, Referral.Overdue)) == 1


def test_an_overdue_discovery_contact_is_escalated_once(intake):
    report = intake.report_discovery(BODY, CLERK, "D-LATE")
    event = breach("D-LATE", report.case_id, "discovery_contact")
    assert intake.process_cloud_event(event)
    with views(intake).transaction() as tx:
        doc = tx.get("discovery_report", "D-LATE")
    assert (doc["deadline_state"], doc["escalated_to"]) == ("breached", {"office": "370502", "level": "county"})
    assert len(stored(intake, DiscoveryReport.Overdue)) == 1


def test_a_case_registered_from_a_report_whose_mark_was_lost_is_still_applied_once(intake):
    """A crash between registering the case and marking the report (or a race of two
    applications): the next attempt finds the reserved case, marks the report and is refused."""
    from services.intake import persons
    from tests.unit.services import application

    report = intake.report_discovery(BODY, CLERK, "D-LOST")
    persons.register_case(intake, lambda: Case.register(application(report.case_id, [pid(304)]), CLERK), CLERK)
    assert intake.get_discovery_report("D-LOST").state == "discovered"
    with pytest.raises(DiscoveryNotAllowed) as refused:
        intake.submit_application(application_body([pid(305)], discovery_report_id="D-LOST"), CLERK)
    assert (refused.value.rule, refused.value.case_id) == ("discovery_applied_once", report.case_id)
    assert intake.get_discovery_report("D-LOST").state == "applied"
    assert [e.outcome for e in stored(intake, DiscoveryReport.DeadlineCleared)] == ["met"]
