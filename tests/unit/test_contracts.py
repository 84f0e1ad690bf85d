"""Event contracts: schemas, envelope, upcasting, AsyncAPI coverage."""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from lifeline.contracts import registry
from lifeline.contracts.envelope import (
    CloudEvent,
    ContractError,
    event_type,
    parse_type,
)
from lifeline.contracts.registry import (
    CURRENT_VERSIONS,
    SCHEMA_DIR,
    SCHEMA_FILES,
    decode,
    new_event,
    upcast,
    validate,
)
from lifeline.contracts.topics import (
    ALL_TOPICS,
    EVENT_TOPIC,
    PARTNER_REQUESTS,
    REFERRALS,
    SHARED_EVENTS,
    TOPICS,
    dlq_topic,
    key_for,
    topics_for,
)
from tests.unit.contract_examples import (
    ACTOR,
    APPLICATION_SUBMITTED_V1,
    APPLICATION_SUBMITTED_V1_AS_CURRENT,
    APPLICATION_SUBMITTED_V4,
    APPLICATION_SUBMITTED_V4_AS_CURRENT,
    APPLICATION_SUBMITTED_V5,
    BENEFIT_APPROVED_V2,
    EXAMPLES,
    SUBJECTS,
    example,
    make_id_number,
)

ASYNCAPI = Path(registry.__file__).with_name("asyncapi.yaml")


def make(name: str, data: dict, **kw) -> CloudEvent:
    kw.setdefault("subject", SUBJECTS.get(name, "case-1"))
    kw.setdefault("source", "lifeline/intake")
    kw.setdefault("sequence", 1)
    kw.setdefault("actor", ACTOR)
    return new_event(name, data, **kw)


def reason_of(name: str, data: dict) -> str:
    with pytest.raises(ContractError) as info:
        make(name, data)
    return info.value.reason


# --- schemas ---------------------------------------------------------------------
def test_schema_files_and_current_versions():
    assert set(CURRENT_VERSIONS) == set(EXAMPLES)
    assert CURRENT_VERSIONS["ApplicationSubmitted"] == 6
    assert CURRENT_VERSIONS["BenefitApproved"] == 3
    assert CURRENT_VERSIONS["FundRegistered"] == CURRENT_VERSIONS["NeedOpened"] == 2
    newer = ("ApplicationSubmitted", "BenefitApproved", "FundRegistered", "NeedOpened")
    assert all(v == 1 for n, v in CURRENT_VERSIONS.items() if n not in newer)
    assert {("ApplicationSubmitted", 1), ("ApplicationSubmitted", 2), ("ApplicationSubmitted", 3),
            ("ApplicationSubmitted", 4), ("ApplicationSubmitted", 5), ("BenefitApproved", 1), ("BenefitApproved", 2),
            ("FundRegistered", 1), ("NeedOpened", 1)} <= set(SCHEMA_FILES)


@pytest.mark.parametrize("path", sorted(SCHEMA_DIR.glob("*.json")), ids=lambda p: p.name)
def test_every_schema_is_valid_2020_12(path: Path):
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])


def _money_fields(schema: dict, path: str = ""):
    for key, sub in schema.get("properties", {}).items():
        if key.endswith("_fen"):
            yield f"{path}.{key}", sub
        yield from _money_fields(sub, f"{path}.{key}")
        if "items" in sub:
            yield from _money_fields(sub["items"], f"{path}.{key}[]")
    for sub in schema.get("$defs", {}).values():
        yield from _money_fields(sub, path + "#def")


def test_money_fields_are_non_negative_integers():
    for (name, version) in SCHEMA_FILES:
        for where, sub in _money_fields(registry.schema(name, version)):
            assert "integer" in (sub["type"] if isinstance(sub["type"], list) else [sub["type"]]), where
            assert "number" not in str(sub["type"]), where
            # Never negative; a field may ask for more (BenefitAdjusted's new amount is ≥ 1).
            assert sub["minimum"] >= 0, where


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_validates(name: str):
    event = make(name, EXAMPLES[name])
    assert event.name == name and event.version == CURRENT_VERSIONS[name]
    validate(event)


@pytest.mark.parametrize(
    ("name", "overrides", "path"),
    [
        ("ApplicationSubmitted", {"surprise": 1}, "$.data.surprise"),
        ("ApplicationSubmitted", {"declared_monthly_income_fen": -1}, "$.data.declared_monthly_income_fen"),
        ("ApplicationSubmitted", {"declared_monthly_income_fen": 1.5}, "$.data.declared_monthly_income_fen"),
        ("ApplicationSubmitted", {"authorisation_signed": False}, "$.data.authorisation_signed"),
        ("ApplicationSubmitted", {"region_code": "320583"}, "$.data.region_code"),  # county: too coarse
        ("ApplicationSubmitted", {"region_code": "320583101\n"}, "$.data.region_code"),
        ("ApplicationSubmitted", {"urgency": "high"}, "$.data.urgency"),
        ("ApplicationSubmitted", {"submitted_at": "2026-03-02T09:30:00"}, "$.data.submitted_at"),  # no offset
        ("ApplicationSubmitted", {"members": []}, "$.data.members"),
        ("BenefitApproved", {"first_period": "2026-13"}, "$.data.first_period"),
        ("BenefitApproved", {"approval_level": "province"}, "$.data.approval_level"),
        ("VerificationCompleted", {"departments_missing": ["ministry_of_magic"]}, "$.data.departments_missing[0]"),
        ("ReferralRaised", {"due_date": "2026-02-30"}, "$.data.due_date"),
        ("ReferralRaised", {"target": "police"}, "$.data.target"),
        ("FundRegistered", {"kind": "other"}, "$.data.kind"),
        ("NoticeIssued", {"legal_name": "不予批准决定书"}, "$.data.legal_name"),  # does not match kind
        ("NoticeIssued", {"cause_event_id": "not-a-uuid"}, "$.data.cause_event_id"),
    ],
)
def test_invalid_examples_fail_with_the_field_path(name, overrides, path):
    reason = reason_of(name, example(name, **overrides))
    assert f": {path}:" in reason, reason
    assert reason.startswith(event_type(name, CURRENT_VERSIONS[name]))


def test_missing_required_field_names_it():
    data = example("BenefitRefused")
    del data["refusing_body"]
    assert "$.data.refusing_body: is required" in reason_of("BenefitRefused", data)


def test_nested_member_errors_point_into_the_array():
    data = example("ApplicationSubmitted")
    data["members"][1]["id_number"] = "32058319820315234X"  # wrong check digit
    assert "$.data.members[1].id_number" in reason_of("ApplicationSubmitted", data)
    data = example("ApplicationSubmitted")
    data["members"][2]["disability_grade"] = 5
    assert "$.data.members[2].disability_grade" in reason_of("ApplicationSubmitted", data)
    data = example("ApplicationSubmitted")
    data["members"][0]["relation"] = "child"  # nobody is 'self' now
    assert "$.data.members" in reason_of("ApplicationSubmitted", data)
    data["members"][0]["relation"] = data["members"][2]["relation"] = "self"  # two applicants
    assert "$.data.members" in reason_of("ApplicationSubmitted", data)


def test_reasons_do_not_echo_personal_data():
    data = example("ApplicationSubmitted")
    data["members"][0]["id_number"] = "320583198001011239"  # wrong check digit
    reason = reason_of("ApplicationSubmitted", data)
    assert "320583198001011239" not in reason and "gb11643" in reason


def test_gb11643_check_digit():
    assert make_id_number("11010519491231002") == "11010519491231002X"
    checker = registry.FORMAT_CHECKER
    assert checker.conforms("11010519491231002X", "gb11643")
    assert not checker.conforms("110105194912310021", "gb11643")
    assert not checker.conforms("١١٠١٠٥١٩٤٩١٢٣١٠٠٢X", "gb11643")  # Arabic-Indic digits


def test_benefit_amounts_follow_its_kind():
    one_off = dict(kind="one_off", monthly_amount_fen=None, one_off_amount_fen=500000,
                   fund_source="temporary_relief_budget", tier=None)
    make("BenefitApproved", example("BenefitApproved", **one_off))
    recognition = dict(kind="recognition", monthly_amount_fen=None, benefit_type="low_income", tier=None)
    make("BenefitApproved", example("BenefitApproved", **recognition))
    for wrong in (
        dict(monthly_amount_fen=None),                       # monthly without an amount
        dict(monthly_amount_fen=0),                          # ... or a zero one
        dict(one_off, fund_source=None),                     # one-off without its fund source
        dict(one_off, monthly_amount_fen=100),               # one-off with a monthly amount too
        dict(recognition, one_off_amount_fen=100),           # a recognition carries no money
    ):
        with pytest.raises(ContractError):
            make("BenefitApproved", example("BenefitApproved", **wrong))


# --- the masked account number: first four and last four digits ------------------------------
MASKED = ("6228***********0001", "6228****0001", "***************0001", "****0001")
NOT_MASKED = ("6228480012345670001", "622***********0001", "62280***********0001", "6228***0001",
              "6228***********001", "6228 ***********0001", "６２２８***********0001", "6228***********0001\n", "")


@pytest.mark.parametrize("name", ["ApplicationSubmitted", "BenefitApproved"])
def test_the_masked_number_shows_at_most_the_first_and_last_four_digits(name):
    for masked in MASKED:  # the current form, and the older one that older events keep
        account = dict(EXAMPLES[name]["bank_account"], number_masked=masked)
        make(name, example(name, bank_account=account, bank_account_ref=f"RCC:{masked}"))
    for wrong in NOT_MASKED:
        account = dict(EXAMPLES[name]["bank_account"], number_masked=wrong)
        reason = reason_of(name, example(name, bank_account=account))
        assert "$.data.bank_account" in reason and (not wrong.strip() or wrong.strip() not in reason), reason


@pytest.mark.parametrize(("name", "old", "version", "as_current"),
                         [("ApplicationSubmitted", APPLICATION_SUBMITTED_V4, 4, APPLICATION_SUBMITTED_V4_AS_CURRENT),
                          ("BenefitApproved", BENEFIT_APPROVED_V2, 2, BENEFIT_APPROVED_V2)])
def test_an_account_masked_before_reads_unchanged_at_the_current_version(name, old, version, as_current):
    # The older version pinned the last-four form; the current one takes the first four too.
    assert registry.schema(name, version)["$defs"]["bank_account"]["properties"]["number_masked"]["pattern"] \
        == "^\\*{4,}\\d{4}$"
    event = replace(make(name, EXAMPLES[name]), type=event_type(name, version), data=copy.deepcopy(old))
    validate(event)  # a valid event of the older version
    with pytest.raises(ContractError, match=r"number_masked: must match"):
        new_form = {k: EXAMPLES[name][k] for k in ("bank_account", "bank_account_ref")}
        validate(replace(event, data={**old, **new_form}))  # the new form was never valid there
    current = decode(event.to_json())
    assert current.type == event_type(name, CURRENT_VERSIONS[name])
    # No upcaster can recover digits an event never carried: the masked number stays as sent.
    assert current.data == as_current
    assert current.data["bank_account"]["number_masked"] == "***************0001"
    assert registry.upcast_data(name, version, old) == as_current


# --- the household's mobile number (ApplicationSubmitted v6): sealed, shown masked --------------
def test_a_v5_application_reads_with_no_mobile_number():
    old = replace(make("ApplicationSubmitted", EXAMPLES["ApplicationSubmitted"]),
                  type=event_type("ApplicationSubmitted", 5), data=copy.deepcopy(APPLICATION_SUBMITTED_V5))
    validate(old)
    assert decode(old.to_json()).data == {**APPLICATION_SUBMITTED_V5, "contact": None}


@pytest.mark.parametrize("shown", ["13812345678", "138*****678", "1381234****", "138****567", "+86138****5678", ""])
def test_the_mobile_number_travels_masked_and_sealed_only(shown):
    contact = dict(EXAMPLES["ApplicationSubmitted"]["contact"], phone_masked=shown)
    reason = reason_of("ApplicationSubmitted", example("ApplicationSubmitted", contact=contact))
    assert "$.data.contact" in reason and (not shown or shown not in reason), reason
    make("ApplicationSubmitted", example("ApplicationSubmitted", contact=None))  # none given


def test_old_benefit_approved_upcasts_by_its_amounts():
    v1 = {k: v for k, v in EXAMPLES["BenefitApproved"].items()
          if k not in ("kind", "fund_source", "bank_account")}
    v1["bank_account_ref"] = "acct-ref-0001"
    data = registry.upcast_data("BenefitApproved", 1, v1)
    assert data["kind"] == "monthly" and data["fund_source"] is None and data["bank_account"] is None
    one_off = registry.upcast_data("BenefitApproved", 1, dict(v1, monthly_amount_fen=None, one_off_amount_fen=9))
    assert one_off["kind"] == "one_off" and one_off["fund_source"] == "temporary_relief_budget"


# --- envelope --------------------------------------------------------------------
def test_round_trip_json():
    for name, data in EXAMPLES.items():
        event = make(name, data, causationid=str(uuid.uuid4()), sequence=42)
        raw = event.to_json()
        assert isinstance(raw, bytes)
        assert CloudEvent.from_json(raw) == event
        assert decode(raw) == event
        assert decode(raw).to_json() == raw  # stable bytes


def test_to_json_is_compact_utf8_sorted():
    event = make("NoticeIssued", EXAMPLES["NoticeIssued"])
    raw = event.to_json()
    text = raw.decode("utf-8")
    assert "受理通知书" in text and "\\u" not in text
    assert ": " not in text and ", " not in text.replace("已受理。", "")
    obj = json.loads(raw)
    assert list(obj) == sorted(obj)
    assert obj["specversion"] == "1.0" and obj["datacontenttype"] == "application/json"
    assert "causationid" not in obj  # absent, not null
    assert obj["actor"] == ACTOR


def test_new_event_defaults():
    event = make("NoticeIssued", EXAMPLES["NoticeIssued"])
    assert uuid.UUID(event.id)
    assert event.correlationid == event.id
    assert event.time.endswith("+08:00")
    assert event.type == "cn.gov.mca.lifeline.NoticeIssued.v1"
    assert (event.name, event.version) == ("NoticeIssued", 1)
    assert event.actor.org_code == ACTOR["org_code"]


def test_event_type_helpers():
    assert event_type("ApplicationSubmitted", 2) == "cn.gov.mca.lifeline.ApplicationSubmitted.v2"
    assert parse_type("cn.gov.mca.lifeline.ApplicationSubmitted.v2") == ("ApplicationSubmitted", 2)
    for bad in ("cn.gov.mca.lifeline.ApplicationSubmitted", "cn.gov.mca.lifeline.x.v1",
                "org.example.ApplicationSubmitted.v1", "cn.gov.mca.lifeline.A.v0"):
        with pytest.raises(ContractError):
            parse_type(bad)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xff\xfe garbage", b"not json", b"[1, 2]", b'"a string"', b"null", b"{}"],
)
def test_garbage_bytes(raw: bytes):
    with pytest.raises(ContractError):
        decode(raw)


def _wire(**changes) -> bytes:
    obj = json.loads(make("BenefitRefused", EXAMPLES["BenefitRefused"]).to_json())
    for key, value in changes.items():
        if value is ...:
            obj.pop(key)
        else:
            obj[key] = value
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    "attribute",
    ["id", "source", "type", "subject", "time", "datacontenttype", "data", "correlationid",
     "actor", "sequence", "specversion"],
)
def test_missing_envelope_attribute(attribute: str):
    with pytest.raises(ContractError) as info:
        decode(_wire(**{attribute: ...}))
    assert attribute in info.value.reason


@pytest.mark.parametrize(
    "changes",
    [
        {"id": "42"}, {"source": "somewhere/else"}, {"type": "BenefitRefused"},
        {"type": 7}, {"subject": ""}, {"time": "2026-03-02 09:30"},
        {"time": "2026-03-02T09:30:00"}, {"datacontenttype": "text/xml"}, {"data": "x"},
        {"actor": "clerk"}, {"actor": {"user_id": "u"}}, {"sequence": 0}, {"sequence": "1"},
        {"sequence": True}, {"specversion": "0.3"}, {"causationid": 5},
    ],
)
def test_ill_typed_envelope_attribute(changes):
    with pytest.raises(ContractError):
        decode(_wire(**changes))


def test_partner_source_is_accepted():
    event = make("DepartmentRecordsReported", EXAMPLES["DepartmentRecordsReported"], source="partner/hrss")
    assert decode(event.to_json()).source == "partner/hrss"


def test_unknown_extension_attributes_are_ignored():
    assert decode(_wire(traceparent="00-abc")).name == "BenefitRefused"


def test_unknown_type_or_version():
    with pytest.raises(ContractError, match="unknown event type"):
        decode(_wire(type="cn.gov.mca.lifeline.BenefitRefused.v9"))
    with pytest.raises(ContractError, match="unknown event type"):
        decode(_wire(type="cn.gov.mca.lifeline.MoonLanded.v1"))
    with pytest.raises(ContractError, match="unknown event type"):
        make("MoonLanded", {})
    event = make("BenefitRefused", EXAMPLES["BenefitRefused"])
    with pytest.raises(ContractError, match="unknown event type"):
        upcast(replace(event, type="cn.gov.mca.lifeline.BenefitRefused.v2"))


# --- upcasting -------------------------------------------------------------------
def _v1_event(data: dict) -> CloudEvent:
    return CloudEvent(
        id=str(uuid.uuid4()), source="lifeline/intake",
        type="cn.gov.mca.lifeline.ApplicationSubmitted.v1", subject=data["case_id"],
        time="2025-12-01T08:00:00+08:00", data=data, correlationid="c-1", actor=ACTOR, sequence=7,
    )


def test_old_v1_application_is_still_readable_and_upcast():
    old = _v1_event(dict(APPLICATION_SUBMITTED_V1))
    validate(old)  # v1 is still a valid v1
    event = decode(old.to_json())
    assert event.type == "cn.gov.mca.lifeline.ApplicationSubmitted.v6"
    assert event.data == APPLICATION_SUBMITTED_V1_AS_CURRENT  # urgent=True -> "urgent"
    assert (event.id, event.sequence, event.time) == (old.id, old.sequence, old.time)
    assert old.data == APPLICATION_SUBMITTED_V1  # the stored event is untouched


def test_upcast_non_urgent_v1():
    event = upcast(_v1_event(dict(APPLICATION_SUBMITTED_V1, urgent=False)))
    assert event.data["urgency"] == "normal"
    assert "urgent" not in event.data and "declared_income_fen" not in event.data


def test_upcast_current_version_is_identity():
    event = make("ApplicationSubmitted", EXAMPLES["ApplicationSubmitted"])
    assert upcast(event) is event


def test_malformed_v1_is_rejected_before_upcasting():
    data = dict(APPLICATION_SUBMITTED_V1)
    del data["urgent"]
    with pytest.raises(ContractError, match=r"ApplicationSubmitted\.v1: \$\.data\.urgent"):
        decode(_v1_event(data).to_json())


def test_every_old_version_has_an_upcaster():
    for name, version in SCHEMA_FILES:
        if version < CURRENT_VERSIONS[name]:
            assert (name, version) in registry.UPCASTERS


# --- topics and AsyncAPI ---------------------------------------------------------
def test_topics():
    assert TOPICS["intake"] == "lifeline.intake.v1"
    assert dlq_topic("lifeline.intake.v1", "verification") == "lifeline.intake.v1.dlq.verification"
    assert set(CURRENT_VERSIONS) <= set(EVENT_TOPIC)
    assert set(EVENT_TOPIC.values()) <= set(ALL_TOPICS)
    assert topics_for("ReferralRaised") == ("lifeline.intake.v1", REFERRALS)
    assert EVENT_TOPIC["VerificationRequested"] == PARTNER_REQUESTS
    assert key_for("VerificationRequested", "case-1", EXAMPLES["VerificationRequested"]) == "hrss"
    assert key_for("BenefitApproved", "case-1", EXAMPLES["BenefitApproved"]) == "case-1"


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(doc: dict, pointer: str):
    node = doc
    for token in pointer.lstrip("#/").split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def test_asyncapi_document():
    doc = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    assert doc["asyncapi"].startswith("3.")
    assert doc["servers"]["embedded"]["host"] == "127.0.0.1:19092"
    assert doc["servers"]["embedded"]["protocol"] == "kafka"

    refs = list(_refs(doc))
    files = {r for r in refs if not r.startswith("#")}
    for ref in refs:
        if ref.startswith("#"):
            _resolve(doc, ref)  # internal references resolve
    for ref in files:
        assert ref.startswith("./schemas/"), ref
        assert (ASYNCAPI.parent / ref).is_file(), ref
    assert {ASYNCAPI.parent / r for r in files} == {p for p in SCHEMA_FILES.values()}

    # every topic has a channel, plus the dead-letter pattern
    addresses = {ch["address"]: ch for ch in doc["channels"].values()}
    assert set(ALL_TOPICS) <= set(addresses)
    assert "{topic}.dlq.{group}" in addresses

    # every event version is described on each topic it is published to
    for name, version in SCHEMA_FILES:
        for topic in {t for service in (None, *SHARED_EVENTS.get(name, ())) for t in topics_for(name, service)}:
            schemas = [
                _resolve(doc, m["$ref"])["payload"]["allOf"][1]["properties"]["data"]["$ref"]
                for m in addresses[topic]["messages"].values()
            ]
            assert f"./schemas/{name}.v{version}.json" in schemas, (name, version, topic)

    # every operation points at a channel and at messages of that channel
    for op_id, op in doc["operations"].items():
        assert op["action"] in ("send", "receive"), op_id
        channel_ref = op["channel"]["$ref"]
        for m in op["messages"]:
            assert m["$ref"].startswith(channel_ref + "/messages/"), op_id


def test_department_codes_match_the_rules_module():
    departments = pytest.importorskip("lifeline.rules.departments").DEPARTMENTS
    enum = registry.schema("VerificationRequested")["properties"]["department"]["enum"]
    assert set(enum) == set(departments)


# --- the compiled validator agrees with jsonschema ----------------------------------------------
def _mutations(data: dict) -> list[dict]:
    """The example and what the hot path must refuse as jsonschema does: each string field with
    Unicode digits, a trailing newline, emptied; each integer negative and a float; each field
    removed; an unknown field added."""
    out = [data, {**data, "surprise": 1}]
    for key, value in data.items():
        out.append({k: v for k, v in data.items() if k != key})
        if isinstance(value, str):
            out += [{**data, key: value + "\n"}, {**data, key: ""}, {**data, key: "２０２６-01"},
                    {**data, key: value.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))}]
        elif isinstance(value, int) and not isinstance(value, bool):
            out += [{**data, key: -1}, {**data, key: value + 0.5}]
    return out


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_compiled_validator_agrees_with_jsonschema_on_every_example_and_its_mutations(name):
    version = CURRENT_VERSIONS[name]
    slow, fast = registry._validator(name, version), registry._compiled(name, version)
    for data in _mutations(example(name)):
        assert fast.is_valid(data) == slow.is_valid(data), (name, data)


@pytest.mark.parametrize("data", [
    {**example("ApplicationSubmitted"), "submitted_at": "2026-03-02T09:30:00"},  # no offset
    {**example("ApplicationSubmitted"), "submitted_at": "2026-03-02T25:30:00+08:00"},
    {**example("ApplicationSubmitted"), "members": [{**example("ApplicationSubmitted")["members"][0],
                                                     "id_number": "32058319800101123X"}]},  # check digit
    {**example("NoticeIssued"), "cause_event_id": "6f1c0b2a9d8e4f7a8b1c2d3e4f5a6b7c"},  # uuid without dashes
    {**example("ReferralRaised"), "due_date": "2026-02-30"},
])
def test_the_compiled_validator_checks_lifelines_formats_as_jsonschema_does(data):
    name = next(n for n in EXAMPLES if set(data) == set(example(n)) or set(data) - {"surprise"} == set(example(n)))
    version = CURRENT_VERSIONS[name]
    assert registry._compiled(name, version).is_valid(data) == registry._validator(name, version).is_valid(data)
    assert not registry._validator(name, version).is_valid(data)
