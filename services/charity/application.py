"""Charity use cases: funds and their donations, needs opened from referrals, and the
allocations a caseworker confirms, releases or disburses.

An allocation changes two aggregates, the Fund (its committed amount) and the Need (what it
still lacks); both are saved in one transaction. When another request or replica wrote
either first, the store's version check refuses the save and the use case runs again on the
fresh aggregates (`ATTEMPTS` times): the Fund then allocates only what it still has, so a
fund is never overdrawn and a request that lost the race gets the fund's rule (409), never
a half-done allocation.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass
from typing import Any

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError

from lifeline.domain.aggregate import Meta, new_id
from lifeline.rules.periods import business_date
from lifeline.stores.application import DuplicateRequest, ServiceApplication
from lifeline.stores.sidestore import SideTx
from services.charity.consumers import HANDLERS
from services.charity.domain import Fund, Need, household_type_of, need_id_of
from services.charity.federation import project_federation
from services.charity.outbound import OUTBOUND

# Saves refused by the version check before a command gives up (409 `busy`): enough for dozens
# of requests on one fund at the same moment; each retry waits a little longer, at random.
ATTEMPTS = 24


class FundNotFound(LookupError):
    pass


class NeedNotFound(LookupError):
    pass


class AllocationNotFound(LookupError):
    pass


class Busy(Exception):
    """The aggregates kept changing under this command (another writer each time)."""

    rule = "busy"


@dataclass(frozen=True)
class Allocation:
    """An allocation as confirmed: what the caller is answered."""

    allocation_id: str
    fund_id: str
    need_id: str
    case_id: str
    amount_fen: int
    available_fen: int
    created: bool  # False: this allocation id existed already (a repeated request)


def donation_id_of(fund_id: str, reference: str) -> str:
    """One donation per fund and reference: the id is derived from them."""
    return "D-" + hashlib.sha256(f"{fund_id}\0{reference}".encode()).hexdigest()[:20].upper()


def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.002 * (attempt + 1)))


class CharityApplication(ServiceApplication):
    name = "charity"
    service = "charity"
    handlers = HANDLERS
    outbound = OUTBOUND

    def business_day(self) -> str:
        """Today in Asia/Shanghai, ISO (what funds' validity and yearly caps are read against)."""
        return business_date(self.clock.now()).isoformat()

    # --- funds ------------------------------------------------------------------------------
    def register_fund(self, details: dict[str, Any], meta: Meta, fund_id: str | None = None) -> str:
        """Register a fund; `details` are Fund.register's keyword arguments (regions and
        household types default to the owner's region and every type)."""
        fund_id = fund_id or new_id("F")
        details = {"donor": None, "regions": None, "household_types": None, "per_case_cap_fen": None,
                   "per_household_year_cap_fen": None, "valid_from": None, "valid_until": None, **details}
        details["regions"] = details["regions"] or [details["region_code"]]
        details["household_types"] = details["household_types"] or ["dibao", "tekun", "low_income", "none"]
        fund = Fund.register(fund_id, **details, registered_at=self.clock.now().isoformat(), by=meta)
        try:
            self.save_new(fund, fund_id)
        except DuplicateRequest:
            pass  # a retried registration: the first one stands
        return fund_id

    def get_fund(self, fund_id: str) -> Fund:
        return self.load(Fund.create_id(fund_id), FundNotFound(fund_id))

    def receive_donation(self, fund_id: str, reference: str, donor: str, amount_fen: int, received_on: str,
                         meta: Meta) -> tuple[str, bool]:
        """(donation id, received now?): once per reference; the same reference again with the
        same amount changes nothing (False), with another amount FundRuleViolation."""
        donation_id = donation_id_of(fund_id, reference)
        for attempt in range(ATTEMPTS):
            fund = self.get_fund(fund_id)
            new = fund.receive_donation(donation_id=donation_id, reference=reference, donor=donor,
                                        amount_fen=amount_fen, received_on=received_on,
                                        recorded_at=self.clock.now().isoformat(), by=meta)
            if not new:
                return donation_id, False
            try:
                self.save(fund)
                return donation_id, True
            except IntegrityError:
                _pause(attempt)  # an allocation or another donation saved meanwhile: again
        raise Busy(f"{fund_id} kept changing; retry")

    # --- needs ------------------------------------------------------------------------------
    def open_need(self, referral: dict[str, Any], meta: Meta, pe: ProcessingEvent) -> None:
        """A referral to charity becomes a need (one referral, one need)."""
        profile = referral["household_profile"]
        need = Need.open_for(
            referral_id=referral["referral_id"], case_id=referral["case_id"],
            need_category=referral["need_category"], amount_asked_fen=referral["amount_asked_fen"],
            region_code=profile["region_code"], urgency=referral["urgency"],
            due_date=referral["due_date"] or business_date(self.clock.now()).isoformat(),
            consent_to_share=referral["consent_to_share"],
            household_type=household_type_of(profile["assistance_type"]), name_masked=profile["name_masked"],
            members_count=profile["members_count"], opened_at=self.clock.now().isoformat(), by=meta,
        )
        if not self.exists(need.id):
            pe.collect_events(need)

    def get_need(self, need_id: str) -> Need:
        return self.load(Need.create_id(need_id), NeedNotFound(need_id))

    def need_of_referral(self, referral_id: str) -> Need:
        return self.get_need(need_id_of(referral_id))

    # --- allocations ------------------------------------------------------------------------
    def allocate(self, need_id: str, fund_id: str, amount_fen: int, meta: Meta,
                 allocation_id: str | None = None) -> Allocation:
        """Commit `amount_fen` of the fund to the need: FundAllocated and the need's record of
        it in one transaction. NeedRuleViolation (fulfilled, more than needed) or
        FundRuleViolation (a criterion, a cap, the available balance) when not possible now."""
        allocation_id = allocation_id or new_id("A")
        for attempt in range(ATTEMPTS):
            need = self.get_need(need_id)
            fund = self.get_fund(fund_id)
            if allocation_id in need.allocations:  # the same request again: its first answer
                done = need.allocations[allocation_id]
                return Allocation(allocation_id, done["fund_id"], need_id, need.case_id, done["amount_fen"],
                                  fund.available_fen, created=False)
            now = self.clock.now()
            need.record_allocation(allocation_id, fund_id, amount_fen, meta)
            fund.allocate(allocation_id=allocation_id, need_id=need_id, case_id=need.case_id,
                          need_category=need.need_category, region_code=need.region_code,
                          household_type=need.household_type, amount_fen=amount_fen,
                          on=business_date(now).isoformat(), allocated_at=now.isoformat(), by=meta)
            try:
                self.save(fund, need)
            except IntegrityError:
                _pause(attempt)  # the fund or the need changed meanwhile: decided again on fresh state
                continue
            return Allocation(allocation_id, fund_id, need_id, need.case_id, amount_fen, fund.available_fen,
                              created=True)
        raise Busy(f"{fund_id} and {need_id} kept changing; retry")

    def _close(self, need_id: str, allocation_id: str, close: Any, status: str, meta: Meta) -> tuple[Fund, Need]:
        for attempt in range(ATTEMPTS):
            need = self.get_need(need_id)
            allocation = need.allocations.get(allocation_id)
            if allocation is None:
                raise AllocationNotFound(allocation_id)
            fund = self.get_fund(allocation["fund_id"])
            if allocation["status"] == status:
                return fund, need  # the same command again (e.g. retried after a replica died): done
            now = self.clock.now()
            close(fund, now)
            need.close_allocation(allocation_id, status, now.isoformat(), meta)
            try:
                self.save(fund, need)
                return fund, need
            except IntegrityError:
                _pause(attempt)
        raise Busy(f"{need_id} kept changing; retry")

    def release(self, need_id: str, allocation_id: str, reason: str, meta: Meta) -> tuple[Fund, Need]:
        """The allocation goes back to the fund (AllocationReleased); the need lacks it again.
        Released already: nothing changes; disbursed: FundRuleViolation `allocation_closed`."""
        return self._close(need_id, allocation_id,
                           lambda fund, now: fund.release(allocation_id, reason, now.isoformat(), meta),
                           "released", meta)

    def disburse(self, need_id: str, allocation_id: str, reference: str, disbursed_on: str | None,
                 meta: Meta) -> tuple[Fund, Need]:
        """The allocation was paid out (AllocationDisbursed): the fund's balance goes down by it,
        and the need is fulfilled (NeedFulfilled, by funds) once what was disbursed covers it."""
        return self._close(
            need_id, allocation_id,
            lambda fund, now: fund.disburse(allocation_id, reference,
                                            disbursed_on or business_date(now).isoformat(), now.isoformat(),
                                            meta),
            "disbursed", meta)


# --- read models ------------------------------------------------------------------------------
def _fund_figures(doc: dict[str, Any], balance_fen: int | None = None, committed_delta: int = 0) -> None:
    if balance_fen is not None:
        doc["balance_fen"] = balance_fen
    doc["committed_fen"] += committed_delta
    doc["available_fen"] = doc["balance_fen"] - doc["committed_fen"]


def _need_figures(doc: dict[str, Any]) -> None:
    def total(*statuses: str) -> int:
        return sum(a["amount_fen"] for a in doc["allocations"] if a["status"] in statuses)

    doc["allocated_fen"] = total("allocated")
    doc["disbursed_fen"] = total("disbursed")
    doc["still_needed_fen"] = max(doc["amount_asked_fen"] - total("allocated", "disbursed"), 0)


def _put_need(tx: SideTx, doc: dict[str, Any]) -> None:
    tx.put("need", doc["need_id"], doc, ref=doc["case_id"])


def _allocation_status(tx: SideTx, need_id: str, allocation_id: str, status: str) -> None:
    doc = tx.get("need", need_id)
    for a in doc["allocations"]:
        if a["allocation_id"] == allocation_id:
            a["status"] = status
    _need_figures(doc)
    _put_need(tx, doc)


def project_fund(event: Any, tx: SideTx) -> None:
    """kind "fund" (key fund_id, ref the owner's region): FundRegistered's fields as registered,
    its opening balance also as `opening_balance_fen`, and the figures now: `balance_fen`
    (opening + donations - disbursed), `committed_fen`, `available_fen`, `donations` (count).
    kind "donation" (key donation_id, ref fund_id): DonationReceived."""
    if isinstance(event, Fund.Registered):
        data = OUTBOUND(event).data
        tx.put("fund", event.fund_id, {**data, "opening_balance_fen": data["balance_fen"], "committed_fen": 0,
                                       "available_fen": data["balance_fen"], "donations": 0},
               ref=event.region_code)
        return
    if not isinstance(event, (Fund.DonationReceived, Fund.Allocated, Fund.AllocationReleased,
                              Fund.AllocationDisbursed)):
        return
    doc = tx.get("fund", event.fund_id)
    if isinstance(event, Fund.DonationReceived):
        _fund_figures(doc, balance_fen=event.balance_fen)
        doc["donations"] += 1
        tx.put("donation", event.donation_id, OUTBOUND(event).data, ref=event.fund_id)
    elif isinstance(event, Fund.Allocated):
        _fund_figures(doc, committed_delta=event.amount_fen)
        need = tx.get("need", event.need_id)
        need["allocations"].append({"allocation_id": event.allocation_id, "fund_id": event.fund_id,
                                    "amount_fen": event.amount_fen, "status": "allocated", "year": event.year})
        _need_figures(need)
        _put_need(tx, need)
    elif isinstance(event, Fund.AllocationReleased):
        _fund_figures(doc, committed_delta=-event.amount_fen)
        _allocation_status(tx, event.need_id, event.allocation_id, "released")
    elif isinstance(event, Fund.AllocationDisbursed):
        _fund_figures(doc, balance_fen=doc["balance_fen"] - event.amount_fen, committed_delta=-event.amount_fen)
        _allocation_status(tx, event.need_id, event.allocation_id, "disbursed")
    tx.put("fund", event.fund_id, doc, ref=doc["region_code"])


def project_need(event: Any, tx: SideTx) -> None:
    """kind "need" (key need_id, ref case_id): NeedOpened's fields and where the need stands
    (status, allocations with their year, allocated / disbursed / still needed, published,
    accepted_by, fulfilled_by). Allocations are written from the Fund's events, saved in the
    same transaction as the Need's own record of them."""
    if isinstance(event, Need.Opened):
        doc = {**OUTBOUND(event).data, "status": "open", "allocations": [], "published": False,
               "accepted_by": None, "fulfilled_by": None}
        _need_figures(doc)
        _put_need(tx, doc)
        return
    if not isinstance(event, (Need.Published, Need.Accepted, Need.Fulfilled)):
        return
    doc = tx.get("need", event.need_id)
    if isinstance(event, Need.Published):
        doc["published"] = True
        if doc["status"] == "open":
            doc["status"] = "published"
    elif isinstance(event, Need.Accepted):
        doc["accepted_by"] = event.organisation
        if doc["status"] != "fulfilled":
            doc["status"] = "accepted"
    else:
        doc["status"], doc["fulfilled_by"] = "fulfilled", event.by
    _put_need(tx, doc)


# Projectors of charity's read models, each given every event in log order. The federation's
# (feed, webhooks) are added here.
PROJECTORS = [project_fund, project_need, project_federation]


def project(event: Any, tx: SideTx) -> None:
    for projector in PROJECTORS:
        projector(event, tx)


def need_as_of(app: CharityApplication, need_id: str, moment: Any) -> dict[str, Any] | None:
    """The need's document as it stood at `moment` (`GET /v1/needs/{need_id}?as_of=`), rebuilt
    from the Need's events recorded by then: its own fields, status and federation answers by
    `project_need`; its allocations from its AllocationRecorded / AllocationClosed (the Fund's
    events write them to the live document; the Need records the same in the same transaction),
    each with the calendar year the Fund counts it in (which never changes). None: no need then."""
    from lifeline.audit.asof import events_as_of
    from lifeline.stores.sidestore import SideStore

    events = events_as_of(app, Need.create_id(need_id), moment)
    if not events:
        return None
    store = SideStore.in_memory()
    with store.transaction() as tx:
        for event in events:
            project_need(event, tx)
        doc = tx.get("need", need_id)
    funds: dict[str, Fund] = {}
    for event in events:
        if isinstance(event, Need.AllocationRecorded):
            fund = funds.get(event.fund_id) or funds.setdefault(event.fund_id, app.get_fund(event.fund_id))
            doc["allocations"].append({"allocation_id": event.allocation_id, "fund_id": event.fund_id,
                                       "amount_fen": event.amount_fen, "status": "allocated",
                                       "year": fund.allocations[event.allocation_id]["year"]})
        elif isinstance(event, Need.AllocationClosed):
            for allocation in doc["allocations"]:
                if allocation["allocation_id"] == event.allocation_id:
                    allocation["status"] = event.status
    _need_figures(doc)
    return doc
