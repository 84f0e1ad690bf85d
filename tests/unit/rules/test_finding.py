"""Finding households and following referrals up (issue 11), as pure rules and aggregates:
dynamic monitoring's risk rules (低收入人口动态监测预警: services/intake/discovery.py:evaluate, the
rules file services/intake/monitoring.py), the clocks intake starts itself (discovery contact,
referral), the DiscoveryReport and a Referral's follow-up."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest

from lifeline.domain.deadlines import deadline_fields
from lifeline.rules.periods import SHANGHAI
from lifeline.settings import REPO_ROOT
from lifeline.contracts import registry
from lifeline.domain.aggregate import Meta
from lifeline.rules.ids import make_resident_id
from services.intake.discovery import (
    DiscoveryNotAllowed,
    DiscoveryReport,
    PartnerRecord,
    Person,
    PersonCoverage,
    Reporter,
    RiskRule,
    RiskRules,
    RuleBroken,
    deadline_on,
    evaluate,
    mask_id_number,
    reserved_case_id,
)
from services.intake.domain import Case, Referral, ReferralNotAllowed
from services.intake.outbound import OUTBOUND
from tests.unit.services import application as submitted_application

VILLAGE = "370502101001"
TOWNSHIP = "370502101"
CLERK = Meta("clerk-001", "clerk", TOWNSHIP)
SYSTEM = Meta("system:test", "system")
ANOTHER_CLERK = Meta("clerk-009", "clerk", TOWNSHIP)
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)  # Wednesday


def pid(seq: int, female: bool = False) -> str:
    return make_resident_id("370502", date(1980, 5, 1), seq, female)


def public(event) -> dict:
    """The event as intake publishes it, checked against its schema."""
    out = OUTBOUND(event)
    assert out is not None, type(event).__name__
    registry.validate_data(out.name, out.data)
    return {"name": out.name, **out.data}
from services.intake.monitoring import RiskRulesError, load_risk_rules, shipped_risk_rules

# --- the risk rules: a pure rule ------------------------------------------------------------------
MEDICAL = RiskRule("medical", "医疗", "medical_expense", "urgent", amount_above_fen=2_000_000, within_months=12)
EARNER = RiskRule("earner", "唯一劳动力失业", "unemployment_registered", only_earner=True)
LOSS = RiskRule("loss", "受灾", "disaster_loss", "critical", amount_above_fen=1_000_000)
DEATH = RiskRule("death", "低收入家庭成员死亡", "death", covered_by=("low_income",))
RULES = RiskRules((MEDICAL, EARNER, LOSS, DEATH))
NOBODY = PersonCoverage()


def bill(record_id: str, day: str, fen: int) -> PartnerRecord:
    return PartnerRecord(record_id, "medical_expense", date.fromisoformat(day), fen)


def test_medical_costs_fire_when_their_sum_in_12_months_passes_the_amount():
    history = [bill("M0", "2025-05-01", 1_900_000),   # more than 12 months before the others
               bill("M1", "2026-01-10", 800_000), bill("M2", "2026-06-01", 900_000)]
    assert evaluate(RULES, history[2], history[:2], {}, NOBODY) == []         # 1.7 万 in the window
    (hit,) = evaluate(RULES, bill("M3", "2026-11-20", 400_000), history, {}, NOBODY)
    assert (hit.rule, hit.record_ids, hit.amount_fen) == (MEDICAL, ("M1", "M2", "M3"), 2_100_000)
    # What a report named is not counted again: a further bill alone does not fire.
    later = bill("M4", "2026-12-01", 300_000)
    assert evaluate(RULES, later, [*history, bill("M3", "2026-11-20", 400_000)],
                    {"medical": {"M1", "M2", "M3"}}, NOBODY) == []
    # Exactly the amount is not above it.
    assert evaluate(RULES, bill("X", "2026-11-20", 2_000_000), [], {}, NOBODY) == []
    assert len(evaluate(RULES, bill("Y", "2026-11-20", 2_000_001), [], {}, NOBODY)) == 1


def test_unemployment_fires_only_for_the_only_earner_and_losses_above_the_amount():
    day = date(2026, 11, 20)
    for only, fires in ((True, True), (False, False), (None, False)):
        record = PartnerRecord("U1", "unemployment_registered", day, 0, only)
        assert bool(evaluate(RULES, record, [], {}, NOBODY)) is fires
    assert evaluate(RULES, PartnerRecord("L1", "disaster_loss", day, 1_000_000), [], {}, NOBODY) == []
    (hit,) = evaluate(RULES, PartnerRecord("L2", "disaster_loss", day, 1_000_001), [], {}, NOBODY)
    assert hit.rule.urgency == "critical"


def test_only_people_not_covered_and_not_applying_are_reported_and_a_death_only_in_a_watched_household():
    loss = PartnerRecord("L", "disaster_loss", date(2026, 11, 20), 5_000_000)
    assert evaluate(RULES, loss, [], {}, PersonCoverage(frozenset({"dibao"}))) == []
    assert evaluate(RULES, loss, [], {}, PersonCoverage(frozenset({"tekun"}))) == []
    assert evaluate(RULES, loss, [], {}, PersonCoverage(open_case=True)) == []
    assert evaluate(RULES, loss, [], {}, PersonCoverage(frozenset({"low_income"})))  # monitored: fires
    death = PartnerRecord("D", "death", date(2026, 11, 20))
    assert evaluate(RULES, death, [], {}, NOBODY) == []
    assert evaluate(RULES, death, [], {}, PersonCoverage(frozenset({"low_income", "dibao"}))) == []
    (hit,) = evaluate(RULES, death, [], {}, PersonCoverage(frozenset({"low_income"})))
    assert hit.rule is DEATH


# --- the risk rules: configuration ------------------------------------------------------------------
def test_the_shipped_rules_cover_the_issues_examples():
    rules = {r.rule_id: r for r in shipped_risk_rules().rules}
    assert {r.record_kind for r in rules.values()} == {"medical_expense", "unemployment_registered",
                                                       "disaster_loss", "death"}
    assert rules["medical_expense_12_months"].within_months == 12
    assert rules["death_in_low_income_household"].covered_by == ("low_income",)


GOOD = """schema_version: 1
rules:
  - rule_id: big_bills
    label_zh: 大额医疗
    record_kind: medical_expense
    amount_above_fen: 100
    within_months: 12
  - rule_id: loss
    label_zh: 受灾
    record_kind: disaster_loss
    amount_above_fen: 5
"""


def refused(tmp_path: Path, text: str) -> str:
    path = tmp_path / "risk-rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RiskRulesError) as raised:
        load_risk_rules(path)
    return str(raised.value).replace(str(path), "F")


def test_a_malformed_rules_file_names_file_line_and_field(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(GOOD, encoding="utf-8")
    assert [r.rule_id for r in load_risk_rules(path).rules] == ["big_bills", "loss"]
    assert refused(tmp_path, GOOD.replace("amount_above_fen: 100", "amount_above_fen: 5万")) == (
        "F:6: rules[0].amount_above_fen: must be an integer (fen, no unit or separators), got '5万'")
    assert refused(tmp_path, GOOD.replace("    within_months: 12\n", "    within_month: 12\n")) == (
        "F:7: rules[0].within_month: unknown field")
    assert refused(tmp_path, GOOD.replace("rule_id: loss", "rule_id: big_bills")) == (
        "F:8: rules[1].rule_id: duplicate rule big_bills (first on line 3)")
    assert refused(tmp_path, GOOD.replace("record_kind: disaster_loss", "record_kind: death")) == (
        "F:8: rules[1].covered_by: a rule on death names the benefits of the households it watches "
        "(e.g. [low_income])\nF:11: rules[1].amount_above_fen: a death has no amount_above_fen; remove it")
    assert refused(tmp_path, GOOD.replace("record_kind: disaster_loss", "record_kind: flood")).startswith(
        "F:10: rules[1].record_kind: must be one of medical_expense")
    assert refused(tmp_path, GOOD + "  - [unclosed\n").startswith("F:13: (file): not valid YAML")


def test_serve_intake_refuses_to_start_on_a_bad_rules_file(tmp_path):
    path = tmp_path / "risk-rules.yaml"
    path.write_text(GOOD.replace("amount_above_fen: 5", "amount_above_fen: -5"), encoding="utf-8")
    env = {**os.environ, "LIFELINE_RISK_RULES_FILE": str(path), "LIFELINE_DATA_DIR": str(tmp_path),
           "PYTHONPATH": str(REPO_ROOT)}
    r = subprocess.run([sys.executable, "-m", "lifeline.cli", "serve", "intake"], env=env, cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2, r.stderr
    assert f"{path}:11: rules[1].amount_above_fen: must be >= 0, got -5" in r.stderr
    assert "Traceback" not in r.stderr


def test_intakes_clocks_count_working_days_or_keep_the_clerks_date():
    wednesday = datetime(2026, 9, 30, 10, tzinfo=SHANGHAI)  # National Day follows: Oct 1-7 rest
    contact = deadline_on("discovery_contact", wednesday)
    assert (contact.clock, contact.due_date) == ("discovery_contact", date(2026, 10, 10))  # 10-8, 10-9, 10-10
    referral = deadline_on("referral", wednesday)
    assert referral.due_date == date(2026, 10, 13)                                        # …, 10-12, 10-13
    assert deadline_on("referral", wednesday, days=1).due_date == date(2026, 10, 8)
    given = deadline_on("referral", wednesday, date(2026, 10, 20))
    assert (given.due_date, given.due_at.isoformat()) == (date(2026, 10, 20), "2026-10-21T00:00:00+08:00")
    assert deadline_on("referral", wednesday, date(2026, 9, 30)).due_date == date(2026, 9, 30)  # today
    with pytest.raises(ValueError, match="before today"):
        deadline_on("referral", wednesday, date(2026, 9, 29))


# --- the DiscoveryReport aggregate ------------------------------------------------------------------
PERSON = Person("王小明", VILLAGE, pid(301), "胜利社区3号楼")
HOSPITAL = Reporter("hospital", "东营区人民医院", "张医生", "0546-8221234")


def new_report(at: datetime = NOW) -> DiscoveryReport:
    return DiscoveryReport.report("D-1", PERSON, HOSPITAL, "无力支付住院费用", "urgent", at, CLERK)


def test_a_report_reserves_a_case_and_starts_the_contact_clock_masked_on_the_wire():
    report = new_report()
    reported, deadline = report.collect_events()
    assert report.case_id == reserved_case_id("D-1") == new_report().case_id  # the same report, the same case
    data = public(reported)
    assert data["name"] == "DiscoveryReported" and data["case_id"] == report.case_id
    assert data["id_number_masked"] == mask_id_number(pid(301)) == pid(301)[:6] + "********" + pid(301)[-4:]
    assert data["person_name_masked"] == "王*明" and data["responsible_office"] == TOWNSHIP
    text = str(data)
    assert pid(301) not in text and "胜利社区" not in text and "王小明" not in text and "住院" not in text
    # Wednesday 11-25: 3 working days are 11-26, 11-27, 11-30.
    d = public(deadline)
    assert (d["name"], d["clock"], d["deadline_id"], d["due_date"], d["responsible_office"]) == (
        "DeadlineSet", "discovery_contact", "D-1/discovery_contact", "2026-11-30", TOWNSHIP)
    assert data["contact_due_date"] == "2026-11-30"


def test_contact_stops_the_clock_once_and_an_application_is_made_from_the_report_once():
    report = new_report()
    report.collect_events()
    report.contact("not_found", "家中无人", NOW, CLERK)
    contacted, cleared = report.collect_events()
    assert public(contacted)["outcome"] == "not_found"
    assert (public(cleared)["outcome"], public(cleared)["deadline_id"]) == ("met", "D-1/discovery_contact")
    report.contact("applying", "已联系", datetime(2026, 12, 2, tzinfo=SHANGHAI), CLERK)
    assert [type(e) for e in report.collect_events()] == [DiscoveryReport.Contacted]  # the clock stopped before
    with pytest.raises(RuleBroken):
        report.check_can_apply("370502102001")  # another township's case
    report.check_can_apply(VILLAGE)
    report.applied(report.case_id, NOW, CLERK)
    assert report.state == "applied"
    with pytest.raises(DiscoveryNotAllowed) as refused:
        report.check_can_apply(VILLAGE)
    assert refused.value.rule == "discovery_applied_once" and refused.value.case_id == report.case_id
    with pytest.raises(DiscoveryNotAllowed):
        report.contact("declined", "", NOW, CLERK)


def test_a_late_contact_is_late_and_a_breach_is_recorded_once():
    report = new_report()
    assert report.breached("D-1/discovery_contact", "2026-12-01T00:00:00+08:00",
                           {"office": "370502", "level": "county"}, SYSTEM)
    assert not report.breached("D-1/discovery_contact", "2026-12-01T00:00:01+08:00",
                               {"office": "370502", "level": "county"}, SYSTEM)
    report.collect_events()
    report.contact("applying", "", datetime(2026, 12, 1, 9, tzinfo=SHANGHAI), CLERK)
    _, cleared = report.collect_events()
    assert cleared.outcome == "late"


# --- a referral followed up -------------------------------------------------------------------------
def referral(due: date | None = None) -> Referral:
    application = submitted_application("C-1", [pid(401)])  # registered by clerk-001
    case = Case.register(application, CLERK)
    deadline = deadline_on("referral", NOW, due)
    r = Referral.raise_for(case, "R-1", "housing", "housing", 0, "normal", deadline.due_date.isoformat(), True,
                           NOW.isoformat(), ANOTHER_CLERK)
    r.follow_up(case, deadline_fields("R-1/referral", "C-1", VILLAGE, VILLAGE[:9], deadline, NOW), ANOTHER_CLERK)
    return r


def test_a_referral_is_answered_once_and_escalated_once_to_its_first_clerk():
    r = referral()
    raised, deadline = r.collect_events()
    assert (public(deadline)["due_date"], public(deadline)["responsible_office"]) == ("2026-12-02", TOWNSHIP)
    assert (r.responsible_clerk, r.raised_by) == ("clerk-001", "clerk-009")  # 首问负责人: the case's clerk
    escalation = {"office": "370502", "level": "county"}
    assert not r.breached("R-2/referral", "2026-12-03T00:00:00+08:00", escalation, SYSTEM)  # not its clock
    assert r.breached("R-1/referral", "2026-12-03T00:00:00+08:00", escalation, SYSTEM)
    assert not r.breached("R-1/referral", "2026-12-03T00:00:05+08:00", escalation, SYSTEM)  # once
    (overdue,) = r.collect_events()
    assert (r.status, overdue.responsible_clerk, overdue.escalated_to) == ("overdue", "clerk-001", escalation)
    r.record_outcome("accepted", "已督办", "clerk", datetime(2026, 12, 3, 9, tzinfo=SHANGHAI), CLERK)
    recorded, cleared = r.collect_events()
    assert (public(recorded)["late"], public(cleared)["outcome"]) == (True, "late")
    with pytest.raises(ReferralNotAllowed) as refused:
        r.record_outcome("resolved", "", "department", NOW, SYSTEM)
    assert refused.value.rule == "referral_answered_once"
    answered = referral(date(2026, 12, 31))
    answered.collect_events()
    answered.record_outcome("resolved", "", "department", NOW, SYSTEM)
    recorded, cleared = answered.collect_events()
    assert (recorded.due_date, recorded.late, cleared.outcome) == ("2026-12-31", False, "met")
    assert not answered.breached("R-1/referral", "2027-01-01T00:00:00+08:00", escalation, SYSTEM)



def test_a_record_is_evaluated_once_per_person_and_a_rules_report_on_it_has_one_id():
    from services.intake.discovery import RiskWatch, monitoring_report_id

    watch = RiskWatch.open("fingerprint-of-a-person", SYSTEM)
    loss = PartnerRecord("L-1", "disaster_loss", date(2026, 11, 20), 5_000_000, department="emergency")
    (hit,) = watch.note(loss, RULES, NOBODY, SYSTEM)
    watch.fired(hit, monitoring_report_id("loss", "L-1"), SYSTEM)
    assert watch.note(loss, RULES, NOBODY, SYSTEM) == []          # seen: nothing, not even noted again
    assert [type(e).__name__ for e in watch.collect_events()] == ["Opened", "RecordNoted", "RuleFired"]
    assert monitoring_report_id("loss", "L-1") == monitoring_report_id("loss", "L-1") != \
        monitoring_report_id("medical", "L-1")
