"""备案: cadres and their close relatives who receive benefits are registered and flagged
(SPEC §4, issue 9).

A case is filed when a person named in its application is a cadre (村/社区/乡镇干部) or a
cadre's close relative (近亲属):

- declared at intake (`Member.cadre_relation`, ApplicationSubmitted v4), or
- found in the county's cadre register, which county officers load (`CadreRegister`, one per
  county, replaced whole at each load).

`filing_reasons` says why, with masked names only; the verification aggregate records it
(its FilingFlagged event), `project_filing` keeps the read models (`filing` per case,
`cadre_register` per county with counts only: the ID numbers stay in the event store, which is
encrypted in production), and `router` serves `PUT /v1/cadre-registers/{county_code}` and
`GET /v1/filings`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field, model_validator

from lifeline.domain.aggregate import LifelineAggregate, Meta
from lifeline.domain.values import Member, mask_name
from lifeline.http.app import LIST_ERRORS, ResidentIdNumber, in_region, problem_responses, region_filter, strict
from lifeline.http.auth import Principal, ensure_region
from lifeline.http.problems import Problem
from lifeline.rules.ids import has_resident_id_form
from lifeline.rules.regions import is_known_county
from lifeline.rules.vocabulary import CADRE_RELATIONS
from lifeline.stores.sidestore import SideTx

if TYPE_CHECKING:  # application.py imports this module: no import cycle at run time
    from lifeline.runtime.service import ServiceRuntime
    from services.verification.application import VerificationApplication

__all__ = [
    "CADRE_REGISTER_LOADERS", "FILING_READERS", "MAX_ENTRIES", "CadreEntryIn", "CadreRegister",
    "CadreRegisterIn", "InvalidRegister", "filing_reasons", "load_register", "project_filing",
    "register_entries", "register_view", "router",
]

MAX_ENTRIES = 10_000
NAME_MAX, POST_MAX = 50, 100
CADRE_REGISTER_LOADERS = ("county_officer", "admin")
# Who reads what a county's register holds (counts and when it was loaded): auditors too.
CADRE_REGISTER_READERS = (*CADRE_REGISTER_LOADERS, "auditor")
FILING_READERS = ("reviewer", "county_officer", "auditor", "admin")
# How often a load is tried again when another load of the same county was saved meanwhile.
LOAD_ATTEMPTS = 3


class InvalidRegister(ValueError):
    """A cadre register that cannot be loaded (the message names the entry, never its number)."""


def register_entry(raw: Mapping[str, Any], position: int) -> dict[str, str]:
    """One line of a register, checked and normalised: id_number (GB 11643 form and check
    digit, upper-case X), name, relation (CADRE_RELATIONS) and post."""
    where = f"entry {position}"
    if set(raw) != {"id_number", "name", "relation", "post"}:
        raise InvalidRegister(f"{where}: an entry has exactly id_number, name, relation and post")
    number = str(raw["id_number"]).strip().upper()
    if not has_resident_id_form(number):
        raise InvalidRegister(f"{where}: id_number is not a GB 11643 resident ID number")
    name, post = str(raw["name"]).strip(), str(raw["post"]).strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise InvalidRegister(f"{where}: name must have 1 to {NAME_MAX} characters")
    if not 1 <= len(post) <= POST_MAX:
        raise InvalidRegister(f"{where}: post must have 1 to {POST_MAX} characters")
    if raw["relation"] not in CADRE_RELATIONS:
        raise InvalidRegister(f"{where}: relation must be one of {', '.join(CADRE_RELATIONS)}")
    return {"id_number": number, "name": name, "relation": raw["relation"], "post": post}


class CadreRegister(LifelineAggregate):
    """A county's register of cadres and their close relatives (干部及近亲属备案名册).

    Each load replaces the whole list (the county publishes its register anew); a person is
    listed once (name every post in `post`).
    """

    id_kind = "cadre_register"  # one per county

    class Opened(LifelineAggregate.Created):
        county_code: str

    class Loaded(LifelineAggregate.Event):
        county_code: str
        entries: list[dict[str, str]]
        count: int
        loaded_at: str

        def apply(self, register: "CadreRegister") -> None:
            register.entries = [dict(e) for e in self.entries]
            register.loaded_at = self.loaded_at

    @classmethod
    def open(cls, county_code: str, by: Meta) -> "CadreRegister":
        if not is_known_county(county_code):
            raise InvalidRegister("a cadre register belongs to a county-level division of the register")
        return cls._create(cls.Opened, id=cls.create_id(county_code), county_code=county_code,
                           meta=by.as_dict())

    def __init__(self, county_code: str, meta: dict[str, str]):
        self.county_code = county_code
        self.entries: list[dict[str, str]] = []
        self.loaded_at: str | None = None

    def load(self, entries: Iterable[Mapping[str, Any]], loaded_at: datetime, by: Meta) -> None:
        """Replace the whole list; nothing changes when one entry is refused."""
        checked = [register_entry(raw, i) for i, raw in enumerate(entries)]
        if len(checked) > MAX_ENTRIES:
            raise InvalidRegister(f"a register lists at most {MAX_ENTRIES} people")
        first: dict[str, int] = {}
        for i, entry in enumerate(checked):
            if entry["id_number"] in first:
                raise InvalidRegister(
                    f"entry {i}: the person of entry {first[entry['id_number']]} is listed again "
                    "(list a person once and name every post in post)")
            first[entry["id_number"]] = i
        self.trigger_event(self.Loaded, county_code=self.county_code, entries=checked,
                           count=len(checked), loaded_at=loaded_at.isoformat(), meta=by.as_dict())


def filing_reasons(members: Iterable[Member], register: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """Why a household is filed (备案), member by member, in the application's order: each
    person named in it (counted or living apart) who declared a cadre relation, and each one
    the county's register lists. Masked names only, never an ID number; [] when nobody is."""
    listed = {str(e["id_number"]).strip().upper(): e for e in register}
    reasons: list[dict[str, str]] = []
    for member in members:
        masked = mask_name(member.name)
        if member.cadre_relation is not None:
            reasons.append({"reason": "declared", "relation": member.cadre_relation, "member": masked})
        entry = listed.get(member.id_number)
        if entry is not None:
            reasons.append({"reason": "register", "relation": entry["relation"], "member": masked,
                            "post": entry["post"]})
    return reasons


# --- use cases on the verification application --------------------------------------------
def register_entries(app: "VerificationApplication", county_code: str) -> list[dict[str, str]]:
    """The county's register as last loaded ([] when it never was)."""
    try:
        register = app.repository.get(CadreRegister.create_id(county_code))
    except AggregateNotFoundError:
        return []
    return [dict(e) for e in register.entries]


def load_register(app: "VerificationApplication", county_code: str,
                  entries: list[Mapping[str, Any]], meta: Meta) -> CadreRegister:
    """Load (replace) a county's register at the application's clock time. InvalidRegister
    when an entry is refused; a load saved meanwhile by someone else is loaded over."""
    for attempt in range(LOAD_ATTEMPTS):
        try:
            register = app.repository.get(CadreRegister.create_id(county_code))
        except AggregateNotFoundError:
            register = CadreRegister.open(county_code, meta)
        register.load(entries, app.clock.now(), meta)
        try:
            app.save(register)
            return register
        except IntegrityError:
            if attempt == LOAD_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def register_view(register: CadreRegister) -> dict[str, Any]:
    """What anyone may see of a register: its county, how many people and when (no names)."""
    return {"county_code": register.county_code, "entries": len(register.entries),
            "loaded_at": register.loaded_at}


# --- read models --------------------------------------------------------------------------
FILING_FIELDS = ("case_id", "region_code", "reasons", "flagged_at")


def project_filing(event: Any, tx: SideTx) -> bool:
    """Read models of 备案; True when `event` was one of them (call it with every event).

    - `CadreRegister.Loaded` → kind "cadre_register", keyed by county: count and time only.
    - an event with `case_id`, `region_code`, `reasons` and `flagged_at` (verification's
      FilingFlagged) → kind "filing", keyed by case id (ref: its region), the latest wins.
    """
    if isinstance(event, CadreRegister.Loaded):
        tx.put("cadre_register", event.county_code, {
            "county_code": event.county_code, "entries": event.count, "loaded_at": event.loaded_at,
        }, ref=event.county_code)
        return True
    if isinstance(event, CadreRegister.Opened):
        return True
    if all(hasattr(event, f) for f in FILING_FIELDS):
        tx.put("filing", event.case_id, {
            "case_id": event.case_id, "region_code": event.region_code,
            "reasons": [dict(r) for r in event.reasons], "flagged_at": str(event.flagged_at),
        }, ref=event.region_code)
        return True
    return False


# --- HTTP -----------------------------------------------------------------------------------
# The example people: valid GB 11643 numbers of county 370502 (东营区), made with
# lifeline.rules.ids.make_resident_id (tests/unit/services/test_filings.py makes them again).
CADRE_ID = "37050219720410043X"      # born 1972-04-10, male (seq 21; check digit X)
RELATIVE_ID = "370502197509020801"   # born 1975-09-02, female (seq 40)
CADRE_EXAMPLE = {"id_number": CADRE_ID, "name": "刘志强", "relation": "cadre", "post": "东营区某镇党委委员"}
RELATIVE_EXAMPLE = {"id_number": RELATIVE_ID, "name": "陈桂兰", "relation": "close_relative",
                    "post": "东营区某镇党委委员刘志强之配偶"}

CountyCode = Annotated[str, Path(pattern=r"^\d{6}$", description="the county (six digits)",
                                 examples=["370502"])]
REGISTER_ERRORS = problem_responses(400, 401, 403, 409, 413, 422, 503)
REGISTER_READ_ERRORS = problem_responses(401, 403, 404, 422, 503)


class CadreEntryIn(BaseModel):
    model_config = strict(CADRE_EXAMPLE, RELATIVE_EXAMPLE)

    id_number: ResidentIdNumber
    name: str = Field(min_length=1, max_length=NAME_MAX)
    relation: Literal[CADRE_RELATIONS] = Field(description="cadre (村/社区/乡镇干部) or close_relative (近亲属)")
    post: str = Field(min_length=1, max_length=POST_MAX,
                      description="the cadre's post (for a relative: whose relative, and the post)")


class CadreRegisterIn(BaseModel):
    """The county's whole register: it replaces the one loaded before."""

    model_config = strict({"entries": [CADRE_EXAMPLE, RELATIVE_EXAMPLE]})

    entries: list[CadreEntryIn] = Field(max_length=MAX_ENTRIES,
                                        description="everyone listed; [] empties the register")

    @model_validator(mode="after")
    def _each_person_once(self) -> "CadreRegisterIn":
        ids = [e.id_number for e in self.entries]
        if len(set(ids)) != len(ids):
            raise ValueError("a person is listed twice: list a person once and name every post in post")
        return self


class CadreRegisterOut(BaseModel):
    county_code: str
    entries: int = Field(description="how many people the register lists")
    loaded_at: str = Field(description="ISO 8601 timestamp")


class FilingReasonOut(BaseModel):
    """Why a case is filed; declared reasons carry no post. Fields in the order the side store
    returns a document's keys (sorted), so the JSON answered is the stored document."""

    member: str = Field(description="the member's name, masked")
    post: str | None = Field(None, description="the cadre's post, as the register gives it (register only)")
    reason: Literal["declared", "register"]
    relation: Literal[CADRE_RELATIONS]


class FilingOut(BaseModel):
    case_id: str
    flagged_at: str = Field(description="ISO 8601 timestamp")
    reasons: list[FilingReasonOut]
    region_code: str


class FilingsOut(BaseModel):
    items: list[FilingOut] = Field(description="those within the caller's region, by time flagged")


def _county(county_code: str) -> str:
    if not is_known_county(county_code):
        raise Problem(422, "Request validation failed", "county_code is not a county of the register.",
                      slug="validation",
                      errors=[{"parameter": "county_code", "in": "path",
                               "detail": "not a county-level GB/T 2260 code"}])
    return county_code


def router(runtime: "ServiceRuntime") -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["filings"])
    app: VerificationApplication = runtime.app  # type: ignore[assignment]

    @api.put("/cadre-registers/{county_code}", response_model=CadreRegisterOut, responses=REGISTER_ERRORS)
    async def load_cadre_register(
        county_code: CountyCode, body: CadreRegisterIn, request: Request,
        principal: Principal = runtime.auth.require(*CADRE_REGISTER_LOADERS),
    ):
        """Load the county's register of cadres and their close relatives (备案名册), replacing
        the one before. The answer and the read models give counts only, never names or numbers."""
        ensure_region(principal, _county(county_code))
        entries = [e.model_dump() for e in body.entries]

        async def handle() -> tuple[int, dict]:
            try:
                register = await asyncio.to_thread(load_register, app, county_code, entries, Meta.of(principal))
            except InvalidRegister as exc:
                raise Problem(422, "Cadre register refused", str(exc), slug="invalid-cadre-register") from None
            runtime.saved()
            return 200, register_view(register)

        return await runtime.idempotent(request, principal.user_id, handle)

    @api.get("/cadre-registers/{county_code}", response_model=CadreRegisterOut, responses=REGISTER_READ_ERRORS)
    async def get_cadre_register(
        county_code: CountyCode, principal: Principal = runtime.auth.require(*CADRE_REGISTER_READERS),
    ):
        """How many people the county's register lists, and when it was loaded."""
        ensure_region(principal, _county(county_code))
        views = await runtime.views()
        with views.transaction() as tx:
            doc = tx.get("cadre_register", county_code)
        if doc is None:
            raise Problem(404, "Cadre register not found", f"no cadre register of county {county_code} was loaded")
        return doc

    @api.get("/filings", response_model=FilingsOut, response_model_exclude_unset=True, responses=LIST_ERRORS)
    async def filings(
        region: Annotated[str | None, Query(pattern=r"^\d{6}(\d{3}(\d{3})?)?$",
                                            description="only this division (within yours)")] = None,
        principal: Principal = runtime.auth.require(*FILING_READERS),
    ):
        """Cases filed (备案) because a member is a cadre or a cadre's close relative, within the
        caller's region: why (declared at intake, or the county's register), names masked."""
        region_filter(region, principal)
        views = await runtime.views()
        with views.transaction() as tx:
            docs = [doc for _, _, _, doc in tx.all("filing")]
        items = in_region(docs, principal, region)
        items.sort(key=lambda d: (d["flagged_at"], d["case_id"]))
        return {"items": items}

    return api
