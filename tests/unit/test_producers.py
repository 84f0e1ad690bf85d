"""Every public event, made by its real producer, agrees field by field with its schema,
and every event a service consumes is fed to it from its producer's own code.

One scenario runs the five services' applications in this process (in-memory stores,
one fixed clock) and the partner simulator's real answer code: what a service's outbox
relay would publish (`to_cloud_events` with the service's outbound map) is encoded,
decoded as a consumer would (`registry.decode`), and delivered to every service whose
consumer group reads that topic. Nothing here is built by hand but the clerk's forms.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

import pytest

from lifeline.contracts import registry
from lifeline.contracts import topics as T
from lifeline.domain.aggregate import Meta
from lifeline.domain.clock import FixedClock
from lifeline.messaging.outbox import to_cloud_events
from lifeline.settings import Settings
from lifeline.simulators.bank import BankSimulator, BehaviourIn
from lifeline.simulators.partners import DeathIn, LifeEventIn, PartnerSimulator, ReferralAnswerIn
from lifeline.simulators.sms import SmsGateway
from lifeline.stores import chain
from lifeline.stores.projection import Projection
from lifeline.stores.sidestore import SideStore
from services.charity.application import CharityApplication
from services.charity.application import project as charity_project
from services.charity.consumers import CONSUMES as CHARITY_CONSUMES
from services.intake import persons, relief
from services.intake.application import IntakeApplication
from services.intake.application import project as intake_project
from services.intake.consumers import CONSUMES as INTAKE_CONSUMES
from services.notify.application import NotifyApplication
from services.notify.application import project as notify_project
from services.notify.consumers import CONSUMES as NOTIFY_CONSUMES
from services.payment.application import PaymentApplication
from services.payment.application import project as payment_project
from services.payment.consumers import CONSUMES as PAYMENT_CONSUMES
from services.payment.files import FileWriter
from services.payment.runs import Jobs, RunEngine
from services.payment.worker import SYSTEM
from services.verification.application import VerificationApplication
from services.verification.assessment import RECORD_FIELDS
from services.verification.application import project as verification_project
from services.verification.consumers import CONSUMES as VERIFICATION_CONSUMES
from services.verification import care
from lifeline.rules.ids import make_resident_id
from services.verification import services_in_kind
from services.verification import county_filings

from .services import (
    CASEWORKER,
    CLERK,
    COUNTY_OFFICER,
    MEMORY_ENV,
    REVIEWER,
    SEALER,
    SURVEYORS,
    application_body,
    pid,
)

NOW = "2026-11-25T09:00:00+08:00"
# Public events no Lifeline service consumes yet (read by partners, the federation, auditors).
NOT_CONSUMED_YET = {"VerificationRequested", "EntitlementOpened", "NoticeIssued", "NeedOpened",
                    "FundRegistered",
                    # a fund's ledger (issue 12): read by the county's finance office, donors and auditors;
                    # a need on the federation feed: read by the federation (feed, webhooks)
                    "DonationReceived", "FundAllocated", "AllocationReleased", "AllocationDisbursed",
                    "NeedPublished",
                    # a held application and its decision: read by the console and auditors (issue 11)
                    "DuplicateSuspected", "DuplicateDecided",
                    # the procedure's steps and the watch's answers: read by auditors and the console
                    "HouseholdSurveyRecorded", "InitialReviewProposed", "ObjectionRaised",
                    "DemocraticAppraisalHeld", "DeadlineWarning",
                    # a review's start and end (issue 11): read by the console and auditors; notify
                    # issues the 调整/停发告知书 on the Benefit* change that follows
                    "ReviewStarted", "ReviewCompleted",
                    # finding households and referrals followed up (issue 11): read by the console
                    "DiscoveryReported", "DiscoveryContacted", "ReferralOutcomeRecorded",
                    # payment's runs and what the banks answered: read by auditors, the console and
                    # (the notices issue) notify
                    "PaymentRunStarted", "PaymentInstructed", "BankBatchSubmitted", "PaymentSettled",
                    "PaymentReturned", "PaymentRecallRequested", "PaymentRunCompleted", "ReconciliationCompleted",
                    # what a household is to pay back: read by the county's finance office and auditors
                    "RecoveryOpened",
                    # 特困 support and its visits (issue 17): read by the console, the county and auditors
                    "SupportArranged", "GuardianConfirmed", "CareAgreementSigned", "CareVisitRecorded",
                    # a provider registered and a service ordered (issue 17): read by the console and
                    # auditors; payment reacts to the delivery confirmed
                    "ProviderRegistered", "ServiceOrdered",
                    # 镇→县备案 and the monthly statistics (issue 17): read by the province's platform
                    "CountyFilingDue", "CountyFilingReceived", "MonthlyStatisticsPublished",
                    # the head of each service's hash-chained log (issue 13): read by `lifeline audit verify`
                    "LogSealed",
                    # a notice's delivery per channel (issue 13): read by the console and auditors
                    "NoticeDelivered", "NoticeFailed"}


class Scenario:
    def __init__(self, tmp_path):
        self.clock = clock = FixedClock(NOW)
        env = dict(MEMORY_ENV)
        self.apps = {
            "intake": (IntakeApplication(env, clock=clock, sealer=SEALER), INTAKE_CONSUMES, intake_project),
            "verification": (VerificationApplication(env, clock=clock), VERIFICATION_CONSUMES,
                             verification_project),
            "payment": (PaymentApplication(env, clock=clock, sealer=SEALER), PAYMENT_CONSUMES, payment_project),
            "charity": (CharityApplication(env, clock=clock), CHARITY_CONSUMES, charity_project),
            "notify": (NotifyApplication(env, clock=clock), NOTIFY_CONSUMES, notify_project),
        }
        self.settings = settings = Settings.from_env({"LIFELINE_DATA_DIR": str(tmp_path)})
        self.simulator = PartnerSimulator(settings)
        # The bank simulator's real code answers payment's files (no HTTP: no callbacks).
        self.bank = BankSimulator(settings)
        self.bank.behaviour = BehaviourIn(callbacks=False)
        self.files_dir = tmp_path / "payment-files"
        self.published: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.delivered: dict[tuple[str, str], int] = defaultdict(int)
        self._positions = dict.fromkeys(self.apps, 0)

    def app(self, name: str) -> Any:
        return self.apps[name][0]

    def poor(self, *ids: str) -> None:
        """The departments report no income and no assets for these people."""
        for department in ("hrss", "tax", "bank", "housing_fund", "public_security", "housing",
                           "market_regulation", "medical_insurance", "education"):
            for id_number in ids:
                self.simulator.records[(department, id_number)] = dict.fromkeys(RECORD_FIELDS, 0)

    def settle(self) -> None:
        """Relay every service's new events to every consumer until nothing moves."""
        moved = True
        while moved:
            moved = False
            for service, (app, _, _) in self.apps.items():
                start = self._positions[service]
                for note in app.recorder.select_notifications(start + 1, 1000):
                    self._positions[service] = note.id
                    moved = True
                    event = app.mapper.to_domain_event(note)
                    for topic, _key, cloud in to_cloud_events(service, note.id, event, app.outbound):
                        self._deliver(topic, cloud.to_json())

    def _deliver(self, topic: str, raw: bytes) -> None:
        event = registry.decode(raw)
        if topic == T.topics_for(event.name)[0]:
            self.published[event.name].append(event.data)
        if topic == T.PARTNER_REQUESTS:
            answer = registry.decode(self.simulator.answer(event))  # the simulator's real code
            self.published[answer.name].append(answer.data)
            self._to_consumers(T.PARTNER_RECORDS, answer)
        self._to_consumers(topic, event)

    def _to_consumers(self, topic: str, event) -> None:
        for service, (app, consumes, _) in self.apps.items():
            if topic in consumes and event.name in app.handled_events:
                app.process_cloud_event(event)
                self.delivered[(service, event.name)] += 1

    def views(self, service: str) -> SideStore:
        app, _, project = self.apps[service]
        side = SideStore.in_memory()
        Projection(app, side, project).catch_up()
        return side


def form(ids: list[str], **overrides: Any) -> dict:
    return application_body(ids, **overrides)


ACCEPTED_AT = "2026-11-11T09:00:00+08:00"   # Wednesday: the procedure takes two weeks
STEPS_AT = "2026-11-12T10:00:00+08:00"      # survey, initial review, public notice (until 11-19)
OBJECTION_AT = "2026-11-13T15:00:00+08:00"
APPRAISAL_AT = "2026-11-16T10:00:00+08:00"  # also the day the stalled survey is warned (due 11-16)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    s = Scenario(tmp_path_factory.mktemp("producers"))
    intake, verification, notify = s.app("intake"), s.app("verification"), s.app("notify")
    s.clock.set(ACCEPTED_AT)
    cases: dict[str, str] = {}
    households = {
        "dibao": ([pid(401), pid(402, female=True)], {"contact_phone": "13812345678"}),  # notices by SMS too
        "refused": ([pid(403)], {}),
        "jinan": ([pid(404)], {"assistance_type": "linshi_jinan", "requested_amount_fen": 150000}),
        "zhichu": ([pid(405)], {"assistance_type": "linshi_zhichu", "declared_medical_expense_fen": 90000}),
        "low_income": ([pid(406)], {"assistance_type": "low_income"}),
        "stalled": ([pid(407)], {}),          # accepted, never surveyed: its deadline is breached
        "not_accepted": ([pid(408)], {}),     # materials asked for, then not accepted
        # issue 11, verification: a member dies, then a review with a grace period; fraud confirmed
        "reviewed": ([pid(461), pid(462, female=True), pid(463)], {}),
        "fraud": ([pid(464)], {}),
    }
    s.households = households
    for label, (ids, overrides) in households.items():
        s.poor(*ids)
        cases[label] = intake.submit_application(form(ids, **overrides), CLERK)
        if label == "not_accepted":
            intake.decide_acceptance(cases[label], "request_materials", "授权书未签字", ["authorisation"], CLERK)
            intake.decide_acceptance(cases[label], "refuse", "逾期未补正材料", None, CLERK)
        else:
            intake.decide_acceptance(cases[label], "accept", "材料齐全，予以受理", None, CLERK)
    payment_reserve_fund(s)  # before the grants: intake's emergency relief is paid at once
    intake_finding_and_relief(s)
    intake_outreach(s, cases)
    s.settle()
    notify_delivers_notices(s, cases)
    decided = {"dibao": "include", "jinan": "include", "low_income": "include", "zhichu": "include",
               "refused": "refuse", "reviewed": "include", "fraud": "include"}
    s.clock.set(STEPS_AT)
    for label, proposal in decided.items():
        verification.record_survey(cases[label], SURVEYORS, s.clock.now().date(), "入户调查情况与申报一致", CASEWORKER)
        verification.propose(cases[label], proposal, "初审意见", CASEWORKER)
        if proposal == "include":
            verification.post_notice(cases[label], CASEWORKER)
    s.settle()
    s.clock.set(OBJECTION_AT)
    notice = verification.get_verification(cases["dibao"]).notice
    notify.receive_objection(notice.village_code, notice.public_notice_id, "该户有小轿车一辆", None, "OBJ-PRODUCERS-1")
    s.settle()
    s.clock.set(APPRAISAL_AT)
    for label in decided:
        if verification.get_verification(cases[label]).appraisal_due:
            verification.hold_appraisal(cases[label], s.clock.now().date(), 9, 7, 1, 1, "多数同意", CASEWORKER)
    stalled_survey = f"{cases['stalled']}/household_survey"
    s.settle()
    assert notify.watch_deadline(stalled_survey, s.clock.now()) == "warned"
    s.clock.set(NOW)
    assert notify.watch_deadline(stalled_survey, s.clock.now()) == "breached"
    # The unanswered referral (raised 11-11, due 11-18): breached, intake marks it overdue.
    assert notify.watch_deadline(f"{s.overdue_referral}/referral", s.clock.now()) == "breached"
    for label in ("dibao", "jinan", "low_income"):
        verification.decide(cases[label], "approve", "符合条件", REVIEWER)
    verification.decide(cases["zhichu"], "approve", "支出型困难", COUNTY_OFFICER)
    verification.decide(cases["refused"], "refuse", "家庭财产超过规定标准", REVIEWER)
    # After approval (first period 2026-12): the monthly benefit adjusted, suspended, resumed, ended.
    for change, period, amount in (("adjust", "2027-01", 150000), ("suspend", "2027-02", None),
                                   ("resume", "2027-03", None), ("terminate", "2027-04", None)):
        verification.change_benefit(cases["dibao"], change, period, amount, "年度复核", REVIEWER)
    # The one-off relief's only member dies: the partner simulator's real report reaches payment.
    s.settle()
    _, death = s.simulator.death(DeathIn(id_number=households["jinan"][0][0], name="李建华",
                                         date_of_death="2026-11-20"))
    s._deliver(T.PARTNER_RECORDS, death)
    intake.raise_referral(cases["dibao"], {
        "target": "charity", "need_category": "medical", "amount_asked_fen": 300000,
        "urgency": "urgent", "due_date": "2026-12-05", "consent_to_share": True,
    }, CLERK)
    s.app("charity").register_fund({
        "name": "东营区救急难专项基金", "kind": "special", "need_categories": ["medical"],
        "region_code": "370502", "balance_fen": 10_000_000, "per_case_cap_fen": 500_000,
        "valid_until": None,
    }, COUNTY_OFFICER)
    s.settle()
    pay_december(s, cases)
    verification_reviews_deaths_fraud(s, cases)
    services_in_kind_bought(s, cases)
    verification_county_filings(s)
    verification_tekun_care(s)
    charity_funds_and_allocations(s, cases)
    charity_federation_feed(s, cases)
    logs_sealed(s)
    s.cases = cases
    return s


# --- issue 13, notify: each notice delivered once per channel (SMS, letter, in-app) ------------
class SmsInProcess:
    """The SMS gateway simulator's real code, without HTTP: down on command."""

    def __init__(self, gateway: SmsGateway):
        self.gateway = gateway
        self.down = False

    def send(self, to: str, text: str, key: str) -> str:
        from services.notify.delivery import GatewayError

        if self.down:
            raise GatewayError("gateway_unavailable: HTTP 503", final=False)
        message, _ = self.gateway.send(to, text, key)
        return message["message_id"]


def notify_delivers_notices(s: Scenario, cases: dict[str, str]) -> None:
    """The dibao household's 受理通知书: its SMS fails once (the gateway down), then goes; it
    reaches the inbox; its letter is marked printed."""
    notify = s.app("notify")
    (acceptance,) = [n["notice_id"] for n in s.published["NoticeIssued"]
                     if n["case_id"] == cases["dibao"] and n["kind"] == "acceptance"]
    gateway = SmsInProcess(SmsGateway(s.settings))
    gateway.down = True
    assert notify.send_sms(acceptance, gateway, SEALER, retry_max=1, max_attempts=5, wall=lambda: 0.0) == "retry"
    gateway.down = False
    assert notify.send_sms(acceptance, gateway, SEALER, retry_max=1, max_attempts=5, wall=lambda: 5.0) == "delivered"
    assert notify.deliver_in_app(acceptance)
    notify.mark_printed(acceptance, None, CLERK)
    (sent,) = gateway.gateway.messages()["items"]
    assert sent["to"] == "13812345678" and sent["idempotency_key"] == f"{acceptance}:sms"


# --- issue 11, intake: one person, one file per benefit; the emergency green channel -----------
def intake_finding_and_relief(s: Scenario) -> None:
    """The same person on a second application: held, then withdrawn. An urgent case gets two
    emergency grants within the township's cap: one post-approved, one refused."""
    intake = s.app("intake")
    ids = [pid(409)]
    s.poor(*ids)
    intake.submit_application(form(ids), CLERK)
    held = intake.submit_application(form(ids), CLERK)          # DuplicateSuspected
    persons.decide_duplicate(intake, held, "withdraw", "同一人已有在办申请，撤回本申请", CASEWORKER)
    urgent = intake.submit_application(form([pid(410)], urgency="urgent"), CLERK)
    first, _ = relief.grant_relief(intake, urgent, 200000, "突发重病住院", REVIEWER)     # DeadlineSet
    second, _ = relief.grant_relief(intake, urgent, 100000, "急需生活费用", CASEWORKER)
    relief.decide_post_approval(intake, urgent, first["grant_id"], "approve", "补充审批通过", COUNTY_OFFICER)
    relief.decide_post_approval(intake, urgent, second["grant_id"], "refuse", "不符合条件，予以追回", REVIEWER)
    s.relief_case = urgent


# --- issue 11, payment: emergency relief paid from the reserve fund; recoveries ----------------
def payment_reserve_fund(s: Scenario) -> None:
    """The township's reserve fund holds enough for intake's two grants: both are paid at once;
    the one whose post-approval is refused is recovered (RecoveryOpened)."""
    s.app("payment").replenish("370502101", 1_000_000, "DYQ-BYJ-2026-11", COUNTY_OFFICER)


# --- issue 11, intake: finding households; referrals followed up ------------------------------
def intake_outreach(s: Scenario, cases: dict[str, str]) -> None:
    """A hospital's report, contact and the application made from it; a disaster loss reported
    twice by the simulator's real code (one report); two referrals by the referral clock, one
    answered by the simulator's real code, one left to be breached (see the scenario)."""
    intake = s.app("intake")
    report = intake.report_discovery({
        "reporter": {"kind": "hospital", "organisation": "东营区人民医院", "name": None, "contact": None},
        "person": {"id_number": pid(411), "name": "赵大海", "address": "胜利社区3号楼", "region_code": "370502101001"},
        "seen": "住院费用无力支付", "urgency": "urgent"}, CLERK)
    intake.record_contact(report.report_id, "applying", "已入户联系，协助申请", CLERK)
    s.poor(pid(411))
    assert intake.submit_application(form([pid(411)], discovery_report_id=report.report_id), CLERK) == report.case_id
    loss = LifeEventIn(kind="disaster_loss", id_number=pid(412), name="钱多多", region_code="370502101001",
                       amount_fen=1_500_000, occurred_on="2026-11-10")
    for _ in range(2):
        _, raw = s.simulator.life_event(loss)
        s._deliver(T.PARTNER_RECORDS, raw)
    referral = {"need_category": "medical", "amount_asked_fen": 0, "urgency": "normal", "consent_to_share": True}
    answered = intake.raise_referral(cases["dibao"], {**referral, "target": "medical_insurance"}, CLERK)
    s.overdue_referral = intake.raise_referral(cases["dibao"], {**referral, "target": "housing"}, CLERK)
    _, raw = s.simulator.referral_answer(ReferralAnswerIn(
        referral_id=answered, case_id=cases["dibao"], department="medical_insurance", outcome="accepted",
        note="已受理医疗救助"))
    s._deliver(T.PARTNER_RECORDS, raw)
    s.discovery_reports = [report.report_id]


class _Bank:
    """Payment's bank client, answered by the bank simulator's own code."""

    def __init__(self, simulator: BankSimulator):
        self.simulator = simulator

    def send(self, channel_id: str, file_name: str, content: bytes) -> bytes:
        return self.simulator.receive(content)


def pay_december(s: Scenario, cases: dict[str, str]) -> None:
    """The county's December run, the one-off relief paid at once, the bank's answers: the
    closed account returned, corrected and paid again; a late death's payment recalled."""
    payment = s.app("payment")
    side = SideStore.in_memory()
    engine = RunEngine(payment, side, Projection(payment, side, payment_project), FileWriter(SEALER), s.files_dir)
    jobs = Jobs(engine, _Bank(s.bank))
    s.bank.book.accounts["6228480012345670001"] = "closed"  # the households' account (application_body)
    payment.set_budget("370502", "2026-12", "dibao_fund", 10**9, COUNTY_OFFICER)
    run, _ = payment.start_run("370502", "2026-12", COUNTY_OFFICER)
    engine.advance(run.run_id, COUNTY_OFFICER)
    jobs.run_once(SYSTEM)                       # one-off relief paid, every file sent: all returned AC04
    s.settle()
    # zhichu's applicant died in October, reported now: its relief, instructed, is recalled.
    _, death = s.simulator.death(DeathIn(id_number=s.households["zhichu"][0][0], name="李建华",
                                         date_of_death="2026-10-15"))
    s._deliver(T.PARTNER_RECORDS, death)
    s.bank.book.accounts["6228480012345670001"] = "open"
    [entitlement] = [d for d in side.dump() if d[0] == "entitlement" and d[2] == cases["dibao"]]
    payment.correct_account(entitlement[1], {"channel": "RCC", "account_number": "6228480012345670009",
                                             "account_name": "王小明"}, "原账户已销户", CASEWORKER)
    jobs.run_once(SYSTEM)                       # released, sent again, accepted
    account = payment.channels.paying_account("RCC", "370502").account_number
    payment.receive_statement("RCC", s.bank.statement(account), SYSTEM)
    jobs.run_once(SYSTEM)                       # completed and reconciled
    s.settle()


# --- issue 11, verification: reviews, grace periods, deaths, fraud -----------------------------
def verification_reviews_deaths_fraud(s: Scenario, cases: dict[str, str]) -> None:
    """After December's run: a member of a three-person household dies (the simulator's real
    report: BenefitAdjusted), its review finds a member employed after school (ReviewStarted,
    the departments asked again, ReviewCompleted with a 9-month grace, BenefitTerminated after
    it); fraud on another household is reported by one county officer and confirmed by a second
    (BenefitTerminated, FraudRecorded)."""
    verification = s.app("verification")
    for label in ("reviewed", "fraud"):
        verification.decide(cases[label], "approve", "符合条件", REVIEWER)
    s.settle()
    ids = s.households["reviewed"][0]
    _, death = s.simulator.death(DeathIn(id_number=ids[2], name="王乐", date_of_death="2026-11-20"))
    s._deliver(T.PARTNER_RECORDS, death)
    s.simulator.records[("hrss", ids[1])] = {**dict.fromkeys(RECORD_FIELDS, 0), "monthly_income_fen": 400000}
    verification.start_review(cases["reviewed"], "graduate_employed", 9, "年度复核", CASEWORKER)
    s.settle()  # the simulator answers the review's requests; the review completes
    assert verification.get_verification(cases["reviewed"]).reviews, "the review never started"
    verification.report_fraud(cases["fraud"], ["concealment"], "隐瞒配偶工资收入", date(2026, 11, 1), COUNTY_OFFICER)
    verification.confirm_fraud(cases["fraud"], Meta("county-002", "county_officer", "370502"))
    s.settle()


# --- issue 12, charity: funds, donations, allocations; the referral answered ------------------
def charity_funds_and_allocations(s: Scenario, cases: dict[str, str]) -> None:
    """The county registers a named fund for the township's dibao and low-income households and
    a donation feeds it (the same receipt twice: one donation); a referral to charity for the
    low-income family becomes a need; two allocations, one released (AllocationReleased) and
    allocated again, both disbursed (AllocationDisbursed, then NeedFulfilled by funds); intake
    closes the referral as resolved."""
    charity, intake = s.app("charity"), s.app("intake")
    fund_id = charity.register_fund({
        "name": "胜利街道张氏冠名基金", "kind": "named", "donor": "张建华", "need_categories": ["medical", "living"],
        "region_code": "370502", "regions": ["370502101"], "household_types": ["dibao", "low_income"],
        "balance_fen": 100_000, "per_case_cap_fen": 150_000, "per_household_year_cap_fen": 300_000,
        "valid_from": "2026-01-01", "valid_until": "2026-12-31"}, COUNTY_OFFICER)
    for _ in range(2):
        charity.receive_donation(fund_id, "ZJH-2026-11-01", "张建华", 200_000, "2026-11-20", COUNTY_OFFICER)
    s.charity_referral = intake.raise_referral(cases["low_income"], {
        "target": "charity", "need_category": "living", "amount_asked_fen": 120_000, "urgency": "urgent",
        "due_date": "2026-12-05", "consent_to_share": False}, CLERK)
    s.settle()
    need_id = charity.need_of_referral(s.charity_referral).need_id
    first = charity.allocate(need_id, fund_id, 70_000, CASEWORKER)
    charity.release(need_id, first.allocation_id, "金额有误，重新分配", CASEWORKER)
    for amount in (70_000, 50_000):
        allocation = charity.allocate(need_id, fund_id, amount, CASEWORKER)
        charity.disburse(need_id, allocation.allocation_id, f"ZF-{amount}", "2026-11-25", CASEWORKER)
    s.settle()


def test_a_referral_to_charity_is_resolved_when_its_need_is_fulfilled_by_funds(scenario):
    referral_id = scenario.charity_referral
    [fulfilled] = [d for d in scenario.published["NeedFulfilled"] if d["referral_id"] == referral_id]
    assert (fulfilled["by"], fulfilled["amount_fen"]) == ("funds", 120_000)
    [answer] = [d for d in scenario.published["ReferralOutcomeRecorded"] if d["referral_id"] == referral_id]
    assert (answer["outcome"], answer["answered_by"]) == ("resolved", "department")
    [donation] = scenario.published["DonationReceived"]
    assert (donation["amount_fen"], donation["balance_fen"]) == (200_000, 300_000)


# --- issue 12, charity: the federation feed (what no fund covers) and the federation's answer ------
def charity_federation_feed(s: Scenario, cases: dict[str, str]) -> None:
    """A referral to charity no fund fits (housing) is published to the federation by the
    worker's publication step (NeedPublished); the federation accepts it (NeedAccepted: intake
    answers the referral) and fulfils it (NeedFulfilled by the federation)."""
    from services.charity.federation import accept_need, fulfil_need, publish_uncovered

    charity, intake = s.app("charity"), s.app("intake")
    s.federation_referral = intake.raise_referral(cases["zhichu"], {
        "target": "charity", "need_category": "housing", "amount_asked_fen": 800_000, "urgency": "critical",
        "due_date": "2026-12-20", "consent_to_share": True}, CLERK)
    s.settle()
    published = publish_uncovered(charity, s.views("charity"))
    need_id = charity.need_of_referral(s.federation_referral).need_id
    assert need_id in published
    federation = Meta("federation-1", "charity_federation", "000000")
    accept_need(charity, need_id, "东营区慈善总会", "已认领", federation)
    fulfil_need(charity, need_id, "东营区慈善总会", 800_000, "住房修缮款已拨付", federation)
    s.settle()


def test_a_need_no_fund_covers_reaches_the_federation_masked_and_its_answer_reaches_intake(scenario):
    referral_id = scenario.federation_referral
    [need] = [d for d in scenario.published["NeedOpened"] if d["referral_id"] == referral_id]
    # Only the need no fund covers: the dibao family's medical need is covered by the special fund.
    [published] = scenario.published["NeedPublished"]
    assert published["need_id"] == need["need_id"] and published["amount_still_needed_fen"] == 800_000
    assert published["region_code"] == need["region_code"][:9] and published["name_masked"] == need["name_masked"]
    [accepted] = scenario.published["NeedAccepted"]
    assert (accepted["referral_id"], accepted["organisation"]) == (referral_id, "东营区慈善总会")
    [by_federation] = [d for d in scenario.published["NeedFulfilled"] if d["referral_id"] == referral_id]
    assert (by_federation["by"], by_federation["amount_fen"]) == ("federation", 800_000)
    [answer] = [d for d in scenario.published["ReferralOutcomeRecorded"] if d["referral_id"] == referral_id]
    assert (answer["outcome"], answer["answered_by"]) == ("accepted", "department")


# --- issue 17, verification: 镇→县备案 and the monthly statistics -------------------------------
def verification_county_filings(s: Scenario) -> None:
    """Every township decision above was filed with the county when it was stored (CountyFilingDue,
    DeadlineSet); the county receives the first (CountyFilingReceived, DeadlineCleared) and, once
    November is over, publishes its statistics (MonthlyStatisticsPublished)."""
    verification = s.app("verification")
    with s.views("verification").transaction() as tx:
        first = min(tx.all("county_filing"), key=lambda row: row[3]["decided_at"])[3]
        rolls = tx.find("benefit_roll", "370502")
    county_filings.receive_filing(verification, first["filing_id"], "材料齐全", COUNTY_OFFICER)
    s.clock.set("2026-12-01T09:00:00+08:00")
    county_filings.publish_statistics(verification, "370502", "2026-11", rolls, COUNTY_OFFICER)
    s.clock.set(NOW)
    s.settle()


# --- issue 17, verification and payment: services and goods in kind from providers -----------
def services_in_kind_bought(s: Scenario, cases: dict[str, str]) -> None:
    """The county registers a provider (ProviderRegistered, its account sealed as intake seals
    households'); a caseworker orders psychological support for the low-income family
    (ServiceOrdered); the provider reports a delivery twice (one delivery) and a caseworker
    confirms it (ServiceDeliveryConfirmed): payment pays the provider once (PaymentInstructed)."""
    verification = s.app("verification")
    provider = services_in_kind.register_provider(
        verification, name="东营区心晴社会工作服务中心", credit_code=services_in_kind.CREDIT_CODE,
        service_kinds=["psychological_support"], regions=["370502"],
        prices=[{"kind": "psychological_support", "unit": "session", "unit_price_fen": 20000}],
        contract_from=date(2026, 1, 1), contract_to=date(2027, 12, 31),
        bank_account=SEALER.account("ICBC", "1602000009000012345", "东营区心晴社会工作服务中心"), meta=COUNTY_OFFICER)
    order = services_in_kind.place_order(verification, "SO-PRODUCERS00000000001", cases["low_income"],
                                         "psychological_support", 4, "session", "2026-11", provider.provider_id,
                                         CASEWORKER)
    by = Meta(provider.provider_id, "provider", "370502")
    for _ in range(2):
        _, delivery_id, _ = services_in_kind.report_delivery(verification, order.order_id, provider.provider_id,
                                                             date(2026, 11, 20), 2, "两次心理疏导", "XQ-1120-01", by)
    services_in_kind.confirm_delivery(verification, order.order_id, delivery_id, CASEWORKER)
    s.settle()
    s.service_order = order.order_id


def test_a_confirmed_delivery_pays_its_provider_once(scenario):
    [paid] = [p for p in scenario.published["PaymentInstructed"] if p["fund_source"] == "service_purchase"]
    [confirmed] = scenario.published["ServiceDeliveryConfirmed"]
    assert (paid["entitlement_id"], paid["amount_fen"], confirmed["amount_fen"]) == (scenario.service_order, 40000, 40000)
    assert paid["bank_account_ref"] == "ICBC:1602***********2345"


# --- issue 17, verification: 特困 support, guardians, care agreements, visits --------------------
ORPHAN = make_resident_id("370502", date(2009, 3, 10), 471, female=False)   # 17 in November 2026
GUARDIAN_ID = make_resident_id("370502", date(1958, 6, 18), 472, female=True)


def verification_tekun_care(s: Scenario) -> None:
    """A 17-year-old orphan with an intellectual disability applies for 特困 alone and is approved
    after the notice (the clock moved on, then back to NOW); a guardian is confirmed, a care
    agreement signed, dispersed support arranged (DeadlineSet care_visit) and a visit recorded
    (DeadlineCleared, the next DeadlineSet)."""
    intake, verification = s.app("intake"), s.app("verification")
    s.poor(ORPHAN)
    case_id = intake.submit_application(form([ORPHAN], assistance_type="tekun", members=[{
        "id_number": ORPHAN, "name": "王小明", "relation": "self", "disability_grade": 2,
        "disability_kind": "intellectual", "serious_illness": False, "work_ability": "none",
        "co_resident": True, "support_obligor": False, "support_paid_fen": 0, "cadre_relation": None}]), CLERK)
    intake.decide_acceptance(case_id, "accept", "材料齐全，予以受理", None, CLERK)
    s.settle()
    verification.record_survey(case_id, SURVEYORS, s.clock.now().date(), "入户调查情况与申报一致", CASEWORKER)
    verification.propose(case_id, "include", "初审意见", CASEWORKER)
    verification.post_notice(case_id, CASEWORKER)
    s.clock.set("2026-12-03T10:00:00+08:00")  # the notice is over
    verification.decide(case_id, "approve", "符合特困供养条件", REVIEWER)
    care.confirm_guardian(verification, case_id, {
        "name": "张桂英", "id_number": GUARDIAN_ID, "relation": "grandparent",
        "confirmed_by": "designation_by_committee", "confirmed_on": date(2026, 12, 1)}, CASEWORKER)
    care.sign_agreement(verification, case_id, {
        "kind": "guardianship_care", "carer": {"name": "张桂英", "relation": "grandparent"}, "provider": None,
        "duties": ["日常生活照料", "陪同就医"], "term_from": date(2026, 12, 1), "term_to": date(2027, 11, 30),
        "monthly_amount_fen": 50000}, CASEWORKER)
    care.arrange(verification, case_id, "dispersed", None, False, "监护人代为选择在家分散供养", CASEWORKER)
    care.record_visit(verification, case_id, {
        "visited_on": date(2026, 12, 3), "visitors": [{"name": "赵敏", "role": "township_staff"}],
        "findings": "住房整洁，监护人照料到位。", "care_quality": "good", "follow_up": None}, CASEWORKER)
    s.clock.set(NOW)
    s.settle()
    s.tekun_case = case_id


def test_tekun_support_reaches_the_wire_masked_and_its_visit_clock_reaches_notify(scenario):
    case_id = scenario.tekun_case
    [arranged] = [d for d in scenario.published["SupportArranged"] if d["case_id"] == case_id]
    [visit] = [d for d in scenario.published["CareVisitRecorded"] if d["case_id"] == case_id]
    assert (arranged["mode"], visit["deadline_outcome"]) == ("dispersed", "met")
    everything = str([scenario.published[n] for n in ("GuardianConfirmed", "CareAgreementSigned")])
    assert GUARDIAN_ID not in everything and "张桂英" not in everything
    clocks = [d["deadline_id"] for d in scenario.published["DeadlineSet"] if d["clock"] == "care_visit"]
    assert clocks == [f"{case_id}/care_visit", f"{case_id}/care_visit/2"]
    assert scenario.delivered[("notify", "DeadlineSet")] >= 2


def test_reviews_deaths_and_fraud_reach_their_ends(scenario):
    reviewed = scenario.app("verification").get_verification(scenario.cases["reviewed"])
    [review] = reviewed.reviews.values()
    assert (review.outcome, review.from_period, review.grace["months"]) == ("grace", "2027-09", 9)
    assert [(c.change, c.from_period) for c in reviewed.benefit_changes] == [("adjust", "2026-12"),
                                                                            ("terminate", "2027-09")]
    [recorded] = scenario.published["FraudRecorded"]
    assert recorded["case_id"] == scenario.cases["fraud"]
    assert scenario.households["fraud"][0][0] not in str(recorded)


def _properties(root: dict, schema: dict, path: str = "$") -> set[str]:
    """Every object property a schema declares, by JSON path (arrays as [], the keys of a
    map — an object whose values follow `additionalProperties` — as *)."""
    found: set[str] = set()
    if isinstance(schema.get("additionalProperties"), dict):
        found.add(f"{path}.*")
        found |= _properties(root, _resolve(root, schema["additionalProperties"]), f"{path}.*")
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(root, sub)
        found.add(f"{path}.{key}")
        found |= _properties(root, sub, f"{path}.{key}")
        for alt in sub.get("oneOf", []):
            found |= _properties(root, _resolve(root, alt), f"{path}.{key}")
        if "items" in sub:
            found |= _properties(root, _resolve(root, sub["items"]), f"{path}.{key}[]")
    return found


def _as_declared(path: str, maps: set[str]) -> str:
    """A produced path with the keys of declared maps as * ($.by_channel.RCC → $.by_channel.*)."""
    parts = path.split(".")
    for i in range(1, len(parts)):
        if ".".join(parts[:i]) in maps:
            parts[i] = "*"
    return ".".join(parts)


def _resolve(root: dict, sub: dict) -> dict:
    """A local "$ref" (#/$defs/...) resolved within its schema."""
    node: Any = root
    for part in sub["$ref"].removeprefix("#/").split("/") if "$ref" in sub else ():
        node = node[part]
    return node if "$ref" in sub else sub


def _paths(value: Any, path: str = "$") -> set[str]:
    """The JSON paths a produced payload fills (null counts: the field was produced)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, sub in value.items():
            found.add(f"{path}.{key}")
            found |= _paths(sub, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            found |= _paths(item, f"{path}[]")
    return found


def test_every_public_event_of_every_service_was_produced(scenario):
    for service, (app, _, _) in scenario.apps.items():
        for name in app.outbound.published:
            assert scenario.published.get(name), f"{service} never produced {name}"
    assert scenario.published["DepartmentRecordsReported"], "the simulator answered nothing"


def test_produced_payloads_fill_exactly_the_fields_their_schema_declares(scenario):
    for name, samples in scenario.published.items():
        schema = registry.schema(name)
        declared = _properties(schema, schema)
        maps = {p[:-2] for p in declared if p.endswith(".*")}
        produced = {_as_declared(p, maps) for p in set().union(*(_paths(s) for s in samples))}
        # Fields a schema declares and no producer writes, or the other way round.
        assert produced == declared, (name, sorted(declared - produced), sorted(produced - declared))


def test_every_consumed_event_came_from_its_producer(scenario):
    for service, (app, _, _) in scenario.apps.items():
        for name in app.handled_events:
            assert scenario.delivered[(service, name)] >= 1, f"{service} was never fed {name}"
    consumed = {name for (_, name) in scenario.delivered}
    produced = set(scenario.published)
    assert consumed <= produced
    assert produced - consumed == NOT_CONSUMED_YET


def test_benefit_kinds_reach_payment_as_their_own_entitlements(scenario):
    with scenario.views("payment").transaction() as tx:
        kinds = {label: [d["kind"] for d in tx.find("entitlement", case_id)]
                 for label, case_id in scenario.cases.items()}
    assert kinds == {"dibao": ["monthly"], "refused": [], "jinan": ["one_off"],
                     "zhichu": ["one_off"], "low_income": ["recognition"], "stalled": [], "not_accepted": [],
                     "reviewed": ["monthly"], "fraud": ["monthly"]}


# Read-model documents that mirror a public event: what they share must agree.
MIRRORS = {
    ("intake", "referral"): ("ReferralRaised", "referral_id"),
    ("intake", "discovery_report"): ("DiscoveryReported", "report_id"),
    ("payment", "entitlement"): ("EntitlementOpened", "entitlement_id"),
    ("charity", "need"): ("NeedOpened", "need_id"),
    ("charity", "fund"): ("FundRegistered", "fund_id"),
    ("notify", "notice"): ("NoticeIssued", "notice_id"),
}


@pytest.mark.parametrize(("service", "kind"), list(MIRRORS))
def test_read_models_agree_with_the_events_they_mirror(scenario, service, kind):
    name, key = MIRRORS[(service, kind)]
    by_id = {data[key]: data for data in scenario.published[name]}
    docs = [doc for k, _, _, doc in scenario.views(service).dump() if k == kind]
    compared = 0
    for doc in docs:
        data = by_id.get(doc[key])
        if data is None:
            continue  # e.g. a one-off entitlement, which has no public event yet
        shared = set(doc) & set(data)
        if doc.get("account_corrected_at"):
            shared.discard("bank_account_ref")  # corrected since the entitlement was opened
        if kind == "fund":  # the balance now moves; FundRegistered's is the opening balance
            doc = {**doc, "balance_fen": doc["opening_balance_fen"]}
        assert shared - {key}, (service, kind)
        assert {f: doc[f] for f in shared} == {f: data[f] for f in shared}, (service, kind)
        compared += 1
    assert compared, f"no {kind} document mirrors a {name}"


# --- issue 13, audit: every service seals its hash-chained log (LogSealed, on its own topic) -------
def logs_sealed(s: Scenario) -> None:
    for service in s.apps:
        assert chain.seal(s.app(service), service) is not None
    s.settle()


def test_every_service_seals_its_whole_log_on_its_own_topic(scenario):
    """After the whole scenario (the payment run's bulk inserts included) every log verifies,
    and its LogSealed, published on the service's own topic, names the chain's head before it."""
    for service, (app, _, _) in scenario.apps.items():
        report = chain.verify(app, chain.store_evidence(app, service), service)
        assert report.ok and report.events > 10 and report.seals_matched == 1, (service, report.problems)
        [sealed] = [(n.id, app.mapper.to_domain_event(n)) for n in app.recorder.select_notifications(1, 100_000)
                    if n.topic.endswith("LogSeal.Sealed")]
        [(topic, key, cloud)] = to_cloud_events(service, sealed[0], sealed[1], app.outbound)
        assert (topic, key, cloud.name) == (T.TOPICS[service], service, "LogSealed")
        # The first seal opens the log's LogSeal (one event) and covers everything before that.
        head = cloud.data["notification_id"]
        assert head == sealed[0] - 2 == cloud.data["events"]
        [at_head] = [e for e in chain.read_chain(app) if e.notification_id == head]
        assert cloud.data["head_hash"] == at_head.hash.hex()
