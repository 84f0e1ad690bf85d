"""The request and response models of intake's routes for finding households and following
referrals up (issue 11: discovery reports and their contact, referral outcomes and lists; the
routes are in api.py), and how their refusals are answered."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lifeline.http.app import ResidentIdNumber
from lifeline.http.problems import Problem
from lifeline.rules.regions import InvalidRegionCode, validate_division_in_force
from lifeline.rules.vocabulary import (
    DISCOVERY_CONTACT_OUTCOMES,
    DISCOVERY_REPORTERS,
    DISCOVERY_STATES,
    ESCALATION_LEVELS,
    NEED_CATEGORIES,
    REFERRAL_ANSWERED_BY,
    REFERRAL_OUTCOMES,
    REFERRAL_STATES,
    URGENCIES,
)
from services.intake.discovery import DiscoveryNotAllowed, RuleBroken
from services.intake.domain import ReferralNotAllowed

# Who reports a person in trouble over the API: the window and the caseworkers, and partners
# (hospitals, schools, the police, the hotline) with their own accounts.
REPORTERS = ("clerk", "caseworker", "partner", "admin")
WRITERS = ("clerk", "caseworker", "county_officer", "admin")
# A person reports; `monitoring` is the risk rules' own kind.
PersonReporterKind = Literal[tuple(k for k in DISCOVERY_REPORTERS if k != "monitoring")]  # type: ignore[misc]


def _strict(*examples: dict) -> ConfigDict:
    return ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": list(examples)})


def rule_broken(exc: RuleBroken) -> Problem:
    """422 naming the rule and the field."""
    errors = [{"pointer": f"#/{exc.field}", "detail": str(exc)}] if exc.field else []
    return Problem(422, "Rule broken", str(exc), slug="intake-rule", rule=exc.rule, errors=errors)


def not_allowed(exc: DiscoveryNotAllowed | ReferralNotAllowed) -> Problem:
    extra = {"case_id": exc.case_id} if getattr(exc, "case_id", None) else {}
    return Problem(409, "Not allowed in this state", str(exc), slug="state-conflict", rule=exc.rule,
                   state=exc.state, **extra)


# --- request bodies ----------------------------------------------------------------------------
REPORTER_EXAMPLE = {"kind": "hospital", "organisation": "东营区人民医院", "name": "张医生", "contact": "0546-8221234"}
PERSON_EXAMPLE = {"id_number": "370502196803150258", "name": "王建国", "address": "东营区文汇街道胜利社区3号楼",
                  "region_code": "370502101001"}


class ReporterIn(BaseModel):
    model_config = _strict(REPORTER_EXAMPLE, {"kind": "hotline", "organisation": "12345热线"})

    kind: PersonReporterKind = Field(description="who reports (monitoring is the risk rules' own)")
    organisation: str = Field(min_length=1, max_length=100, description="the reporting organisation")
    name: str | None = Field(default=None, min_length=1, max_length=50)
    contact: str | None = Field(default=None, min_length=1, max_length=40, description="how to reach the reporter")


class PersonIn(BaseModel):
    model_config = _strict(PERSON_EXAMPLE, {"name": "李秀英", "region_code": "370502101"})

    id_number: ResidentIdNumber | None = Field(default=None, description="when known: GB 11643, check digit verified")
    name: str = Field(min_length=1, max_length=50)
    address: str | None = Field(default=None, min_length=1, max_length=200, description="where to find them")
    region_code: str = Field(pattern=r"^\d{9}(\d{3})?$", description="village (12) or township (9) code")

    @field_validator("region_code")
    @classmethod
    def _region(cls, value: str) -> str:
        try:
            return validate_division_in_force(value)
        except InvalidRegionCode as exc:
            raise ValueError(str(exc)) from exc


class DiscoveryReportIn(BaseModel):
    """主动发现: who reported, about whom, what was seen, how urgent."""

    model_config = _strict({"reporter": REPORTER_EXAMPLE, "person": PERSON_EXAMPLE,
                            "seen": "患者独居，住院费用无力支付，家中无其他劳动力", "urgency": "urgent"})

    reporter: ReporterIn
    person: PersonIn
    seen: str = Field(min_length=1, max_length=2000, description="what was seen")
    urgency: Literal[URGENCIES] = "normal"  # type: ignore[valid-type]


class ContactIn(BaseModel):
    model_config = _strict({"outcome": "applying", "note": "已入户联系，协助其申请临时救助"})

    outcome: Literal[DISCOVERY_CONTACT_OUTCOMES]  # type: ignore[valid-type]
    note: str = Field(default="", max_length=2000)


class ReferralOutcomeIn(BaseModel):
    model_config = _strict({"outcome": "resolved", "note": "医保局已落实医疗救助"})

    outcome: Literal[REFERRAL_OUTCOMES]  # type: ignore[valid-type]
    note: str = Field(default="", max_length=2000)


# --- answers (read models: outreach.project; fields in the stored documents' key order) ----------
class ReporterOut(BaseModel):
    contact: str | None
    kind: Literal[DISCOVERY_REPORTERS]  # type: ignore[valid-type]
    name: str | None
    organisation: str


class PersonOut(BaseModel):
    address: str | None
    id_number_masked: str | None
    name: str


class Escalation(BaseModel):
    level: Literal[ESCALATION_LEVELS]  # type: ignore[valid-type]
    office: str


class DiscoveryReportDoc(BaseModel):
    applied_at: str | None
    case_id: str = Field(description="reserved: the application made from the report takes it")
    contact_due_date: str
    contact_note: str | None
    contact_outcome: Literal[DISCOVERY_CONTACT_OUTCOMES] | None  # type: ignore[valid-type]
    contacted_at: str | None
    deadline_state: Literal["open", "met", "late", "breached"] = Field(
        description="the contact clock: open, met, late, or breached (escalated)")
    escalated_to: Escalation | None
    person: PersonOut
    record_ids: list[str] = Field(description="the partner records a risk rule fired on")
    region_code: str
    related_case_id: str | None = Field(description="a death rule: the case of the watched household")
    report_id: str
    reported_at: str
    reporter: ReporterOut
    responsible_office: str
    rule_id: str | None
    seen: str
    state: Literal[DISCOVERY_STATES]  # type: ignore[valid-type]
    urgency: Literal[URGENCIES]  # type: ignore[valid-type]


class DiscoveryReportsOut(BaseModel):
    items: list[DiscoveryReportDoc]


class DiscoveryReportedOut(BaseModel):
    report_id: str = Field(examples=["D-9B1C2D3E4F5A6B7C8D9E"])
    case_id: str
    state: Literal[DISCOVERY_STATES]  # type: ignore[valid-type]
    contact_due_date: str


class ContactOut(BaseModel):
    report_id: str
    case_id: str
    state: Literal[DISCOVERY_STATES]  # type: ignore[valid-type]
    contact_outcome: Literal[DISCOVERY_CONTACT_OUTCOMES]  # type: ignore[valid-type]
    deadline_state: str | None


class ReferralEscalation(BaseModel):
    clerk: str = Field(description="the first clerk responsible (首问负责人)")
    level: Literal[ESCALATION_LEVELS]  # type: ignore[valid-type]
    office: str = Field(description="the office above the responsible one")


class ReferralDoc(BaseModel):
    """A referral as intake's read model keeps it (application.project, outreach.project)."""

    # Declared in the order the side store returns a document's keys (sorted), so the JSON
    # answered is the stored document, byte for byte.
    answered_at: str | None = None
    answered_by: Literal[REFERRAL_ANSWERED_BY] | None = None  # type: ignore[valid-type]
    assignee: str | None = Field(default=None, description="the first clerk responsible (首问负责人)")
    case_id: str
    deadline_state: str | None = Field(default=None, description="the referral clock: open, met, late, breached")
    due_date: str = Field(description="ISO 8601 date", examples=["2026-06-30"])
    escalated_to: ReferralEscalation | None = None
    late: bool | None = None
    need_category: Literal[NEED_CATEGORIES]  # type: ignore[valid-type]
    note: str | None = None
    outcome: Literal[REFERRAL_OUTCOMES] | None = None  # type: ignore[valid-type]
    overdue_at: str | None = None
    raised_at: str | None = None
    raised_by: str | None = None
    referral_id: str
    region_code: str | None = None
    status: Literal[REFERRAL_STATES]  # type: ignore[valid-type]
    target: str = Field(description="'charity' or a department code")
    urgency: Literal[URGENCIES] | None = None  # type: ignore[valid-type]


class ReferralsOut(BaseModel):
    items: list[ReferralDoc]
