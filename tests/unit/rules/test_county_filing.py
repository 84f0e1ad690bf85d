"""镇→县备案 (issue 17, part 5) as rules: which decisions a township files with the county (an
inclusion it approved, an exit not decided by the county; never a suspension), the 5-working-day
clock counted on the statutory calendar, receipt met or late and a breach recorded once; and the
monthly statistics counted from the benefit roll, exactly to the fen, with their CSV.

Seed 002 (镇人民政府职责): 负责在审批新增和出保结束后5个工作日内上报县民政局备案。
"""

from __future__ import annotations

from datetime import date

import pytest

from lifeline.contracts import registry
from lifeline.domain.aggregate import Meta
from lifeline.rules import clocks
from services.verification.county_filings import (
    CSV_COLUMNS,
    CountyFiling,
    MonthlyStatistics,
    figures,
    filed_decision,
    filings_for,
    standing,
    statistics_csv,
    yuan,
)
from services.verification.domain import DecisionNotAllowed, Verification
from services.verification.outbound import OUTBOUND
from tests.unit.rules.test_benefit_changes import approved
from tests.unit.rules.test_procedure import accepted, at, complete, decide
from tests.unit.services import COUNTY_OFFICER, REVIEWER, SYSTEM, application, pid, ready_to_decide, replay

TOWNSHIP = "370502101"
COUNTY2 = Meta("county-002", "county_officer", "370502")


def filings(v: Verification) -> list[CountyFiling]:
    """The filings the case's pending events call for (what VerificationApplication._record adds)."""
    return filings_for(v.pending_events, {v.id: v})


def wire(aggregate) -> list[tuple[str, dict]]:
    """The aggregate's pending events as published, each valid for its schema."""
    out = []
    for event in aggregate.pending_events:
        public = OUTBOUND(event)
        if public is not None:
            registry.validate_data(public.name, public.data)
            out.append((public.name, public.data))
    return out


# --- what is filed --------------------------------------------------------------------------
def test_a_township_approval_is_filed_as_an_inclusion_due_in_5_working_days():
    v = approved()  # approved by a township reviewer on Tuesday 2026-10-20, paid from 2026-11
    (f,) = filings(v)
    [(due_name, due), (set_name, deadline)] = wire(f)
    assert (due_name, set_name) == ("CountyFilingDue", "DeadlineSet")
    (approval,) = [e for e in v.pending_events if isinstance(e, Verification.Approved)]
    assert due == {
        "filing_id": f"CF-{v.case_id}-{approval.originator_version}", "case_id": v.case_id,
        "benefit_id": v.benefit.benefit_id, "decision": "inclusion", "assistance_type": "dibao",
        "benefit_kind": "monthly", "region_code": v.region_code, "township_code": TOWNSHIP, "county_code": "370502",
        "applicant_name_masked": "王*明", "household_size": 2, "monthly_amount_fen": 206000,
        "one_off_amount_fen": None, "from_period": "2026-11", "reason": "经审核确认，符合低保条件",
        "decided_by": REVIEWER.user_id, "decided_at": at("2026-10-20").isoformat(),
        "due_date": "2026-10-27",  # 10-21, 22, 23, 26, 27
    }
    assert (deadline["deadline_id"], deadline["clock"], deadline["responsible_office"], deadline["due_date"],
            deadline["label_zh"]) == (f"{due['filing_id']}/county_filing", "county_filing", TOWNSHIP,
                                      "2026-10-27", "乡镇审核确认结果报县备案")
    assert deadline["case_id"] == v.case_id and deadline["set_at"] == due["decided_at"]
    assert "370502198" not in str(due)  # no ID number: the members were born in 1980


def test_the_clock_runs_on_the_statutory_calendar_across_national_day():
    # Decided Tuesday 2026-09-29: 09-30, (Oct 1-7 rest), 10-08, 10-09, Sat 10-10 (make-up), 10-12.
    due = clocks.clock_due("county_filing", at("2026-09-29"))
    assert (due.due_date, due.period) == (date(2026, 10, 12), "5 working days")
    assert clocks.CLOCKS["county_filing"].source.startswith("seed 002: 负责在审批新增和出保结束后5个工作日内")


def test_the_countys_own_period_from_the_policy_file_is_kept_by_the_case():
    v = approved()
    v.clock_days = {"county_filing": 3}
    (f,) = filings(v)
    assert wire(f)[0][1]["due_date"] == "2026-10-23"


def test_a_county_approval_is_not_filed_with_the_county():
    v = accepted(at("2026-09-28"))
    complete(v, at("2026-09-29", 9))
    ready_to_decide(v, at("2026-10-20"))
    decide(v, at("2026-10-20"), COUNTY_OFFICER)
    assert v.benefit.approval_level == "county"
    assert filings(v) == []


def test_an_exit_decided_by_the_township_is_filed_a_suspension_is_not():
    v = approved()
    v.collect_events()
    v.change_benefit("adjust", "2026-12", 150000, "家庭收入增加", at("2026-11-20"), REVIEWER)
    v.change_benefit("suspend", "2027-01", None, "外出务工，暂停", at("2026-11-25"), REVIEWER)
    assert filings(v) == []  # an adjustment and a suspension stay on the roll
    v.collect_events()
    v.change_benefit("terminate", "2027-02", None, "家庭人均收入超过保障标准，停发", at("2026-12-03"), REVIEWER)
    (f,) = filings(v)
    due = wire(f)[0][1]
    assert (due["decision"], due["from_period"], due["monthly_amount_fen"], due["household_size"],
            due["decided_at"], due["due_date"]) == ("exit", "2027-02", 150000, 2, at("2026-12-03").isoformat(),
                                                    "2026-12-10")


def test_an_exit_the_service_decided_is_filed_one_the_county_decided_is_not():
    by_service = approved()
    by_service.collect_events()
    by_service.terminate_benefit("2026-12", "家庭成员死亡，停发", at("2026-11-20"), SYSTEM)
    assert [wire(f)[0][1]["decided_by"] for f in filings(by_service)] == [SYSTEM.user_id]
    by_county = approved()
    by_county.collect_events()
    by_county.terminate_benefit("2026-12", "县民政局决定停发", at("2026-11-20"), COUNTY_OFFICER)
    assert filings(by_county) == []


def test_only_events_of_the_case_saved_with_them_are_looked_at():
    v = approved()
    approval = v.pending_events[-1]
    assert isinstance(approval, Verification.Approved) and filed_decision(approval, v) is not None
    assert filed_decision(approval, None) is None
    other = Verification.open(application("C-OTHER", [pid(99)]), "V-OTHER", SYSTEM)
    assert filed_decision(approval, other) is None


# --- receipt and breach ----------------------------------------------------------------------
def filed() -> tuple[CountyFiling, str]:
    (f,) = filings(approved())
    return f, f"{f.filing_id}/county_filing"


def test_received_by_24_00_of_the_due_day_is_met_after_it_late():
    f, deadline_id = filed()
    f.collect_events()
    f.receive("材料齐全", at("2026-10-27", 23), COUNTY_OFFICER)
    [(received_name, received), (cleared_name, cleared)] = wire(f)
    assert (received_name, received["outcome"], received["note"], received["received_by"]) == (
        "CountyFilingReceived", "met", "材料齐全", COUNTY_OFFICER.user_id)
    assert (cleared_name, cleared["deadline_id"], cleared["outcome"], cleared["clock"]) == (
        "DeadlineCleared", deadline_id, "met", "county_filing")
    late, _ = filed()
    late.receive(None, at("2026-10-28", 0), COUNTY_OFFICER)
    assert late.outcome == "late" and late.state == "filed"


def test_a_filing_is_received_once():
    f, _ = filed()
    f.receive(None, at("2026-10-22"), COUNTY_OFFICER)
    with pytest.raises(DecisionNotAllowed) as refused:
        f.receive(None, at("2026-10-23"), COUNTY2)
    assert refused.value.rule == "county_filing_received"


def test_a_breach_is_recorded_once_while_due_and_the_late_receipt_clears_the_clock_late():
    f, deadline_id = filed()
    escalated = {"office": "370502", "level": "county"}
    assert not f.breached(f"{f.filing_id}/referral", "2026-10-28T00:00:00+08:00", escalated, SYSTEM)
    assert f.breached(deadline_id, "2026-10-28T00:00:00+08:00", escalated, SYSTEM)
    assert not f.breached(deadline_id, "2026-10-28T00:00:05+08:00", escalated, SYSTEM)
    assert f.state == "overdue"
    f.receive(None, at("2026-10-29"), COUNTY_OFFICER)
    assert (f.state, f.outcome) == ("filed", "late")
    assert not f.breached(deadline_id, "2026-10-29T00:00:00+08:00", escalated, SYSTEM)
    again = replay(f.collect_events())
    assert (again.state, again.outcome, again.deadline_id, again.due_date) == ("filed", "late", deadline_id,
                                                                              "2026-10-27")


# --- the monthly statistics --------------------------------------------------------------------
def roll(case: str, region: str, kind: str, assistance_type: str, first_period: str, size: int, *,
         monthly: int | None = None, one_off: int | None = None, decided: str | None = None,
         changes: list[tuple[str, str, int | None]] = (), deaths: list[str] = (), exit_period: str | None = None):
    return {"case_id": case, "region_code": region, "kind": kind, "assistance_type": assistance_type,
            "first_period": first_period, "decided_period": decided or first_period, "household_size": size,
            "monthly_amount_fen": monthly, "one_off_amount_fen": one_off, "approval_level": "township",
            "changes": [{"change": c, "from_period": p, "monthly_amount_fen": a} for c, p, a in changes],
            "deaths": list(deaths), "exit_period": exit_period}


def test_a_monthly_benefit_counts_for_the_periods_it_is_paid_at_the_amount_in_force():
    r = roll("C-1", "370502101001", "monthly", "dibao", "2026-11", 3, monthly=206000, decided="2026-10",
             changes=[("adjust", "2027-01", 150001), ("suspend", "2027-03", None), ("resume", "2027-05", None),
                      ("terminate", "2027-08", None)], deaths=["2027-06"])
    assert [standing(r, p) for p in ("2026-10", "2026-11", "2027-01", "2027-03", "2027-05", "2027-06",
                                     "2027-07", "2027-08")] == [
        None, (3, 206000), (3, 150001), None, (3, 150001), (2, 150001), (2, 150001), None]
    # Fraud confirmed after a grace termination ends it sooner: the earlier termination counts.
    fraud = {**r, "changes": [*r["changes"], {"change": "terminate", "from_period": "2027-06",
                                             "monthly_amount_fen": None}]}
    assert standing(fraud, "2027-06") is None and standing(fraud, "2027-05") == (3, 150001)
    assert standing({"kind": None}, "2027-01") is None


def test_one_off_relief_counts_in_its_month_a_recognition_from_its_first_period():
    relief = roll("C-2", "370502101001", "one_off", "linshi_jinan", "2026-11", 1, one_off=150000)
    assert [standing(relief, p) for p in ("2026-10", "2026-11", "2026-12")] == [None, (1, 150000), None]
    known = roll("C-3", "370502101001", "recognition", "low_income", "2026-12", 4, decided="2026-11")
    assert [standing(known, p) for p in ("2026-11", "2026-12", "2030-01")] == [None, (4, 0), (4, 0)]


def test_figures_per_township_and_county_by_assistance_type_to_the_fen():
    rolls = [
        roll("C-1", "370502101001", "monthly", "dibao", "2026-11", 2, monthly=206000, decided="2026-10"),
        roll("C-2", "370502101002", "monthly", "dibao", "2026-11", 3, monthly=98999, decided="2026-10",
             changes=[("terminate", "2026-12", None)], exit_period="2026-11"),
        roll("C-3", "370502102001", "monthly", "tekun", "2026-12", 1, monthly=123456, decided="2026-11"),
        roll("C-4", "370502102001", "one_off", "linshi_zhichu", "2026-11", 2, one_off=300001),
        roll("C-5", "370502101001", "monthly", "dibao", "2026-11", 2, monthly=100000, decided="2026-10",
             changes=[("suspend", "2026-11", None)]),
        roll("C-6", "370602101001", "monthly", "dibao", "2026-11", 5, monthly=500000, decided="2026-10"),
        {"case_id": "C-7", "region_code": "370502103001", "kind": None},  # never approved
    ]
    townships, total = figures(rolls, "370502", "2026-11")
    by = {t["township_code"]: {f["assistance_type"]: f for f in t["figures"]} for t in townships}
    assert list(by) == ["370502101", "370502102"]  # 370602 is another county; 103 has nothing
    assert by["370502101"]["dibao"] == {"assistance_type": "dibao", "cases": 2, "people": 5,
                                        "amount_fen": 304999, "inclusions": 0, "exits": 1}
    assert by["370502102"]["tekun"] == {"assistance_type": "tekun", "cases": 0, "people": 0, "amount_fen": 0,
                                        "inclusions": 1, "exits": 0}
    assert by["370502102"]["linshi_zhichu"]["amount_fen"] == 300001
    assert [f["assistance_type"] for f in total] == ["dibao", "tekun", "linshi_jinan", "linshi_zhichu",
                                                     "low_income"]
    assert {f["assistance_type"]: (f["cases"], f["people"], f["amount_fen"], f["inclusions"], f["exits"])
            for f in total} == {"dibao": (2, 5, 304999, 0, 1), "tekun": (0, 0, 0, 1, 0),
                                "linshi_jinan": (0, 0, 0, 0, 0), "linshi_zhichu": (1, 2, 300001, 1, 0),
                                "low_income": (0, 0, 0, 0, 0)}
    assert figures(rolls, "370502", "2026-09") == ([], total_zero())


def total_zero() -> list[dict]:
    return [{"assistance_type": t, "cases": 0, "people": 0, "amount_fen": 0, "inclusions": 0, "exits": 0}
            for t in ("dibao", "tekun", "linshi_jinan", "linshi_zhichu", "low_income")]


def test_the_published_statistics_are_valid_and_the_csv_opens_in_excel_with_both_headings():
    rolls = [roll("C-1", "370502101001", "monthly", "dibao", "2026-11", 2, monthly=206005, decided="2026-10")]
    townships, total = figures(rolls, "370502", "2026-11")
    stats = MonthlyStatistics.publish("370502", "2026-11", townships, total, at("2026-12-01"), COUNTY_OFFICER)
    [(name, data)] = wire(stats)
    assert (name, data["statistics_id"], OUTBOUND(stats.pending_events[0]).subject) == (
        "MonthlyStatisticsPublished", "MS-370502-2026-11", "MS-370502-2026-11")
    raw = statistics_csv(data)
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 byte order mark: Excel reads the Chinese right
    lines = raw.decode("utf-8-sig").split("\r\n")
    assert lines[0].split(",") == [f"{zh}({code})" for zh, code in CSV_COLUMNS]
    assert lines[0].startswith("统计月份(period),县级区划代码(county_code),区划代码(region_code)")
    assert lines[1] == "2026-11,370502,370502101,township,dibao,最低生活保障,1,2,206005,2060.05,0,0"
    assert lines[6] == "2026-11,370502,370502,county,dibao,最低生活保障,1,2,206005,2060.05,0,0"
    assert lines[7].startswith("2026-11,370502,370502,county,tekun,特困人员救助供养,0,0,0,0.00")
    assert len(lines) == 1 + 5 + 5 + 1 and lines[-1] == ""


def test_yuan_is_exact():
    assert [yuan(n) for n in (0, 1, 99, 100, 206005, 123456789)] == [
        "0.00", "0.01", "0.99", "1.00", "2060.05", "1234567.89"]
