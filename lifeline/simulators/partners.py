"""Partner-department simulator: answers economic-verification requests.

Real departments (人社, 税务, 银行 …) cannot be reached from here, so this
process plays them over the real protocol: it consumes VerificationRequested
from `lifeline.partner.requests.v1` and publishes DepartmentRecordsReported to
`lifeline.partner.records.v1`, as a department's adapter would.

Its data set is deterministic: each person's figures derive from a hash of
(seed, department, ID number), unless a record was loaded for that person.
It can misbehave on purpose: stay silent for a department, answer late,
answer twice, or send garbage — set over HTTP (`PUT /v1/behaviour`) or by
settings (`LIFELINE_SIMULATOR_SILENT=housing,tax`).

An answer's identity is (source `partner/<department>`, sequence of the
request in the verification log), so answering the same request twice is
recognised downstream as one answer.

It also reports deaths as public security (户籍注销) or civil affairs (殡葬) would:
`POST /v1/deaths` publishes one DeathReported to `lifeline.partner.records.v1`.
The department's record id, the CloudEvent id and its sequence all derive from
(department, ID number, date of death), so the same death reported again — by a
repeated command, or after a restart — is the same record to every consumer.

Likewise other life events (`POST /v1/life-events`: large medical costs after insurance,
registered unemployment, disaster losses) publish one LifeEventReported, whose record id
derives from (department, kind, ID number, day, amount); and a department answers a
referral raised to it (`POST /v1/referral-answers`) with one ReferralAnswered, whose id
derives from (referral, department, outcome).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.contracts.envelope import CloudEvent, ContractError, parse_json
from lifeline.contracts.signing import Signer
from lifeline.domain.clock import clock_for
from lifeline.messaging.kafka import Bus, kafka_client_options
from lifeline.http.app import lifespan_of
from lifeline.http.hardening import harden
from lifeline.http.problems import Problem, install_problem_handlers
from lifeline.rules.ids import has_resident_id_form
from lifeline.runtime.service import signer_for, verifier_for
from lifeline.settings import Settings

log = logging.getLogger(__name__)

FIGURES = (
    "monthly_income_fen", "income_tax_fen", "social_insurance_fen", "assets_fen",
    "medical_expense_fen", "education_expense_fen",
)


def _draw(seed: str, department: str, id_number: str, salt: str, choices: tuple[int, ...]) -> int:
    digest = hashlib.sha256(f"{seed}|{department}|{id_number}|{salt}".encode()).digest()
    return choices[digest[0] % len(choices)]


def default_figures(seed: str, department: str, id_number: str) -> dict[str, int]:
    """What a department knows of a person in the seeded data set (fen per month)."""
    f = {name: 0 for name in FIGURES}
    if department == "hrss":  # wages, pensions, unemployment benefit
        f["monthly_income_fen"] = _draw(seed, department, id_number, "income", (0, 0, 30000, 60000, 120000))
        if f["monthly_income_fen"]:
            f["social_insurance_fen"] = f["monthly_income_fen"] * 105 // 1000
    elif department == "tax":
        f["income_tax_fen"] = _draw(seed, department, id_number, "tax", (0, 0, 0, 1500))
    elif department == "bank":
        f["assets_fen"] = _draw(seed, department, id_number, "assets", (0, 500000, 1500000, 9000000))
    elif department == "medical_insurance":
        f["medical_expense_fen"] = _draw(seed, department, id_number, "medical", (0, 0, 80000))
    return f


@dataclass
class Behaviour:
    silent: set[str] = field(default_factory=set)
    delay_seconds: dict[str, float] = field(default_factory=dict)
    duplicate: bool = False


class BehaviourIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    silent: list[str] = Field(default_factory=list)
    delay_seconds: dict[str, float] = Field(default_factory=dict)
    duplicate: bool = False


class RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    monthly_income_fen: int = Field(0, ge=0)
    income_tax_fen: int = Field(0, ge=0)
    social_insurance_fen: int = Field(0, ge=0)
    assets_fen: int = Field(0, ge=0)
    medical_expense_fen: int = Field(0, ge=0)
    education_expense_fen: int = Field(0, ge=0)
    employed_since: date | None = Field(
        None, description="人社 (hrss) only: the day the current registered employment began (就业登记)")


# The departments that report deaths, as DeathReported's schema names them.
DEATH_REPORTERS: tuple[str, ...] = tuple(
    registry.schema("DeathReported")["properties"]["department"]["enum"])
_RECORD_PREFIX = {"public_security": "PS", "civil_affairs": "CA"}


class DeathIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id_number: str = Field(min_length=18, max_length=18, description="18-character resident ID number")
    name: str = Field(min_length=1, max_length=64)
    date_of_death: date = Field(description="YYYY-MM-DD")
    department: Literal[DEATH_REPORTERS] = Field(  # type: ignore[valid-type]
        default="public_security", description="public_security (户籍) or civil_affairs (殡葬)")

    @field_validator("id_number")
    @classmethod
    def _resident_id(cls, value: str) -> str:
        value = value.upper()
        if not has_resident_id_form(value):
            raise ValueError("not a resident ID number (17 digits and the GB 11643 check character)")
        return value


# Life events (dynamic monitoring) and referral answers, as their schemas name them.
LIFE_EVENT_DEPARTMENTS: tuple[str, ...] = tuple(
    registry.schema("LifeEventReported")["properties"]["department"]["enum"])
LIFE_EVENT_KINDS: tuple[str, ...] = tuple(registry.schema("LifeEventReported")["properties"]["kind"]["enum"])
# Who reports a kind of life event unless told otherwise.
LIFE_EVENT_REPORTER = {"medical_expense": "medical_insurance", "unemployment_registered": "hrss",
                       "disaster_loss": "emergency"}
REFERRAL_ANSWERERS: tuple[str, ...] = tuple(
    registry.schema("ReferralAnswered")["properties"]["department"]["enum"])
REFERRAL_OUTCOMES: tuple[str, ...] = tuple(registry.schema("ReferralAnswered")["properties"]["outcome"]["enum"])


class LifeEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal[LIFE_EVENT_KINDS]  # type: ignore[valid-type]
    id_number: str = Field(min_length=18, max_length=18, description="18-character resident ID number")
    name: str = Field(min_length=1, max_length=64)
    region_code: str = Field(pattern=r"^\d{9}(\d{3})?$", description="township (9) or village (12) code")
    amount_fen: int = Field(0, ge=0, description="costs after insurance, losses (fen); 0 for unemployment")
    only_earner: bool | None = Field(None, description="the household's only earner (unemployment)")
    occurred_on: date = Field(description="YYYY-MM-DD")
    department: Literal[LIFE_EVENT_DEPARTMENTS] | None = Field(  # type: ignore[valid-type]
        None, description="default: medical_insurance, hrss or emergency by kind")
    record_id: str | None = Field(None, min_length=1, max_length=64,
                                  description="the department's record id; default derived from the record")

    @field_validator("id_number")
    @classmethod
    def _resident_id(cls, value: str) -> str:
        value = value.upper()
        if not has_resident_id_form(value):
            raise ValueError("not a resident ID number (17 digits and the GB 11643 check character)")
        return value


class ReferralAnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    referral_id: str = Field(min_length=1, max_length=64)
    case_id: str = Field(min_length=1, max_length=64)
    department: Literal[REFERRAL_ANSWERERS]  # type: ignore[valid-type]
    outcome: Literal[REFERRAL_OUTCOMES]  # type: ignore[valid-type]
    note: str = Field("", max_length=2000)


def life_event_record_id(department: str, kind: str, id_number: str, occurred_on: str, amount_fen: int) -> str:
    """The department's record id of a life event: the same record gives the same id."""
    digest = hashlib.sha256(f"life|{department}|{kind}|{id_number}|{occurred_on}|{amount_fen}".encode()).hexdigest()
    return f"{department.upper()[:4]}-{digest[:20].upper()}"


def death_record_id(department: str, id_number: str, date_of_death: str) -> str:
    """The department's record id of a death: the same report gives the same id."""
    digest = hashlib.sha256(f"death|{department}|{id_number}|{date_of_death}".encode()).hexdigest()
    return f"{_RECORD_PREFIX.get(department, department.upper())}-{digest[:20].upper()}"


def death_sequence(record_id: str) -> int:
    """The report's sequence under source ``partner/<department>``: derived from the record id
    (1 .. 2**52), so a consumer's (source, sequence) tracking sees a repeated report as one."""
    return int(hashlib.sha256(f"sequence|{record_id}".encode()).hexdigest()[:13], 16) + 1


class PartnerSimulator:
    def __init__(self, settings: Settings, seed: str | None = None):
        self.settings = settings
        self.seed = settings.simulator_seed if seed is None else seed
        self.bus = Bus(settings, client_id="lifeline-partner-simulator")
        self.clock = clock_for(settings)
        self.records: dict[tuple[str, str], dict[str, int]] = {}
        self.behaviour = Behaviour(silent=set(settings.silent_departments))
        self.answered = 0
        self.deaths: dict[str, bytes] = {}  # record id -> the DeathReported first published
        self.life_events: dict[str, bytes] = {}  # record id -> the LifeEventReported first published
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.consumer: AIOKafkaConsumer | None = None
        # Each department signs with its own key (generated in the data directory on the
        # embedded default); requests are taken only when verification signed them.
        self.signers: dict[str, Signer] = {}
        self.verifier = verifier_for(settings)

    def signed(self, event: CloudEvent) -> bytes:
        signer = self.signers.get(event.source)
        if signer is None:
            signer = self.signers[event.source] = signer_for(self.settings, event.source)
        return signer.signed_json(event)

    def figures(self, department: str, id_number: str) -> dict[str, Any]:
        """A person's row: the figures, and for 人社 (hrss) the day a registered employment
        began (`employed_since`, null when none)."""
        found = self.records.get((department, id_number)) or default_figures(self.seed, department, id_number)
        row: dict[str, Any] = {name: found.get(name, 0) for name in FIGURES}
        if department == "hrss":
            row["employed_since"] = found.get("employed_since")
        return row

    def answer(self, request: Any) -> bytes:
        """The DepartmentRecordsReported CloudEvent answering one request."""
        data = request.data
        department = data["department"]
        now = self.clock.now()
        event = registry.new_event(
            "DepartmentRecordsReported",
            {
                "request_id": data["request_id"],
                "case_id": data["case_id"],
                "department": department,
                "members": [
                    {"id_number": n, **self.figures(department, n)} for n in data["id_numbers"]
                ],
                "reported_at": now.isoformat(),
            },
            subject=data["case_id"],
            source=f"partner/{department}",
            time=now.isoformat(timespec="milliseconds"),
            sequence=request.sequence,
            actor={"user_id": f"adapter:{department}", "role": "partner", "org_code": department},
            correlationid=request.correlationid or request.id,
            causationid=request.id,
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"lifeline:answer:{data['request_id']}")),
        )
        return self.signed(event)

    async def handle(self, raw: bytes) -> None:
        try:
            obj = parse_json(raw)
            self.verifier.check(obj)
            request = registry.accept(CloudEvent.from_dict(obj))
        except ContractError as exc:  # EventRejected too: a department acts on Lifeline's requests only
            log.warning("simulator: ignoring a request: %s", exc.reason)
            return
        if request.name != "VerificationRequested":
            return
        department = request.data["department"]
        if department in self.behaviour.silent:
            return
        delay = self.behaviour.delay_seconds.get(department, 0)
        if delay:
            self._tasks.append(asyncio.create_task(self._send_later(delay, request)))
            return
        await self._send(request)

    async def _send_later(self, delay: float, request: Any) -> None:
        await asyncio.sleep(delay)
        await self._send(request)

    async def _send(self, request: Any) -> None:
        value = self.answer(request)
        for _ in range(2 if self.behaviour.duplicate else 1):
            await (await self.bus.send(T.PARTNER_RECORDS, value, request.data["case_id"]))
        self.answered += 1

    def death(self, body: DeathIn) -> tuple[dict[str, Any], bytes]:
        """The DeathReported CloudEvent of one death (the one published before, if any)."""
        department, day = body.department, body.date_of_death.isoformat()
        record_id = death_record_id(department, body.id_number, day)
        if record_id in self.deaths:
            raw = self.deaths[record_id]
            return registry.decode(raw).data, raw
        now = self.clock.now()
        data = {"record_id": record_id, "department": department, "id_number": body.id_number,
                "name": body.name, "date_of_death": day, "reported_at": now.isoformat()}
        return data, self._record("DeathReported", data, department, now, f"lifeline:death:{record_id}")

    async def report_death(self, body: DeathIn) -> dict[str, Any]:
        """Publish one DeathReported (again, for a death reported before) and wait for the ack."""
        data, value = self.death(body)
        key = T.key_for("DeathReported", data["record_id"], data)
        await (await self.bus.send(T.PARTNER_RECORDS, value, key))
        self.deaths.setdefault(data["record_id"], value)
        return data

    def life_event(self, body: LifeEventIn) -> tuple[dict[str, Any], bytes]:
        """The LifeEventReported CloudEvent of one record (the one published before, if any)."""
        department = body.department or LIFE_EVENT_REPORTER[body.kind]
        day = body.occurred_on.isoformat()
        record_id = body.record_id or life_event_record_id(department, body.kind, body.id_number, day,
                                                           body.amount_fen)
        if record_id in self.life_events:
            raw = self.life_events[record_id]
            return registry.decode(raw).data, raw
        now = self.clock.now()
        data = {"record_id": record_id, "department": department, "kind": body.kind,
                "id_number": body.id_number, "name": body.name, "region_code": body.region_code,
                "amount_fen": body.amount_fen, "only_earner": body.only_earner, "occurred_on": day,
                "reported_at": now.isoformat()}
        return data, self._record("LifeEventReported", data, department, now,
                                  f"lifeline:life-event:{department}:{record_id}")

    def _record(self, name: str, data: dict[str, Any], department: str, now: datetime, identity: str) -> bytes:
        """A department's record about a person as a CloudEvent: its subject the record id, its id
        the same whenever the record is reported again."""
        record_id = data["record_id"]
        event = registry.new_event(
            name, data, subject=record_id, source=f"partner/{department}",
            time=now.isoformat(timespec="milliseconds"), sequence=death_sequence(record_id),
            actor={"user_id": f"adapter:{department}", "role": "partner", "org_code": department},
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, identity)),
        )
        return self.signed(event)

    async def report_life_event(self, body: LifeEventIn) -> dict[str, Any]:
        """Publish one LifeEventReported (again, for a record reported before) and wait for the ack."""
        data, value = self.life_event(body)
        await (await self.bus.send(T.PARTNER_RECORDS, value, T.key_for("LifeEventReported", data["record_id"], data)))
        self.life_events.setdefault(data["record_id"], value)
        return data

    def referral_answer(self, body: ReferralAnswerIn) -> tuple[dict[str, Any], bytes]:
        """The ReferralAnswered CloudEvent of one answer: the same answer is the same event."""
        answer_id = f"{body.referral_id}|{body.department}|{body.outcome}"
        now = self.clock.now()
        data = {"referral_id": body.referral_id, "case_id": body.case_id, "department": body.department,
                "outcome": body.outcome, "note": body.note, "answered_at": now.isoformat()}
        event = registry.new_event(
            "ReferralAnswered", data,
            subject=body.case_id,
            source=f"partner/{body.department}",
            time=now.isoformat(timespec="milliseconds"),
            sequence=death_sequence(f"answer|{answer_id}"),
            actor={"user_id": f"adapter:{body.department}", "role": "partner", "org_code": body.department},
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"lifeline:referral-answer:{answer_id}")),
        )
        return data, self.signed(event)

    async def answer_referral(self, body: ReferralAnswerIn) -> dict[str, Any]:
        data, value = self.referral_answer(body)
        await (await self.bus.send(T.PARTNER_RECORDS, value, T.key_for("ReferralAnswered", data["case_id"], data)))
        return data

    async def start(self) -> None:
        await self.bus.start()
        await self.bus.ensure_topics(T.ALL_TOPICS)
        self.consumer = AIOKafkaConsumer(
            self.bus.topic(T.PARTNER_REQUESTS),
            **kafka_client_options(self.settings),
            group_id=self.bus.group("partner-simulator"),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=5000,
        )
        await self.consumer.start()
        self._tasks.append(asyncio.create_task(self._run()))

    async def _run(self) -> None:
        assert self.consumer is not None
        while not self._stop.is_set():
            try:
                batches = await self.consumer.getmany(timeout_ms=300)
                for tp, messages in batches.items():
                    for message in messages:
                        await self.handle(message.value or b"")
                    await self.consumer.commit({tp: messages[-1].offset + 1})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("simulator loop failed; retrying")
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self.consumer is not None:
            await self.consumer.stop()
        await self.bus.stop()


def create_app(settings: Settings) -> FastAPI:
    sim = PartnerSimulator(settings)

    app = FastAPI(title="Lifeline partner-department simulator", lifespan=lifespan_of(sim.start, sim.stop))
    app.state.simulator = sim
    install_problem_handlers(app)
    harden(app, settings)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "service": "simulator"}

    @app.get("/readyz")
    async def readyz():
        return {"status": "ok" if sim.consumer is not None else "starting"}

    @app.get("/v1/behaviour")
    async def get_behaviour():
        b = sim.behaviour
        return {"silent": sorted(b.silent), "delay_seconds": b.delay_seconds, "duplicate": b.duplicate,
                "answered": sim.answered}

    @app.put("/v1/behaviour")
    async def set_behaviour(body: BehaviourIn):
        sim.behaviour = Behaviour(set(body.silent), dict(body.delay_seconds), body.duplicate)
        return await get_behaviour()

    @app.put("/v1/records/{department}/{id_number}")
    async def put_record(department: str, id_number: str, body: RecordIn):
        if body.employed_since is not None and department != "hrss":
            raise Problem(422, "Not a department's record", "employed_since is recorded by hrss (人社) only",
                          slug="employed-since-hrss-only", field="employed_since")
        sim.records[(department, id_number)] = body.model_dump(mode="json")
        return {"department": department, "id_number": id_number, **sim.figures(department, id_number)}

    @app.post("/v1/deaths", status_code=202)
    async def report_death(body: DeathIn):
        """Report a death as the department would: one DeathReported on the partner records
        topic; the same death (department, ID number, date) always has the same record id."""
        if body.date_of_death > sim.clock.now().date():
            raise Problem(422, "Death in the future", "date_of_death is after today",
                          slug="death-in-the-future")
        try:
            return await sim.report_death(body)
        except KafkaError as exc:
            raise Problem(503, "Broker unavailable", f"DeathReported not published: {type(exc).__name__}",
                          headers={"Retry-After": "1"}) from None

    @app.post("/v1/life-events", status_code=202)
    async def report_life_event(body: LifeEventIn):
        """Report a life event as the department would (医保 costs after insurance, 人社 registered
        unemployment, 应急 disaster losses): one LifeEventReported on the partner records topic;
        the same record always has the same record id (and CloudEvent id)."""
        if body.occurred_on > sim.clock.now().date():
            raise Problem(422, "Life event in the future", "occurred_on is after today",
                          slug="life-event-in-the-future")
        try:
            return await sim.report_life_event(body)
        except KafkaError as exc:
            raise Problem(503, "Broker unavailable", f"LifeEventReported not published: {type(exc).__name__}",
                          headers={"Retry-After": "1"}) from None

    @app.post("/v1/referral-answers", status_code=202)
    async def answer_referral(body: ReferralAnswerIn):
        """The referral's target answers it: one ReferralAnswered on the partner records topic."""
        try:
            return await sim.answer_referral(body)
        except KafkaError as exc:
            raise Problem(503, "Broker unavailable", f"ReferralAnswered not published: {type(exc).__name__}",
                          headers={"Retry-After": "1"}) from None

    @app.get("/v1/records/{department}/{id_number}")
    async def get_record(department: str, id_number: str):
        return {"department": department, "id_number": id_number, **sim.figures(department, id_number)}

    return app
