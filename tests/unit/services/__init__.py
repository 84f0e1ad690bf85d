"""Unit tests of the five services: aggregates, use cases, encryption at rest, CLI.

Shared builders live here (the brief allows no conftest of our own). Nothing
here touches Kafka, Redis or the network; event stores are SQLite in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import uuid
from datetime import date
from collections.abc import Iterator
from typing import Any

from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.utils import get_topic

from lifeline.contracts import registry
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.aggregate import Meta
from lifeline.domain.values import VALUE_TRANSCODINGS, Application, BankAccount
from lifeline.rules.ids import make_resident_id
from lifeline.stores.sealing import Sealer
from tests.harness import household

# Mirrors lifeline.stores.eventstore.event_store_env (multi-row tracking), but in memory.
MEMORY_ENV = {
    "PERSISTENCE_MODULE": "eventsourcing.sqlite",
    "SQLITE_DBNAME": ":memory:",
    "SINGLE_ROW_TRACKING": "n",
}

VILLAGE = "370502101001"  # a village of county 370502 (东营区)
TOWNSHIP = "370502101"
CLERK = Meta("clerk-001", "clerk", TOWNSHIP)
REVIEWER = Meta("reviewer-001", "reviewer", TOWNSHIP)
COUNTY_OFFICER = Meta("county-001", "county_officer", "370502")
SYSTEM = Meta("system:test", "system")
SYSTEM_META = SYSTEM.as_dict()
ACTOR = {"user_id": "clerk-001", "role": "clerk", "org_code": TOWNSHIP}

_sequence = itertools.count(1)


def pid(seq: int, *, born: date = date(1980, 5, 1), female: bool = False) -> str:
    """A resident ID number of county 370502 with a valid check digit."""
    return make_resident_id("370502", born, seq, female)


APPLICANT_NAME = "王小明"
NAMES = [APPLICANT_NAME, "李红", "王乐", "王安"]


def new_case_id() -> str:
    return f"C-T{uuid.uuid4().hex[:12].upper()}"


# The account number in tests.harness.household; sealed with the key intake is given in tests.
ACCOUNT_NUMBER = "6228480012345670001"
SEALER = Sealer("test-secret")
SUBMITTED_AT = "2026-11-25T09:00:00+08:00"

# What the intake API's model fills in when the body leaves them out (ApplicationIn, MemberIn).
FORM_DEFAULTS: dict[str, Any] = {
    "declared_medical_expense_fen": 0, "declared_education_expense_fen": 0,
    "requested_amount_fen": 0, "single_person_member_id": None,
}
MEMBER_DEFAULTS: dict[str, Any] = {"co_resident": True, "support_obligor": False, "support_paid_fen": 0,
                                   "cadre_relation": None}


def application_body(ids: list[str], *, names: list[str] | None = None, **overrides: Any) -> dict:
    """A valid application (what the intake API passes to submit_application: its model_dump,
    defaults included)."""
    body = household(ids, overrides.pop("region_code", VILLAGE), names=names or NAMES, **overrides)
    for name, value in FORM_DEFAULTS.items():
        body.setdefault(name, value)
    body["members"] = [{**MEMBER_DEFAULTS, **m} for m in body["members"]]
    return body


def sealed_account(account: dict[str, str] | None = None) -> dict[str, str]:
    """The bank account as events carry it: number sealed and masked (BankAccount's fields)."""
    account = account or {"channel": "RCC", "account_number": ACCOUNT_NUMBER, "account_name": APPLICANT_NAME}
    number = account["account_number"]
    return dataclasses.asdict(BankAccount(
        channel=account["channel"], account_name=account["account_name"],
        number_masked=BankAccount.mask(number), number_sealed=SEALER.seal(number),
    ))


def application(case_id: str, ids: list[str], **overrides: Any) -> Application:
    """The application intake registers for this body (clerk-001, submitted SUBMITTED_AT)."""
    body = application_body(ids, **overrides)
    return Application.from_wire({
        **body, "case_id": case_id, "clerk_id": "clerk-001", "submitted_at": SUBMITTED_AT,
        "bank_account": sealed_account(body["bank_account"]),
    })


def submitted_data(case_id: str, ids: list[str], **overrides: Any) -> dict:
    """The data of an ApplicationSubmitted event (current version)."""
    return application(case_id, ids, **overrides).to_wire()


def cloud(name: str, data: dict, *, subject: str, source: str, sequence: int | None = None,
          **kw: Any) -> CloudEvent:
    """A valid CloudEvent as a consumer would receive it (fresh position unless given; a
    township clerk acting unless `actor` says otherwise)."""
    return registry.new_event(
        name, data, subject=subject, source=source,
        sequence=sequence if sequence is not None else next(_sequence), **{"actor": ACTOR, **kw},
    )


def record_row(id_number: str, **figures: int | None) -> dict:
    row = {
        "id_number": id_number, "monthly_income_fen": 0, "income_tax_fen": 0,
        "social_insurance_fen": 0, "assets_fen": 0, "medical_expense_fen": 0,
        "education_expense_fen": 0,
    }
    row.update(figures)
    return row


def report(case_id: str, department: str, request_id: str, rows: list[dict]) -> dict:
    """The data of a DepartmentRecordsReported event."""
    return {
        "request_id": request_id, "case_id": case_id, "department": department,
        "members": rows, "reported_at": "2026-11-25T10:00:00+08:00",
    }


def benefit_data(case_id: str, benefit_id: str = "B-0123456789ABCDEF0123", **overrides: Any) -> dict:
    """The data of a BenefitApproved event (v2): a monthly benefit unless overridden."""
    account = sealed_account()
    data = {
        "case_id": case_id, "benefit_id": benefit_id, "verification_id": "V-1",
        "household": {"members_count": 2, "region_code": VILLAGE, "area": "urban"},
        "kind": "monthly", "benefit_type": "dibao", "tier": "B", "monthly_amount_fen": 206000,
        "one_off_amount_fen": None, "fund_source": None, "first_period": "2026-12",
        "bank_account_ref": BankAccount(**account).ref, "bank_account": account,
        "approving_body": f"{TOWNSHIP} 乡镇审核确认小组", "approval_level": "township",
        "reason": "符合条件", "approved_at": "2026-11-25T15:00:00+08:00",
    }
    data.update(overrides)
    return data


def one_off_benefit_data(case_id: str, benefit_id: str = "B-0123456789ABCDEF0123", **overrides: Any) -> dict:
    """The data of a BenefitApproved event (v2) for one-off emergency relief (临时救助)."""
    return benefit_data(case_id, benefit_id, **{
        "kind": "one_off", "benefit_type": "linshi_jinan", "tier": None, "monthly_amount_fen": None,
        "one_off_amount_fen": 200000, "fund_source": "temporary_relief_budget",
        "first_period": "2026-11", **overrides,
    })


def replay(events: list) -> Any:
    """The aggregate rebuilt from its events, as the repository would."""
    aggregate = None
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def stored(app, *types: type) -> list:
    """Every domain event in an application's log (optionally only of some types)."""
    notifications = app.recorder.select_notifications(1, 10_000)
    events = [app.mapper.to_domain_event(n) for n in notifications]
    return [e for e in events if not types or isinstance(e, types)]


def log_length(app) -> int:
    return app.recorder.max_notification_id() or 0


def event_mapper() -> Mapper:
    """A mapper transcoding as the services' event stores do (no cipher)."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO(), *VALUE_TRANSCODINGS):
        transcoder.register(transcoding)
    return Mapper(transcoder)


def old_stored_event(mapper: Mapper, event_class: type, originator_id: uuid.UUID, version: int,
                     **state: Any) -> StoredEvent:
    """A row as an earlier class version of `event_class` wrote it: `state` holds that version's
    attributes (besides the originator's id and version) and no `class_version`, so reading it
    back runs the class's upcasters from v1."""
    return StoredEvent(
        originator_id=originator_id, originator_version=version, topic=get_topic(event_class),
        state=mapper.transcoder.encode(state),
    )


# --- the statutory procedure (issue 9) ---------------------------------------------------
CASEWORKER = Meta("caseworker-001", "caseworker", TOWNSHIP)
SURVEYORS = [{"name": "李卫东", "role": "village_cadre"}, {"name": "赵敏", "role": "township_staff"}]


def accepted_data(case_id: str, accepted_at: str, region_code: str = VILLAGE) -> dict:
    """ApplicationAccepted as intake publishes it."""
    return {
        "case_id": case_id, "region_code": region_code, "assistance_type": "dibao",
        "applicant_name_masked": "王*明", "members_count": 2, "reason": "材料齐全，予以受理",
        "accepted_at": accepted_at,
    }


def ready_to_decide(v: Any, decided_at: Any, proposal: str = "include", by: Meta = CASEWORKER) -> None:
    """Take a completed Verification through survey, initial review and public notice (and an
    appraisal when the check warned), early enough that a decision may be taken at `decided_at`:
    the steps happen 12 days before it, the notice is over by then."""
    from datetime import timedelta

    day0 = decided_at - timedelta(days=12)
    if v.survey is None:
        v.record_survey(SURVEYORS, day0.date(), "入户调查情况与申报一致", day0, by)
    v.propose(proposal, "拟纳入" if proposal == "include" else "拟不予纳入", day0, by)
    if proposal == "include":
        v.post_notice("P-1", day0, by)
        if v.appraisal_due:
            v.hold_appraisal(day0.date(), 9, 7, 1, 1, "多数同意", day0, by)


@contextlib.contextmanager
def service_http(spec: Any, tmp_path: Any, secret: str, now: Any) -> Iterator[Any]:
    """A service's HTTP app in process on a temporary data dir, its clock fixed at `now`; no
    broker and no Redis (requests carry no Idempotency-Key)."""
    from lifeline.domain.clock import FixedClock
    from lifeline.http.app import create_http_app
    from lifeline.settings import Settings

    closed = "127.0.0.1:1"
    settings = Settings.from_env({
        "LIFELINE_DATA_DIR": str(tmp_path), "LIFELINE_JWT_SECRET": secret,
        "LIFELINE_KAFKA_BOOTSTRAP": closed, "LIFELINE_REDIS_URL": f"redis://{closed}/0",
    })
    app = create_http_app(spec, settings)
    app.state.runtime.app.clock = FixedClock(now)
    try:
        yield app
    finally:
        app.state.runtime.side.close()
        app.state.runtime.app.close()


def feed(app: Any, name: str, data: dict, subject: str, source: str) -> None:
    """A CloudEvent as its producer would publish it, processed by `app`'s consumer."""
    app.process_cloud_event(cloud(name, data, subject=subject, source=source))


def approved_in_process(app: Any, ids: list[str], now: Any, reason: str = "符合低保条件", **overrides: Any) -> str:
    """A case taken through verification in process (application fed, accepted 14 days before
    `now`, every department answering that nobody earns anything, the steps done) and approved
    at `now` by a township reviewer."""
    from datetime import timedelta

    case_id = new_case_id()
    feed(app, "ApplicationSubmitted", submitted_data(case_id, ids, **overrides), case_id, "lifeline/intake")
    feed(app, "ApplicationAccepted", accepted_data(case_id, (now - timedelta(days=14)).isoformat()), case_id,
         "lifeline/intake")
    for department, request_id in app.get_verification(case_id).requests.items():
        feed(app, "DepartmentRecordsReported", report(case_id, department, request_id, [record_row(n) for n in ids]),
             case_id, f"partner/{department}")
    v = app.get_verification(case_id)
    ready_to_decide(v, now)
    app.save(v)
    app.decide(case_id, "approve", reason, REVIEWER)
    return case_id


def problem(r, status: int, parameter: str | None = None) -> dict:
    """A problem+json answer of `status`, naming the query `parameter` alone when given."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    if parameter is not None:
        assert [(e.get("parameter"), e.get("in")) for e in body["errors"]] == [(parameter, "query")], body
    return body
