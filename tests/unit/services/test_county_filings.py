"""镇→县备案 and the monthly statistics through verification's routes, store and consumer (issue 17,
part 5): a township's approval is filed in the transaction that stores it (command or consumed
death alike), listed by region and state, received by a county officer of its county (met or
late), made overdue by notify's DeadlineBreached; the statistics are published once per county
and period and downloaded as CSV. Bad input is problem+json naming the field or the rule, and
stores nothing."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from lifeline.domain.clock import FixedClock
from lifeline.http.auth import mint_token
from lifeline.rules.periods import SHANGHAI
from services.verification.bootstrap import SPEC
from services.verification.county_filings import CountyFiling, CountyFilingOut, MonthlyStatistics, MonthlyStatisticsOut
from services.verification.domain import Verification

from . import (
    approved_in_process, cloud, feed, log_length, pid, service_http, stored,
)

SECRET = "test-county-filings-secret-0123456789abcdef0123"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)  # Wednesday: approved now, paid from 2026-12
TOWNSHIP = "370502101"


def bearer(role: str, region: str = "370502", user: str | None = None) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region, user_id=user)}


@pytest.fixture
def http(tmp_path):
    with service_http(SPEC, tmp_path, SECRET, NOW) as app:
        yield app




def approved_case(http, ids: list[str], **overrides) -> str:
    """Checked (nobody earns anything), taken through the procedure and approved now by a
    township reviewer."""
    return approved_in_process(http.state.runtime.app, ids, NOW, **overrides)


def client(http) -> TestClient:
    return TestClient(http, raise_server_exceptions=False)


def listed(http, role: str = "county_officer", office: str = "370502", **params) -> list[dict]:
    r = client(http).get("/v1/filings/county", params=params, headers=bearer(role, office))
    assert r.status_code == 200, r.text
    for item in r.json()["items"]:
        assert CountyFilingOut.model_validate(item).model_dump(mode="json") == item
    return r.json()["items"]


def filing_of(http, case_id: str) -> dict:
    (doc,) = [d for d in listed(http, "admin", "000000") if d["case_id"] == case_id]
    return doc


def problem(r, status: int, pointer: str | None = None, rule: str | None = None, parameter: str | None = None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if pointer is not None:
        assert pointer in [e.get("pointer") for e in body.get("errors", [])], body
    if parameter is not None:
        assert parameter in [e.get("parameter") for e in body.get("errors", [])], body
    if rule is not None:
        assert body["rule"] == rule, body
    return body


def receive(http, filing_id: str, body: dict | None = None, role: str = "county_officer", office: str = "370502"):
    return client(http).post(f"/v1/filings/county/{filing_id}/receipt", json={} if body is None else body,
                             headers=bearer(role, office, "officer-zhang"))


def test_a_township_approval_is_filed_with_its_clock_in_the_same_transaction(http):
    case_id = approved_case(http, [pid(411), pid(412, female=True)])
    app = http.state.runtime.app
    events = stored(app)
    approval = next(i for i, e in enumerate(events) if isinstance(e, Verification.Approved))
    due = next(i for i, e in enumerate(events) if isinstance(e, CountyFiling.Due))
    # Saved with the decision (the review cycle the decision schedules, then the filing and its clock).
    assert [type(e).__name__ for e in events[approval:due + 2]] == ["Approved", "ReviewScheduled", "Due",
                                                                    "DeadlineSet"]
    assert events[due].filing_id == f"CF-{case_id}-{events[approval].originator_version}"
    doc = filing_of(http, case_id)
    assert (doc["decision"], doc["state"], doc["township_code"], doc["due_date"], doc["monthly_amount_fen"],
            doc["household_size"], doc["applicant_name_masked"]) == (
        "inclusion", "due", TOWNSHIP, "2026-12-02", 206000, 2, "王*明")  # 11-26, 27, 30, 12-01, 02
    assert events[due + 1].responsible_office == TOWNSHIP and events[due + 1].clock == "county_filing"


def test_filings_are_listed_within_the_region_and_by_state(http):
    case_id = approved_case(http, [pid(413)])
    filing_id = filing_of(http, case_id)["filing_id"]
    assert [d["filing_id"] for d in listed(http, "reviewer", TOWNSHIP)] == [filing_id]
    assert listed(http, "reviewer", "370502102") == []  # another township's office
    assert [d["filing_id"] for d in listed(http, state="due", region=TOWNSHIP)] == [filing_id]
    assert listed(http, state="filed") == [] and listed(http, state="overdue") == []
    problem(client(http).get("/v1/filings/county", params={"region": TOWNSHIP}, headers=bearer("reviewer", "370502102")),
            403)
    problem(client(http).get("/v1/filings/county", params={"state": "late"}, headers=bearer("county_officer")), 422)
    problem(client(http).get("/v1/filings/county", headers=bearer("clerk", TOWNSHIP)), 403)
    r = client(http).get(f"/v1/filings/county/{filing_id}", headers=bearer("reviewer", TOWNSHIP))
    assert r.status_code == 200 and r.json()["filing_id"] == filing_id
    problem(client(http).get(f"/v1/filings/county/{filing_id}", headers=bearer("reviewer", "370502102")), 403)
    problem(client(http).get("/v1/filings/county/CF-NOPE-1", headers=bearer("reviewer", TOWNSHIP)), 404)


def test_a_county_officer_of_its_county_records_receipt_met_once(http):
    case_id = approved_case(http, [pid(414)])
    filing_id = filing_of(http, case_id)["filing_id"]
    app = http.state.runtime.app
    before = log_length(app)
    problem(receive(http, filing_id, role="reviewer", office=TOWNSHIP), 403)
    problem(receive(http, filing_id, office="370602"), 403)        # another county's officer
    problem(receive(http, filing_id, {"note": "x" * 501}), 422, "#/note")
    problem(receive(http, filing_id, {"remark": "收到"}), 422, "#/remark")
    problem(receive(http, "CF-NOPE-1"), 404)
    assert log_length(app) == before  # nothing stored
    app.clock = FixedClock(NOW + timedelta(days=5))  # Monday 11-30, before the due day's end
    r = receive(http, filing_id, {"note": "纸质材料齐全"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["outcome"], r.json()["note"], r.json()["received_by"]) == (
        "filed", "met", "纸质材料齐全", "officer-zhang")
    (cleared,) = [e for e in stored(app, CountyFiling.DeadlineCleared)]
    assert (cleared.deadline_id, cleared.outcome) == (f"{filing_id}/county_filing", "met")
    problem(receive(http, filing_id), 409, rule="county_filing_received")
    assert [d["filing_id"] for d in listed(http, state="filed")] == [filing_id]


def breached(filing_id: str, case_id: str, clock: str = "county_filing") -> object:
    return cloud("DeadlineBreached", {
        "deadline_id": f"{filing_id}/{clock}", "case_id": case_id, "clock": clock, "label_zh": "乡镇审核确认结果报县备案",
        "region_code": "370502101001", "responsible_office": TOWNSHIP, "due_date": "2026-12-02",
        "due_at": "2026-12-03T00:00:00+08:00", "breached_at": "2026-12-03T00:00:05+08:00",
        "escalated_to": {"office": "370502", "level": "county"}}, subject=case_id, source="lifeline/notify")


def test_a_breach_from_the_deadline_watch_makes_it_overdue_and_the_receipt_late(http):
    case_id = approved_case(http, [pid(415)])
    filing_id = filing_of(http, case_id)["filing_id"]
    app = http.state.runtime.app
    assert app.process_cloud_event(breached(filing_id, case_id, "referral"))  # another clock: not ours
    assert app.process_cloud_event(breached("CF-NOPE-1", case_id))            # not a filing of ours
    assert stored(app, CountyFiling.Overdue) == []
    assert app.process_cloud_event(breached(filing_id, case_id))
    assert app.process_cloud_event(breached(filing_id, case_id))  # another breach event: once
    assert len(stored(app, CountyFiling.Overdue)) == 1
    doc = filing_of(http, case_id)
    assert (doc["state"], doc["escalated_to"]) == ("overdue", {"office": "370502", "level": "county"})
    app.clock = FixedClock(datetime(2026, 12, 4, 9, 0, tzinfo=SHANGHAI))
    r = receive(http, filing_id)
    assert (r.json()["state"], r.json()["outcome"]) == ("filed", "late")
    (cleared,) = stored(app, CountyFiling.DeadlineCleared)
    assert cleared.outcome == "late"


def test_an_exit_is_filed_whichever_path_decided_it_a_suspension_is_not(http):
    app = http.state.runtime.app
    changed = approved_case(http, [pid(416), pid(417, female=True)])
    died = approved_case(http, [pid(418)])
    r = client(http).post(f"/v1/verifications/{changed}/benefit-changes", headers=bearer("reviewer", TOWNSHIP, "rev-2"),
                          json={"change": "suspend", "from_period": "2027-01", "reason": "外出务工，暂停发放"})
    assert r.status_code == 200, r.text
    assert {f.decision for f in stored(app, CountyFiling.Due)} == {"inclusion"}
    r = client(http).post(f"/v1/verifications/{changed}/benefit-changes", headers=bearer("reviewer", TOWNSHIP, "rev-2"),
                          json={"change": "terminate", "from_period": "2027-02", "reason": "家庭收入超过标准，停发"})
    assert r.status_code == 200, r.text
    # The only member's death, consumed from public security: the benefit ends, and is filed.
    feed(app, "DeathReported", {"record_id": "PS-CF-1", "department": "public_security", "id_number": pid(418),
                                "name": "王乐", "date_of_death": "2026-11-30", "reported_at": "2026-12-01T09:00:00+08:00"},
         "PS-CF-1", "partner/public_security")
    exits = {f.case_id: f for f in stored(app, CountyFiling.Due) if f.decision == "exit"}
    assert (exits[changed].from_period, exits[changed].decided_by, exits[changed].household_size) == (
        "2027-02", "rev-2", 2)
    assert (exits[died].from_period, exits[died].decided_by) == ("2026-12", "system:verification")
    assert [d["decision"] for d in listed(http, region=TOWNSHIP) if d["case_id"] == died] == ["inclusion", "exit"]


def publish(http, county: str = "370502", period: str = "2026-12", role: str = "county_officer",
            office: str = "370502"):
    return client(http).post(f"/v1/statistics/{county}/{period}", headers=bearer(role, office, "officer-li"))


def test_monthly_statistics_are_published_once_per_county_and_period(http):
    app = http.state.runtime.app
    two = approved_case(http, [pid(421), pid(422, female=True)])  # 206,000 fen a month for two
    approved_case(http, [pid(423)], region_code="370502102001")   # another township: 103,000 for one
    rural = approved_case(http, [pid(424)], area="rural")          # 77,000 for one
    client(http).post(f"/v1/verifications/{rural}/benefit-changes", headers=bearer("reviewer", TOWNSHIP, "rev-3"),
                      json={"change": "adjust", "from_period": "2026-12", "monthly_amount_fen": 50001,
                            "reason": "调整保障金"}).raise_for_status()
    assert two
    problem(publish(http), 409, rule="period_not_over")  # December is not over on 11-25
    app.clock = FixedClock(datetime(2027, 1, 4, 9, 0, tzinfo=SHANGHAI))
    before = log_length(app)
    problem(publish(http, period="2026-13"), 422, parameter="period")
    problem(publish(http, county="37050"), 422, parameter="county_code")
    problem(publish(http, county="999999"), 422, parameter="county_code")
    problem(publish(http, office="370602"), 403)
    problem(publish(http, role="reviewer", office=TOWNSHIP), 403)
    assert log_length(app) == before

    r = publish(http)
    assert r.status_code == 201, r.text
    body = r.json()
    assert MonthlyStatisticsOut.model_validate(body).model_dump() == body
    total = {f["assistance_type"]: f for f in body["county_total"]}
    assert total["dibao"] == {"assistance_type": "dibao", "cases": 3, "people": 4,
                              "amount_fen": 206000 + 103000 + 50001, "inclusions": 0, "exits": 0}
    by = {t["township_code"]: t["figures"][0] for t in body["townships"]}
    assert {k: (f["cases"], f["people"], f["amount_fen"]) for k, f in by.items()} == {
        TOWNSHIP: (2, 3, 256001), "370502102": (1, 1, 103000)}
    again = publish(http)
    assert (again.status_code, again.json()) == (200, body)  # once: the same figures
    assert len(stored(app, MonthlyStatistics.Published)) == 1
    november = publish(http, period="2026-11").json()
    assert {f["assistance_type"]: (f["cases"], f["inclusions"]) for f in november["county_total"]}["dibao"] == (0, 3)

    r = client(http).get("/v1/statistics/370502/2026-12.csv", headers=bearer("auditor"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="statistics-370502-2026-12.csv"' in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    county_dibao = [row for row in rows if row["层级(level)"] == "county" and row["救助类型(assistance_type)"] == "dibao"]
    assert [(row["保障户数(cases)"], row["保障人数(people)"], row["金额（分）(amount_fen)"], row["金额（元）(amount_yuan)"])
            for row in county_dibao] == [("3", "4", "359001", "3590.01")]
    assert len(rows) == 5 * 3  # two townships and the county, five assistance types each
    assert client(http).get("/v1/statistics/370502/2026-12", headers=bearer("auditor")).json() == body
    problem(client(http).get("/v1/statistics/370502/2026-10.csv", headers=bearer("auditor")), 404)
    problem(client(http).get("/v1/statistics/370502/2026-12.csv", headers=bearer("reviewer", TOWNSHIP)), 403)
    problem(client(http).get("/v1/statistics/370602/2026-12.csv", headers=bearer("county_officer")), 403)
