"""备案 (issue 9, step 6): cadres and their close relatives, declared at intake or found in the
county's cadre register, are filed; the register and the filings through their routes; and
applications from before ApplicationSubmitted v4 still read (nobody declared anything)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import date, datetime
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from lifeline.contracts import registry
from lifeline.contracts.envelope import CloudEvent
from lifeline.domain.clock import FixedClock
from lifeline.domain.values import Application, Member
from lifeline.http.app import create_http_app
from lifeline.http.auth import mint_token
from lifeline.rules.ids import make_resident_id
from lifeline.rules.periods import SHANGHAI
from lifeline.settings import Settings
from lifeline.stores.sidestore import SideStore
from services.intake.api import MemberIn
from services.intake.domain import Case
from services.verification import filings as F
from services.verification.application import VerificationApplication
from services.verification.bootstrap import SPEC
from services.verification.domain import Verification
from services.verification.filings import (
    CadreEntryIn,
    CadreRegister,
    CadreRegisterIn,
    InvalidRegister,
    filing_reasons,
    load_register,
    project_filing,
    register_entries,
)
from tests.unit.contract_examples import ACTOR, APPLICATION_SUBMITTED_V3, APPLICATION_SUBMITTED_V4_AS_CURRENT

from . import COUNTY_OFFICER, MEMORY_ENV, SYSTEM, VILLAGE, application, event_mapper, pid

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=SHANGHAI)
CADRE = F.CADRE_EXAMPLE
RELATIVE = F.RELATIVE_EXAMPLE


def member(seq: int, name: str, cadre_relation: str | None = None, **kw) -> Member:
    return Member(pid(seq), name, kw.pop("relation", "other"), cadre_relation=cadre_relation, **kw)


def entry(id_number: str, name: str = "赵六", relation: str = "cadre", post: str = "东营区某村党支部书记") -> dict:
    return {"id_number": id_number, "name": name, "relation": relation, "post": post}


# --- why a household is filed ---------------------------------------------------------------
def test_nobody_declared_and_nobody_listed_is_no_filing():
    members = [member(1, "王小明", relation="self"), member(2, "李红", relation="spouse")]
    assert filing_reasons(members, []) == []
    assert filing_reasons(members, [entry(pid(9))]) == []


def test_a_declared_member_is_filed_with_a_masked_name():
    members = [member(1, "王小明", relation="self"), member(2, "李红", "close_relative", relation="spouse")]
    assert filing_reasons(members, []) == [
        {"reason": "declared", "relation": "close_relative", "member": "李*"}]


def test_a_member_the_register_lists_is_filed_with_the_post():
    members = [member(1, "王小明", relation="self"), member(2, "李红", relation="spouse")]
    register = [entry(pid(9)), entry(pid(1), "王小明", "close_relative", "某镇副镇长王某之子")]
    assert filing_reasons(members, register) == [
        {"reason": "register", "relation": "close_relative", "member": "王*明", "post": "某镇副镇长王某之子"}]


def test_declared_and_listed_both_count_member_by_member():
    members = [
        member(1, "王小明", "cadre", relation="self"),
        member(2, "李红", relation="spouse"),
        # someone named but living apart (a supporter) is a filing too
        member(3, "王大山", relation="parent", co_resident=False, support_obligor=True),
    ]
    register = [entry(pid(1), "王小明", "cadre", "某村村委会委员"), entry(pid(3), "王大山", "close_relative", "某村主任之父")]
    assert filing_reasons(members, register) == [
        {"reason": "declared", "relation": "cadre", "member": "王*明"},
        {"reason": "register", "relation": "cadre", "member": "王*明", "post": "某村村委会委员"},
        {"reason": "register", "relation": "close_relative", "member": "王*山", "post": "某村主任之父"},
    ]


def test_reasons_never_carry_an_id_number_or_a_full_name():
    x_id = make_resident_id("370502", date(1972, 4, 10), 21, female=False)  # check character X
    assert x_id.endswith("X")
    members = [Member(x_id, "刘志强", "self", cadre_relation="cadre"), member(2, "陈桂兰", "close_relative")]
    register = [entry(x_id.lower(), "刘志强"), entry(pid(2), "陈桂兰", "close_relative")]
    reasons = filing_reasons(members, register)
    assert len(reasons) == 4  # the register's lower-case x still matches
    text = json.dumps(reasons, ensure_ascii=False)
    for secret in (x_id, x_id.lower(), pid(2), "刘志强", "陈桂兰", x_id[:6] + "*"):
        assert secret not in text
    assert {r["member"] for r in reasons} == {"刘*强", "陈*兰"}


# --- the declaration at intake ------------------------------------------------------------
def test_a_member_declares_a_cadre_relation_from_the_closed_list():
    assert Member(pid(1), "王小明").cadre_relation is None
    assert Member(pid(1), "王小明", cadre_relation="cadre").cadre_relation == "cadre"
    with pytest.raises(ValueError, match="cadre_relation"):
        Member(pid(1), "王小明", cadre_relation="mayor")
    body = {"id_number": pid(1), "name": "王小明", "relation": "self"}
    assert MemberIn.model_validate(body).cadre_relation is None
    assert MemberIn.model_validate({**body, "cadre_relation": "close_relative"}).cadre_relation == "close_relative"
    with pytest.raises(ValidationError):
        MemberIn.model_validate({**body, "cadre_relation": "mayor"})


def test_the_declaration_travels_in_application_submitted_v4():
    app = application("C-FILING", [pid(1), pid(2, female=True)])
    members = [app.household.members[0], dataclasses.replace(app.household.members[1], cadre_relation="cadre")]
    app = dataclasses.replace(app, household=dataclasses.replace(app.household, members=tuple(members)))
    data = app.to_wire()
    registry.validate_data("ApplicationSubmitted", data)
    assert registry.CURRENT_VERSIONS["ApplicationSubmitted"] >= 4
    assert [m["cadre_relation"] for m in data["members"]] == [None, "cadre"]
    assert Application.from_wire(data) == app


# --- applications from before v4 -------------------------------------------------------------
def test_an_application_submitted_v3_event_reads_as_v4_with_nobody_declared():
    old = CloudEvent(
        id=str(uuid.uuid4()), source="lifeline/intake", type="cn.gov.mca.lifeline.ApplicationSubmitted.v3",
        subject=APPLICATION_SUBMITTED_V3["case_id"], time="2026-03-02T09:30:00+08:00",
        data=json.loads(json.dumps(APPLICATION_SUBMITTED_V3)), correlationid="c-1", actor=ACTOR, sequence=3,
    )
    registry.validate(old)  # still a valid v3
    event = registry.decode(old.to_json())
    assert event.type == f"cn.gov.mca.lifeline.ApplicationSubmitted.v{registry.CURRENT_VERSIONS['ApplicationSubmitted']}"
    assert event.data == APPLICATION_SUBMITTED_V4_AS_CURRENT  # v4 to v5 changes nothing; v6 adds no contact
    assert all(m["cadre_relation"] is None for m in event.data["members"])
    assert "cadre_relation" not in json.dumps(old.data)  # the old event is untouched
    app = Application.from_wire(event.data)
    assert all(m.cadre_relation is None for m in app.household.members)
    assert Application.from_stored(APPLICATION_SUBMITTED_V3, version=3) == app


def _without_cadre_relation(value):
    if isinstance(value, dict):
        return {k: _without_cadre_relation(v) for k, v in value.items() if k != "cadre_relation"}
    if isinstance(value, list):
        return [_without_cadre_relation(v) for v in value]
    return value


@pytest.mark.parametrize("event_of", [
    lambda app: Case.register(app, SYSTEM).collect_events()[0],
    lambda app: Verification.open(app, "V-FILING", SYSTEM).collect_events()[0],
], ids=["Case.Submitted", "Verification.Started"])
def test_an_application_stored_before_v4_reads_with_nobody_declared(event_of):
    """Rows that stored the Application value before it had cadre_relation (class version 2)."""
    mapper = event_mapper()
    new = mapper.to_stored_event(event_of(application("C-FILING", [pid(1), pid(2, female=True)])))
    state = json.loads(new.state)
    assert "cadre_relation" in json.dumps(state)
    old = dataclasses.replace(new, state=json.dumps(_without_cadre_relation(state)).encode())
    assert b"cadre_relation" not in old.state
    read = mapper.to_domain_event(old)
    members = read.application.household.members
    assert [m.cadre_relation for m in members] == [None, None]
    assert read.application.household.id_numbers == [pid(1), pid(2, female=True)]
    assert filing_reasons(members, []) == []


# --- the cadre register ---------------------------------------------------------------------
def test_a_register_is_loaded_whole_and_replaced_by_the_next_load():
    register = CadreRegister.open("370502", COUNTY_OFFICER)
    assert register.id == CadreRegister.create_id("370502")
    register.load([CADRE, RELATIVE], NOW, COUNTY_OFFICER)
    register.load([{**CADRE, "id_number": CADRE["id_number"].lower(), "name": " 刘志强 "}], NOW, COUNTY_OFFICER)
    opened, first, second = register.collect_events()
    assert isinstance(opened, CadreRegister.Opened) and opened.county_code == "370502"
    assert (first.count, second.count) == (2, 1)
    assert second.entries == [CADRE]  # normalised: upper-case X, names stripped
    assert second.loaded_at == NOW.isoformat() and second.county_code == "370502"
    rebuilt = None
    for event in (opened, first, second):
        rebuilt = event.mutate(rebuilt)
    assert rebuilt.entries == [CADRE] and rebuilt.loaded_at == NOW.isoformat()
    register.load([], NOW, COUNTY_OFFICER)  # an empty register is a register
    assert register.entries == []


@pytest.mark.parametrize(("entries", "message"), [
    ([CADRE, {**RELATIVE, "id_number": RELATIVE["id_number"][:-1] + "2"}], "entry 1: id_number"),
    ([{**CADRE, "relation": "friend"}], "entry 0: relation"),
    ([{**CADRE, "post": " "}], "entry 0: post"),
    ([{**CADRE, "name": ""}], "entry 0: name"),
    ([{**CADRE, "phone": "13800000000"}], "entry 0: an entry has exactly"),
    ([CADRE, RELATIVE, {**CADRE, "post": "另一职务"}], "entry 2: the person of entry 0 is listed again"),
])
def test_a_register_with_a_bad_entry_is_refused_whole(entries, message):
    register = CadreRegister.open("370502", COUNTY_OFFICER)
    register.load([CADRE], NOW, COUNTY_OFFICER)
    with pytest.raises(InvalidRegister, match=message) as info:
        register.load(entries, NOW, COUNTY_OFFICER)
    assert all(e["id_number"] not in str(info.value) for e in entries)  # never echoed
    assert register.entries == [CADRE]
    assert len(register.collect_events()) == 2  # nothing triggered by the refused load


def test_a_register_belongs_to_a_county_and_has_a_size_limit(monkeypatch):
    for not_a_county in ("370500", "370502101", "999999"):
        with pytest.raises(InvalidRegister):
            CadreRegister.open(not_a_county, COUNTY_OFFICER)
    monkeypatch.setattr(F, "MAX_ENTRIES", 1)
    with pytest.raises(InvalidRegister, match="at most 1"):
        CadreRegister.open("370502", COUNTY_OFFICER).load([CADRE, RELATIVE], NOW, COUNTY_OFFICER)


def test_loading_through_the_application_keeps_names_and_numbers_out_of_the_read_models():
    app = VerificationApplication(dict(MEMORY_ENV), clock=FixedClock(NOW))
    assert register_entries(app, "370502") == []
    load_register(app, "370502", [CADRE, RELATIVE], COUNTY_OFFICER)
    register = load_register(app, "370502", [RELATIVE], COUNTY_OFFICER)
    assert F.register_view(register) == {"county_code": "370502", "entries": 1, "loaded_at": NOW.isoformat()}
    assert register_entries(app, "370502") == [RELATIVE]
    assert register_entries(app, "370503") == []
    side = SideStore.in_memory()
    events = [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(1, 100)]
    with side.transaction() as tx:
        assert all(project_filing(e, tx) for e in events)
    assert side.dump() == [("cadre_register", "370502", "370502",
                            {"county_code": "370502", "entries": 1, "loaded_at": NOW.isoformat()})]
    text = json.dumps(side.dump(), ensure_ascii=False)
    assert all(secret not in text for secret in (CADRE["id_number"], RELATIVE["id_number"], "刘志强", "陈桂兰"))


def flagged(case_id: str, region_code: str, reasons: list[dict], at: str) -> SimpleNamespace:
    """What verification's FilingFlagged carries (project_filing reads it by its attributes)."""
    return SimpleNamespace(case_id=case_id, region_code=region_code, reasons=reasons, flagged_at=at)


def test_a_flagged_case_is_one_filing_document_and_other_events_are_not_filings():
    side = SideStore.in_memory()
    declared = {"reason": "declared", "relation": "cadre", "member": "王*明"}
    with side.transaction() as tx:
        assert project_filing(flagged("C-1", VILLAGE, [declared], "2026-11-25T09:00:00+08:00"), tx)
        assert project_filing(flagged("C-1", VILLAGE, [declared, declared], "2026-11-26T09:00:00+08:00"), tx)
        assert not project_filing(SimpleNamespace(case_id="C-2", region_code=VILLAGE), tx)
    assert side.dump() == [("filing", "C-1", VILLAGE, {
        "case_id": "C-1", "region_code": VILLAGE, "reasons": [declared, declared],
        "flagged_at": "2026-11-26T09:00:00+08:00"})]


# --- the routes -------------------------------------------------------------------------------
SECRET = "test-filings-secret-not-for-production-0123456789"
CLOSED = "127.0.0.1:1"  # nothing listens here: Kafka and Redis are never reached


def bearer(role: str, region: str = "370502") -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region)}


@pytest.fixture
def http(tmp_path):
    """Verification's HTTP app with the filings router (and projection), never started: no
    broker, no Redis (requests carry no Idempotency-Key)."""
    settings = Settings.from_env({
        "LIFELINE_DATA_DIR": str(tmp_path), "LIFELINE_JWT_SECRET": SECRET,
        "LIFELINE_KAFKA_BOOTSTRAP": CLOSED, "LIFELINE_REDIS_URL": f"redis://{CLOSED}/0",
    })

    def project(event, tx):
        if not project_filing(event, tx):
            SPEC.project(event, tx)

    app = create_http_app(dataclasses.replace(SPEC, router=F.router, project=project), settings)
    app.state.runtime.app.clock = FixedClock(NOW)
    yield app
    app.state.runtime.side.close()
    app.state.runtime.app.close()


def test_the_example_people_are_valid_resident_ids_of_county_370502():
    assert F.CADRE_ID == make_resident_id("370502", date(1972, 4, 10), 21, female=False)
    assert F.RELATIVE_ID == make_resident_id("370502", date(1975, 9, 2), 40, female=True)
    for example in CadreRegisterIn.model_config["json_schema_extra"]["examples"]:
        CadreRegisterIn.model_validate(example)
    for example in CadreEntryIn.model_config["json_schema_extra"]["examples"]:
        CadreEntryIn.model_validate(example)


def test_a_county_officer_loads_the_register_and_sees_counts_only(http):
    client = TestClient(http, raise_server_exceptions=False)
    officer = bearer("county_officer")
    r = client.put("/v1/cadre-registers/370502", json={"entries": [CADRE, RELATIVE]}, headers=officer)
    assert r.status_code == 200, r.text
    assert r.json() == {"county_code": "370502", "entries": 2, "loaded_at": NOW.isoformat()}
    r = client.put("/v1/cadre-registers/370502", json={"entries": [RELATIVE]}, headers=bearer("admin"))
    assert r.status_code == 200 and r.json()["entries"] == 1
    r = client.get("/v1/cadre-registers/370502", headers=officer)
    assert r.status_code == 200 and r.json() == {"county_code": "370502", "entries": 1, "loaded_at": NOW.isoformat()}
    assert register_entries(http.state.runtime.app, "370502") == [RELATIVE]
    assert client.get("/v1/cadre-registers/370503", headers=bearer("county_officer", "370503")).status_code == 404


@pytest.mark.parametrize(("county", "body", "role", "region", "status"), [
    ("370502", {"entries": [CADRE]}, "clerk", "370502", 403),
    ("370502", {"entries": [CADRE]}, "reviewer", "370502101", 403),
    ("370503", {"entries": [CADRE]}, "county_officer", "370502", 403),      # not the caller's county
    ("370500", {"entries": [CADRE]}, "county_officer", "370500", 422),      # a prefecture
    ("370502101", {"entries": [CADRE]}, "county_officer", "370502", 422),   # a township
    ("370502", {"entries": [{**CADRE, "id_number": CADRE["id_number"][:-1] + "1"}]}, "county_officer", "370502", 422),
    ("370502", {"entries": [CADRE, {**CADRE, "post": "另一职务"}]}, "county_officer", "370502", 422),
    ("370502", {"entries": [{**CADRE, "relation": "friend"}]}, "county_officer", "370502", 422),
    ("370502", {"entries": [CADRE], "source": "x"}, "county_officer", "370502", 422),
])
def test_loading_a_register_is_refused(http, county, body, role, region, status):
    client = TestClient(http, raise_server_exceptions=False)
    r = client.put(f"/v1/cadre-registers/{county}", json=body, headers=bearer(role, region))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert all(e["id_number"] not in r.text for e in body["entries"])
    assert register_entries(http.state.runtime.app, county[:6]) == []


def test_filings_are_listed_within_the_callers_region(http):
    runtime = http.state.runtime
    declared = {"reason": "declared", "relation": "close_relative", "member": "李*"}
    listed = {"reason": "register", "relation": "cadre", "member": "王*明", "post": "某村村委会委员"}
    with runtime.side.transaction() as tx:
        project_filing(flagged("C-B", "370502101001", [declared, listed], "2026-11-25T10:00:00+08:00"), tx)
        project_filing(flagged("C-A", "370502102003", [listed], "2026-11-25T09:00:00+08:00"), tx)
        project_filing(flagged("C-C", "370503100001", [declared], "2026-11-25T08:00:00+08:00"), tx)
    client = TestClient(http, raise_server_exceptions=False)

    def cases(role: str, scope: str, **params) -> list[str]:
        r = client.get("/v1/filings", params=params, headers=bearer(role, scope))
        assert r.status_code == 200, r.text
        return [item["case_id"] for item in r.json()["items"]]

    assert cases("county_officer", "370502") == ["C-A", "C-B"]  # by time flagged
    assert cases("auditor", "370500") == ["C-C", "C-A", "C-B"]
    assert cases("admin", "370500", region="370502101") == ["C-B"]
    assert cases("reviewer", "370502102") == ["C-A"]
    r = client.get("/v1/filings", params={"region": "370502101"}, headers=bearer("county_officer"))
    # the stored document byte for byte: a declared reason has no post
    assert r.json()["items"] == [{"case_id": "C-B", "flagged_at": "2026-11-25T10:00:00+08:00",
                                  "reasons": [declared, listed], "region_code": "370502101001"}]
    assert client.get("/v1/filings", headers=bearer("clerk")).status_code == 403
    assert client.get("/v1/filings", params={"region": "370503"}, headers=bearer("county_officer")).status_code == 403
    assert client.get("/v1/filings", params={"region": "99"}, headers=bearer("county_officer")).status_code == 422
    assert client.get("/v1/filings", params={"region": "990000"}, headers=bearer("county_officer")).status_code == 422


def test_the_routes_are_documented(http):
    doc = http.openapi()
    put = doc["paths"]["/v1/cadre-registers/{county_code}"]["put"]
    assert put["tags"] == ["filings"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CadreRegisterIn"}
    assert {"401", "403", "422"} <= set(put["responses"])
    listing = doc["paths"]["/v1/filings"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FilingsOut"}
