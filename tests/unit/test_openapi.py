"""Each service's OpenAPI document: typed responses, and request-body examples that really work.

The apps are built with `create_http_app` but never started (no lifespan), so no broker or
Redis is needed; the settings point Kafka and Redis at a closed port to make sure of it.
An example must fit the body's JSON Schema in the document AND the pydantic model (which
also checks what a schema cannot say: GB 11643 check digits, region codes in force, one
applicant per household), and it is posted to the real route.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from lifeline.http.app import create_http_app
from lifeline.http.auth import mint_token
from lifeline.http.problems import PROBLEM_JSON
from lifeline.rules.ids import make_resident_id
from lifeline.settings import SERVICES, Settings

SECRET = "test-openapi-secret-not-for-production-0123456789"
COUNTY = "370502"
CLOSED = "127.0.0.1:1"  # nothing listens here: any attempt to reach Kafka or Redis fails fast
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def apps(tmp_path_factory) -> Iterator[dict[str, FastAPI]]:
    settings = Settings.from_env({
        "LIFELINE_DATA_DIR": str(tmp_path_factory.mktemp("openapi")),
        "LIFELINE_JWT_SECRET": SECRET,
        "LIFELINE_KAFKA_BOOTSTRAP": CLOSED,
        "LIFELINE_REDIS_URL": f"redis://{CLOSED}/0",
    })
    built = {
        name: create_http_app(importlib.import_module(f"services.{name}.bootstrap").SPEC, settings)
        for name in SERVICES
    }
    yield built
    for app in built.values():
        runtime = app.state.runtime
        runtime.side.close()
        runtime.app.close()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    return schema


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for `schema` whose "#/components/..." references resolve in `doc`."""
    root = {**copy.deepcopy(schema), "components": doc.get("components", {})}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def component_name(schema: dict[str, Any]) -> str:
    assert "$ref" in schema and schema["$ref"].startswith("#/components/schemas/"), (
        f"a request body is a named model, not {schema}")
    return schema["$ref"].rsplit("/", 1)[-1]


def api_model(service: str, name: str) -> type[BaseModel]:
    """The pydantic model behind a component of `service`'s document (the class of that name)."""
    model = getattr(importlib.import_module(f"services.{service}.api"), name.removesuffix("-Input"), None)
    assert isinstance(model, type) and issubclass(model, BaseModel), f"{service}: no model {name}"
    return model


def examples_of(doc: dict[str, Any], media: dict[str, Any]) -> list[Any]:
    found = list((media.get("examples") or {}).values())
    found = [e["value"] if isinstance(e, dict) and "value" in e else e for e in found]
    if "example" in media:
        found.append(media["example"])
    found.extend(resolve(doc, media.get("schema", {})).get("examples", []))
    return found


def body_operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Operations with a JSON request body (the bank channels' ISO 20022 XML: xml_operations)."""
    return [(m, p, op) for m, p, op in operations(doc)
            if "requestBody" in op and "application/xml" not in op["requestBody"]["content"]]


def xml_operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for m, p, op in operations(doc)
            if "requestBody" in op and "application/xml" in op["requestBody"]["content"]]


@pytest.mark.parametrize("service", SERVICES)
def test_xml_request_bodies_are_described_with_an_example(apps, service):
    for method, path, op in xml_operations(apps[service].openapi()):
        media = op["requestBody"]["content"]["application/xml"]
        assert media.get("schema", {}).get("type") == "string", f"{method} {path}"
        assert media.get("example", "").startswith("<?xml"), f"{method} {path}: no example document"


def nested_models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """`model` and every model its fields are made of."""
    seen: set[type] = set()
    todo: list[Any] = [model]
    while todo:
        tp = todo.pop()
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in seen:
                continue
            seen.add(tp)
            yield tp
            todo.extend(f.annotation for f in tp.model_fields.values())
        else:
            todo.extend(getattr(tp, "__args__", ()))


# --- request bodies ---------------------------------------------------------------------
def test_the_services_that_take_bodies_are_the_ones_expected(apps):
    with_bodies = {
        (name, m, p) for name, app in apps.items() for m, p, _ in body_operations(app.openapi())
    }
    assert {
        ("intake", "POST", "/v1/applications"),
        ("intake", "POST", "/v1/cases/{case_id}/referrals"),
        ("verification", "POST", "/v1/verifications/{case_id}/decision"),
        ("charity", "POST", "/v1/funds"),
    } <= with_bodies


@pytest.mark.parametrize("service", SERVICES)
def test_every_request_body_has_examples_valid_for_the_schema_and_the_model(apps, service):
    doc = apps[service].openapi()
    for method, path, op in body_operations(doc):
        content = op["requestBody"]["content"]
        assert "application/json" in content, f"{method} {path}"
        media = content["application/json"]
        examples = examples_of(doc, media)
        assert examples, f"{service} {method} {path}: the request body has no example"
        model = api_model(service, component_name(media["schema"]))
        check = validator(doc, media["schema"])
        for example in examples:
            errors = [e.message for e in check.iter_errors(example)]
            assert not errors, f"{service} {method} {path}: example does not fit the schema: {errors}"
            model.model_validate(example)  # raises when the route would refuse it


@pytest.mark.parametrize("service", SERVICES)
def test_nested_body_models_have_valid_examples_too(apps, service):
    doc = apps[service].openapi()
    schemas = doc.get("components", {}).get("schemas", {})
    for _, _, op in body_operations(doc):
        body = api_model(service, component_name(op["requestBody"]["content"]["application/json"]["schema"]))
        for model in nested_models(body):
            name = model.__name__ if model.__name__ in schemas else f"{model.__name__}-Input"
            examples = schemas[name].get("examples")
            assert examples, f"{service}: {model.__name__} has no example"
            check = validator(doc, {"$ref": f"#/components/schemas/{name}"})
            for example in examples:
                assert not [e.message for e in check.iter_errors(example)], (service, name, example)
                model.model_validate(example)


def test_the_example_people_are_valid_resident_ids_of_county_370502():
    from services.intake import api

    assert api.APPLICANT_ID == make_resident_id(COUNTY, date(1968, 3, 15), 12, female=False)
    assert api.SPOUSE_ID == make_resident_id(COUNTY, date(1970, 7, 22), 37, female=True)
    assert api.CHILD_ID == make_resident_id(COUNTY, date(2008, 9, 1), 5, female=True)


def test_a_broken_example_is_caught_by_the_model_where_the_schema_cannot(apps):
    """Why both checks: a wrong check digit fits the JSON Schema but not the route."""
    doc = apps["intake"].openapi()
    media = doc["paths"]["/v1/applications"]["post"]["requestBody"]["content"]["application/json"]
    example = copy.deepcopy(examples_of(doc, media)[0])
    number = example["members"][0]["id_number"]
    example["members"][0]["id_number"] = number[:-1] + ("0" if number[-1] != "0" else "1")
    assert not list(validator(doc, media["schema"]).iter_errors(example))
    with pytest.raises(ValidationError, match="resident ID"):
        api_model("intake", "ApplicationIn").model_validate(example)


# --- responses ----------------------------------------------------------------------------
@pytest.mark.parametrize("service", SERVICES)
def test_every_success_response_declares_a_schema(apps, service):
    doc = apps[service].openapi()
    for method, path, op in operations(doc):
        successes = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        assert successes, f"{service} {method} {path}: no 2xx response"
        for code, response in successes.items():
            content = response.get("content")
            assert content, f"{service} {method} {path} {code}: no content"
            for media_type, media in content.items():
                schema = resolve(doc, media.get("schema") or {})
                assert schema, f"{service} {method} {path} {code} {media_type}: empty schema"
                if media_type == "application/json":
                    assert schema.get("properties") or schema.get("oneOf") or schema.get("anyOf"), (
                        f"{service} {method} {path} {code}: an untyped JSON response")


@pytest.mark.parametrize("service", SERVICES)
def test_errors_are_documented_as_problem_json(apps, service):
    doc = apps[service].openapi()
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status"} <= set(problem["required"])
    for method, path, op in operations(doc):
        if not path.startswith("/v1/"):
            continue
        for code in ("401", "403", "422"):
            assert list(op["responses"][code]["content"]) == [PROBLEM_JSON], f"{method} {path} {code}"
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")):
                schema = response["content"][PROBLEM_JSON]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, f"{method} {path} {code}"


def test_metrics_are_documented_as_text(apps):
    for app in apps.values():
        content = app.openapi()["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        assert list(content) == ["text/plain; version=0.0.4"]


# --- the examples through the real routes ----------------------------------------------------
def bearer(role: str, region: str = COUNTY) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(SECRET, role=role, region=region)}


def example_body(app: FastAPI, method: str, path: str) -> dict[str, Any]:
    doc = app.openapi()
    return examples_of(doc, doc["paths"][path][method]["requestBody"]["content"]["application/json"])[0]


def test_the_examples_are_accepted_by_the_routes(apps):
    """Posted without an Idempotency-Key, so neither Redis nor Kafka is involved."""
    intake = TestClient(apps["intake"], raise_server_exceptions=False)
    clerk = bearer("clerk")
    r = intake.post("/v1/applications", json=example_body(apps["intake"], "post", "/v1/applications"),
                    headers=clerk)
    assert r.status_code == 201, r.text
    assert api_model("intake", "ApplicationAccepted").model_validate(r.json()).model_dump() == r.json()
    case_id = r.json()["case_id"]

    path = "/v1/cases/{case_id}/referrals"
    r = intake.post(path.format(case_id=case_id), json=example_body(apps["intake"], "post", path), headers=clerk)
    assert r.status_code == 201, r.text
    assert api_model("intake", "ReferralRaisedOut").model_validate(r.json()).model_dump() == r.json()
    assert r.json()["case_id"] == case_id

    r = intake.get(f"/v1/cases/{case_id}", headers=clerk)
    assert r.status_code == 200, r.text
    case = r.json()
    assert case["members_count"] == 3 and case["bank_account_ref"] == "RCC:6228***********8901"
    assert [ref["need_category"] for ref in case["referrals"]] == ["medical"]

    charity = TestClient(apps["charity"], raise_server_exceptions=False)
    federation = bearer("charity_federation")
    r = charity.post("/v1/funds", json=example_body(apps["charity"], "post", "/v1/funds"), headers=federation)
    assert r.status_code == 201, r.text
    assert api_model("charity", "FundRegisteredOut").model_validate(r.json()).model_dump() == r.json()
    r = charity.get(f"/v1/funds/{r.json()['fund_id']}", headers=federation)
    assert r.status_code == 200, r.text
    assert r.json()["valid_until"] == "2027-12-31" and r.json()["available_fen"] == r.json()["opening_balance_fen"]

    # The body is accepted (no 422); there is simply no check of that case in this store.
    verification = TestClient(apps["verification"], raise_server_exceptions=False)
    path = "/v1/verifications/{case_id}/decision"
    r = verification.post(path.format(case_id=case_id), json=example_body(apps["verification"], "post", path),
                          headers=bearer("reviewer"))
    assert r.status_code == 404, r.text
    assert r.json()["title"] == "Verification not found"


@pytest.mark.parametrize("service, path", [
    ("payment", "/v1/entitlements"), ("notify", "/v1/notices"), ("charity", "/v1/needs"),
])
def test_case_item_lists_answer_through_their_response_model(apps, service, path):
    client = TestClient(apps[service], raise_server_exceptions=False)
    r = client.get(path, params={"case_id": "C-NOTHING"}, headers=bearer("caseworker"))
    assert r.status_code == 200, r.text
    assert r.json() == {"case_id": "C-NOTHING", "items": []}


def test_operations_endpoints_answer_as_before(apps):
    client = TestClient(apps["payment"], raise_server_exceptions=False)
    r = client.get("/healthz")
    assert r.status_code == 200 and r.content == b'{"status":"ok","service":"payment"}'
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


# --- the response models change no byte --------------------------------------------------------
def rendered(content: Any) -> bytes:
    """A route's dict as FastAPI rendered it before the routes declared response models."""
    return json.dumps(jsonable_encoder(content), ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode()


def documents(app: FastAPI, kind: str, ref: str) -> list[dict[str, Any]]:
    runtime = app.state.runtime
    runtime.projection.catch_up()
    with runtime.side.transaction() as tx:
        return tx.find(kind, ref)


def assert_unchanged(app: FastAPI, url: str, before: Any) -> None:
    r = TestClient(app, raise_server_exceptions=False).get(url, headers=bearer("admin"))
    assert r.status_code == 200, r.text
    assert r.content == rendered(before), url


def test_read_routes_answer_byte_for_byte_what_they_answered_before(apps):
    """Each GET route's JSON through its response model equals the route's dict as it was
    rendered without one: no field dropped, renamed, re-typed or reordered (read-model
    documents come back from the side store with their keys sorted)."""
    from services.intake.application import case_view
    from services.verification.application import verification_view
    from tests.unit.services import (
        REVIEWER, accepted_data, benefit_data, cloud, new_case_id, one_off_benefit_data, pid,
        ready_to_decide, record_row, report, submitted_data,
    )

    ids = [pid(201), pid(202, female=True)]

    def submitted(case_id: str):
        return cloud("ApplicationSubmitted", submitted_data(case_id, ids), subject=case_id,
                     source="lifeline/intake")

    # verification: awaiting records, completed with a department missing, approved, refused
    verification = apps["verification"].state.runtime.app
    waiting, missing, approved, refused = (new_case_id() for _ in range(4))
    accepted_at = (verification.clock.now() - timedelta(days=14)).isoformat()
    for case_id in (waiting, missing, approved, refused):
        assert verification.process_cloud_event(submitted(case_id))
        assert verification.process_cloud_event(cloud(
            "ApplicationAccepted", accepted_data(case_id, accepted_at), subject=case_id,
            source="lifeline/intake"))
    for case_id, skip, income in ((missing, "tax", 0), (approved, None, 0), (refused, None, 10**7)):
        for department, request_id in verification.get_verification(case_id).requests.items():
            if department != skip:
                rows = [record_row(n, monthly_income_fen=income if department == "hrss" else 0) for n in ids]
                verification.process_cloud_event(cloud(
                    "DepartmentRecordsReported", report(case_id, department, request_id, rows),
                    subject=case_id, source=f"partner/{department}"))
    # POST answers bypass their response models (the idempotency store renders them): check
    # that the documented models describe them all the same.
    from services.verification.api import CompletionOut, DecisionOut

    completion = {"case_id": missing, "assessment": verification.complete_now(missing, REVIEWER)}
    assert CompletionOut.model_validate(completion).model_dump(mode="json") == completion
    for case_id, decision, reason in ((approved, "approve", "符合低保条件"),
                                      (refused, "refuse", "家庭人均收入高于当地低保标准")):
        v = verification.get_verification(case_id)
        ready_to_decide(v, verification.clock.now(), "include" if decision == "approve" else "refuse")
        verification.save(v)
        answer = {"case_id": case_id, "decision": decision,
                  **verification.decide(case_id, decision, reason, REVIEWER)}
        assert DecisionOut.model_validate(answer).model_dump(mode="json") == answer
    for case_id in (waiting, missing, approved, refused):
        assert_unchanged(apps["verification"], f"/v1/verifications/{case_id}",
                         verification_view(verification.get_verification(case_id)))

    # payment: a monthly benefit, one-off relief and a recognition
    payment = apps["payment"].state.runtime.app
    case_id = new_case_id()
    for data in (
        benefit_data(case_id, "B-AAAAAAAAAAAAAAAAAAAA"),
        one_off_benefit_data(case_id, "B-BBBBBBBBBBBBBBBBBBBB"),
        benefit_data(case_id, "B-CCCCCCCCCCCCCCCCCCCC", kind="recognition", benefit_type="low_income",
                     tier=None, monthly_amount_fen=None),
    ):
        assert payment.process_cloud_event(cloud("BenefitApproved", data, subject=case_id,
                                                 source="lifeline/verification"))
    items = documents(apps["payment"], "entitlement", case_id)
    assert len(items) == 3
    assert_unchanged(apps["payment"], f"/v1/entitlements?case_id={case_id}", {"case_id": case_id, "items": items})

    # notify: an acceptance and a refusal
    notify = apps["notify"].state.runtime.app
    case_id = new_case_id()
    assert notify.process_cloud_event(cloud("ApplicationAccepted", accepted_data(case_id, accepted_at),
                                            subject=case_id, source="lifeline/intake"))
    assert notify.process_cloud_event(cloud("BenefitRefused", {
        "case_id": case_id, "verification_id": "V-1", "region_code": "370502101001",
        "reason": "家庭人均收入高于当地低保标准", "refusing_body": "370502101 乡镇审核确认小组",
        "refused_at": "2026-11-25T15:00:00+08:00"}, subject=case_id, source="lifeline/verification"))
    items = documents(apps["notify"], "notice", case_id)
    assert len(items) == 2
    assert_unchanged(apps["notify"], f"/v1/notices?case_id={case_id}", {"case_id": case_id, "items": items})

    # intake: a case with a referral, posted from the examples
    intake = TestClient(apps["intake"], raise_server_exceptions=False)
    r = intake.post("/v1/applications", json=example_body(apps["intake"], "post", "/v1/applications"),
                    headers=bearer("clerk"))
    case_id = r.json()["case_id"]
    path = "/v1/cases/{case_id}/referrals"
    r = intake.post(path.format(case_id=case_id), json=example_body(apps["intake"], "post", path),
                    headers=bearer("clerk"))
    assert r.status_code == 201, r.text
    case = apps["intake"].state.runtime.app.get_case(case_id)
    assert_unchanged(apps["intake"], f"/v1/cases/{case_id}",
                     {**case_view(case), "referrals": documents(apps["intake"], "referral", case_id)})

    # charity: a fund with and without an end date, and a need opened from a referral
    charity_app = apps["charity"]
    charity = charity_app.state.runtime.app
    fund = example_body(charity_app, "post", "/v1/funds")
    for body in (fund, {**fund, "valid_until": None}):
        r = TestClient(charity_app).post("/v1/funds", json=body, headers=bearer("charity_federation"))
        [doc] = [d for d in documents(charity_app, "fund", body["region_code"]) if d["fund_id"] == r.json()["fund_id"]]
        assert_unchanged(charity_app, f"/v1/funds/{doc['fund_id']}", doc)  # the read model's document (issue 12)
    case_id = new_case_id()
    assert charity.process_cloud_event(cloud("ReferralRaised", {
        "referral_id": "R-0123456789ABCDEF0123", "case_id": case_id, "target": "charity",
        "need_category": "medical", "amount_asked_fen": 500000, "urgency": "urgent",
        "due_date": "2026-12-10", "consent_to_share": True,
        "household_profile": {"region_code": "370502101001", "members_count": 2, "name_masked": "王*明",
                              "assistance_type": "dibao"},
        "raised_at": "2026-11-25T09:00:00+08:00"}, subject=case_id, source="lifeline/intake"))
    items = documents(charity_app, "need", case_id)
    assert len(items) == 1
    assert_unchanged(charity_app, f"/v1/needs?case_id={case_id}", {"case_id": case_id, "items": items})
